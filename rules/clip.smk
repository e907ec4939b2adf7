# The frozen CLIP stream: every cached frame embedded, one job a shard; zero-shot per split.


# One job a shard on the CPU; on a GPU one job for every shard (RUN.clip_batched: one start-up).
rule clip_embed:
    input:
        unpack(clip_embed_inputs),
    output:
        out=CLIP_JOB_OUTPUTS,
    log:
        logs(f"{{exp}}clip/{{clip}}/{CLIP_JOB}.log"),
    benchmark:
        benchmarks(f"{{exp}}clip/{{clip}}/{CLIP_JOB}.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: RUN.threads("clip")
    resources:
        mem_mb=WORK.mem_mb("clip_embed_mb"),
        runtime=WORK.runtime("clip_seconds"),
        gpu=uses_gpu("clip"),
    # clip.device is a machine setting, read by the script (not a param): moving the run to
    # another card reruns nothing; the precision asked for is a param, the one used an attr.
    params:
        settings=setting(plan.clip_settings),
        code=code_digest("clip_embed"),
    script:
        "../workflow_scripts/clip_embed.py"


rule zeroshot:
    input:
        manifest=rules.manifest.output.tsv,
        shards=lambda wildcards: clip_shards(experiment(wildcards)),
        # a prompt file and its phrases file
        prompt_files=setting(lambda c: prompt_files(c["clip"]["prompts"])),
    output:
        predictions=results("{exp}zeroshot/{clip}/split{split}/predictions.tsv"),
        metrics=results("{exp}zeroshot/{clip}/split{split}/metrics.json"),
    log:
        logs("{exp}zeroshot/{clip}/split{split}.log"),
    benchmark:
        benchmarks("{exp}zeroshot/{clip}/split{split}.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: config["clip"]["cpu_threads"]
    resources:
        mem_mb=memory_mb(2500),
        runtime=minutes(120),
        gpu=uses_gpu("clip"),
    params:
        settings=setting(plan.zeroshot_settings),
        code=code_digest("zeroshot"),
    script:
        "../workflow_scripts/zeroshot.py"
