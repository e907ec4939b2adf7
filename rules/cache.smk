# One PyAV decode pass a video -> motion-vector and frame HDF5 caches, one job a shard.


rule cache_shard:
    input:
        videos=shard_videos,
    output:
        mv=directory(results("cache/mv/shard-{shard}")),
        frames=directory(results("cache/frames/shard-{shard}")),
        index=results("cache/index/shard-{shard}.tsv"),
    log:
        logs("cache/shard-{shard}.log"),
    benchmark:
        benchmarks("cache/shard-{shard}.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: 4
    resources:
        mem_mb=memory_mb(200, per_thread=250),
        runtime=minutes(cache_seconds),
    params:
        videos_root=VIDEOS,
        decode=decode_settings(),
        compression=config["cache"]["compression"],
        code=code_digest("cache_shard"),
    script:
        "../workflow_scripts/cache_shard.py"


rule cache_failures:
    input:
        indexes=all_shards(rules.cache_shard.output.index),
    output:
        out=results("cache/failures.tsv"),
    log:
        logs("cache/failures.log"),
    benchmark:
        benchmarks("cache/failures.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(100),
        runtime=minutes(60),
    params:
        code=code_digest("cache_failures"),
    script:
        "../workflow_scripts/cache_failures.py"


rule caches:
    input:
        rules.cache_failures.output,
