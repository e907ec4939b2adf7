# Dense features along whole videos (config dense:, off by default): one decode pass a video,
# windows every dense.every_s seconds, each the CLIP embedding of its centre frame and the MV
# network's feature over its motion; one HDF5 file a shard (moclip.dense, docs/dense.md).


rule dense:
    input:
        unpack(dense_inputs),
    output:
        out=DENSE_SHARD,
    log:
        logs("dense/shard-{shard}.log"),
    benchmark:
        benchmarks("dense/shard-{shard}.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: RUN.threads("clip")
    resources:
        mem_mb=memory_mb(DENSE_MB),
        runtime=minutes(dense_seconds),
        gpu=uses_gpu("clip"),
    # clip.device is a machine setting, read by the script (not a param), as for clip_embed.
    params:
        videos_root=RUN.videos,
        settings=plan.dense_settings(config),
        clip=plan.clip_settings(config),
        code=code_digest("dense"),
    script:
        "../workflow_scripts/dense.py"


# The first videos' dense features along time, for the report (one job: it reads only the
# first shards' files until it has enough videos).
rule dense_plot:
    input:
        shards=expand(DENSE_SHARD, shard=SHARDS),
    output:
        png=report(
            results("dense/timeline.png"),
            caption="../report/dense.rst",
            category="Dense features",
            labels={"result": "motion and CLIP change along time"},
        ),
    log:
        logs("dense/timeline.log"),
    benchmark:
        benchmarks("dense/timeline.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(900),
        runtime=minutes(60),
    params:
        code=code_digest("dense_plot"),
    script:
        "../workflow_scripts/dense_plot.py"
