# The frozen CLIP stream: every cached frame embedded, one job a shard; zero-shot per split.


# One job a shard on the CPU; on a GPU one job for every shard (CLIP_BATCHED: one start-up).
rule clip_embed:
    input:
        unpack(clip_embed_inputs),
    output:
        out=CLIP_JOB_OUTPUTS,
    log:
        logs(f"clip/{CLIP_TAG}/{CLIP_JOB}.log"),
    benchmark:
        benchmarks(f"clip/{CLIP_TAG}/{CLIP_JOB}.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: GPU_THREADS if CLIP_BATCHED else 2
    resources:
        mem_mb=memory_mb(WORK.clip_embed_mb(), per_thread=300),
        runtime=minutes(WORK.clip_seconds),
        gpu=uses_gpu("clip"),
    # clip.device is a machine setting, read by the script (not a param): moving the run to
    # another card reruns nothing; the precision asked for is a param, the one used an attr.
    params:
        settings=plan.clip_settings(config),
        code=code_digest("clip_embed"),
    script:
        "../workflow_scripts/clip_embed.py"


rule zeroshot:
    input:
        manifest=rules.manifest.output.tsv,
        shards=CLIP_SHARDS,
        prompt_files=prompt_files(config["clip"]["prompts"]),  # a prompt file and its phrases file
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
        prompt_norm=config["clip"]["prompt_norm"],
        seed=config["seed"],
        code=code_digest("zeroshot"),
    script:
        "../workflow_scripts/zeroshot.py"
