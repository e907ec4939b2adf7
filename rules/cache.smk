# One PyAV decode pass a video -> motion-vector and frame HDF5 caches, one job a shard.
# With dataset.reencode: coviar, each video is first re-encoded as CoViAR does (MPEG-4
# Part 2, 340x256, GOP 12, no B-frames), one job a shard, and the cache decodes that file;
# with decode.reencode_unsupported, the same job re-encodes only the videos whose decode
# exports no motion vectors (to MPEG-4 Part 2 at their own size) and the cache decodes
# those files and the other videos themselves.


rule reencode_shard:
    input:
        videos=shard_videos,
        # the videos' ids (file names); its time never triggers a rerun, the set of videos does
        manifest=ancient(rules.manifest.output.tsv),
    output:
        out=directory(results("{exp}reencoded/shard-{shard}")),
        index=results("{exp}reencoded/index/shard-{shard}.tsv"),
    log:
        logs("{exp}reencoded/shard-{shard}.log"),
    benchmark:
        benchmarks("{exp}reencoded/shard-{shard}.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: 4
    resources:
        mem_mb=memory_mb(150, per_thread=150),
        runtime=WORK.runtime("reencode_seconds"),
    params:
        videos_root=RUN.videos,
        settings=setting(plan.reencode_settings),
        code=code_digest("reencode_shard"),
    script:
        "../workflow_scripts/reencode_shard.py"


rule cache_shard:
    input:
        unpack(cache_inputs),
    output:
        mv=directory(results("{exp}cache/mv/shard-{shard}")),
        frames=directory(results("{exp}cache/frames/shard-{shard}")),
        index=results("{exp}cache/index/shard-{shard}.tsv"),
    log:
        logs("{exp}cache/shard-{shard}.log"),
    benchmark:
        benchmarks("{exp}cache/shard-{shard}.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: 4
    resources:
        mem_mb=memory_mb(200, per_thread=250),
        runtime=WORK.runtime("cache_seconds"),
    params:
        videos_root=RUN.videos,
        decode=setting(plan.decode_settings),
        compression=setting(lambda c: c["cache"]["compression"]),
        storage=setting(plan.frame_storage),
        code=code_digest("cache_shard"),
    script:
        "../workflow_scripts/cache_shard.py"


rule cache_failures:
    input:
        indexes=expand(rules.cache_shard.output.index, shard=SHARDS, allow_missing=True),
    output:
        out=results("{exp}cache/failures.tsv"),
        reencoded=results("{exp}cache/reencoded.tsv"),
        # the videos read only up to decode.max_frames, and the frames each leaves out
        cut=results("{exp}cache/cut.tsv"),
    log:
        logs("{exp}cache/failures.log"),
    benchmark:
        benchmarks("{exp}cache/failures.tsv")
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
        cache_targets(),
