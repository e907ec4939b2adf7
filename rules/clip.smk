# The frozen CLIP stream: every cached frame embedded, one job a shard; zero-shot per split.


rule clip_embed:
    input:
        frames=rules.cache_shard.output.frames,
        index=rules.cache_shard.output.index,
    output:
        out=results(f"embeddings/clip/{CLIP_TAG}/shard-{{shard}}.h5"),
    log:
        logs(f"clip/{CLIP_TAG}/shard-{{shard}}.log"),
    benchmark:
        benchmarks(f"clip/{CLIP_TAG}/shard-{{shard}}.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: 2
    resources:
        mem_mb=memory_mb(2500, per_thread=300),
        runtime=minutes(clip_seconds),
        gpu=uses_gpu("clip"),
    # clip.device is a machine setting, read by the script (not a param): moving the run to
    # another device reruns nothing; the precision asked for is a param, the one used an attr.
    params:
        model=config["clip"]["model"],
        pretrained=config["clip"]["pretrained"],
        precision=config["clip"]["precision"],
        batch_videos=config["clip"]["batch_videos"],
        dtype=config["clip"]["dtype"],
        interpolation=config["clip"]["interpolation"],
        seed=config["seed"],
        code=code_digest("clip_embed"),
    script:
        "../workflow_scripts/clip_embed.py"


rule zeroshot:
    input:
        manifest=rules.manifest.output.tsv,
        shards=all_shards(rules.clip_embed.output.out),
    output:
        predictions=results(f"zeroshot/{CLIP_TAG}/split{{split}}/predictions.tsv"),
        metrics=results(f"zeroshot/{CLIP_TAG}/split{{split}}/metrics.json"),
    log:
        logs(f"zeroshot/{CLIP_TAG}/split{{split}}.log"),
    benchmark:
        benchmarks(f"zeroshot/{CLIP_TAG}/split{{split}}.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(2500),
        runtime=minutes(120),
        gpu=uses_gpu("clip"),
    params:
        model=config["clip"]["model"],
        pretrained=config["clip"]["pretrained"],
        prompts=config["clip"]["prompts"],
        templates=config["clip"]["templates"],
        seed=config["seed"],
        code=code_digest("zeroshot"),
    script:
        "../workflow_scripts/zeroshot.py"
