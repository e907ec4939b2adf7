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
