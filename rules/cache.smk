# One PyAV decode pass a video -> motion-vector and frame HDF5 caches, one job a shard.


rule cache_shard:
    input:
        videos=shard_videos,
    output:
        mv=directory(f"{RESULTS}/cache/mv/shard-{{shard}}"),
        frames=directory(f"{RESULTS}/cache/frames/shard-{{shard}}"),
        index=f"{RESULTS}/cache/index/shard-{{shard}}.tsv",
    log:
        f"{LOGS}/cache/shard-{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/cache/shard-{{shard}}.tsv"
    conda:
        "../envs/moclip.yaml"
    threads: 4
    resources:
        mem_mb=lambda wildcards, threads: 1000 * (threads + 1),
        runtime=60,
    params:
        decode=decode_settings(),
        compression=config["cache"]["compression"],
        code=code_digest("codec", "cache"),
    script:
        "../workflow_scripts/cache_shard.py"


rule cache_failures:
    input:
        expand(f"{RESULTS}/cache/index/shard-{{shard}}.tsv", shard=SHARDS),
    output:
        f"{RESULTS}/cache/failures.tsv",
    log:
        f"{LOGS}/cache/failures.log",
    conda:
        "../envs/moclip.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../workflow_scripts/cache_failures.py"


rule caches:
    input:
        rules.cache_failures.output,
