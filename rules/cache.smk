# One PyAV decode pass a video -> motion-vector and frame HDF5 caches, one job a shard.


rule cache_shard:
    input:
        videos=shard_videos,
    output:
        mv=directory(f"{RESULTS}/cache/mv/shard-{{shard}}"),
        frames=directory(f"{RESULTS}/cache/frames/shard-{{shard}}"),
        index=f"{RESULTS}/cache/index/shard-{{shard}}.tsv",
    params:
        decode={**config["decode"], **{
            "frame_count": config["frames"]["count"],
            "short_side": config["frames"]["short_side"],
        }},
        compression=config["cache"]["compression"],
        code=code_digest("codec", "cache"),
    log:
        f"{LOGS}/cache/shard-{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/cache/shard-{{shard}}.tsv"
    threads: 4
    resources:
        mem_mb=lambda wildcards, threads: 1000 * (threads + 1),
        runtime=60,
    conda:
        "../envs/moclip.yaml"
    script:
        "../workflow_scripts/cache_shard.py"


rule cache_failures:
    input:
        expand(f"{RESULTS}/cache/index/shard-{{shard}}.tsv", shard=SHARDS),
    output:
        f"{RESULTS}/cache/failures.tsv",
    log:
        f"{LOGS}/cache/failures.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/moclip.yaml"
    script:
        "../workflow_scripts/cache_failures.py"


rule caches:
    input:
        rules.cache_failures.output,
