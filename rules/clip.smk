# The frozen CLIP stream: every cached frame embedded, one job a shard; zero-shot per split.


rule clip_embed:
    input:
        frames=f"{RESULTS}/cache/frames/shard-{{shard}}",
        index=f"{RESULTS}/cache/index/shard-{{shard}}.tsv",
    output:
        f"{RESULTS}/embeddings/clip/{CLIP_TAG}/shard-{{shard}}.h5",
    log:
        f"{LOGS}/clip/{CLIP_TAG}/shard-{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/clip/{CLIP_TAG}/shard-{{shard}}.tsv"
    conda:
        "../envs/moclip.yaml"
    threads: 2
    resources:
        mem_mb=6000,
        runtime=120,
        gpu=0 if config["clip"]["device"] == "cpu" else 1,
    params:
        model=config["clip"]["model"],
        pretrained=config["clip"]["pretrained"],
        device=config["clip"]["device"],
        batch_videos=config["clip"]["batch_videos"],
        dtype=config["clip"]["dtype"],
        seed=config["seed"],
        code=code_digest("clip_stream"),
    script:
        "../workflow_scripts/clip_embed.py"


rule zeroshot:
    input:
        manifest=f"{RESULTS}/manifest.tsv",
        shards=clip_shards(),
    output:
        predictions=f"{RESULTS}/zeroshot/{CLIP_TAG}/split{{split}}/predictions.tsv",
        metrics=f"{RESULTS}/zeroshot/{CLIP_TAG}/split{{split}}/metrics.json",
    log:
        f"{LOGS}/zeroshot/{CLIP_TAG}/split{{split}}.log",
    conda:
        "../envs/moclip.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=0 if config["clip"]["device"] == "cpu" else 1,
    params:
        model=config["clip"]["model"],
        pretrained=config["clip"]["pretrained"],
        device=config["clip"]["device"],
        templates=config["clip"]["templates"],
        seed=config["seed"],
        code=code_digest("clip_stream", "metrics"),
    script:
        "../workflow_scripts/zeroshot.py"
