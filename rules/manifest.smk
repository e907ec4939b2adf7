# Split lists -> the manifest (labels, groups, train/val/test, shards): one row a video.


checkpoint manifest:
    input:
        videos=VIDEOS if DEMO else ancient(VIDEOS),
        lists=LISTS if DEMO else ancient(LISTS),
        list_files=[] if DEMO else list_files(),
    output:
        tsv=results("manifest.tsv"),
    log:
        logs("manifest.log"),
    benchmark:
        benchmarks("manifest.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(200),
        runtime=minutes(60),
    params:
        splits=SPLITS,
        val_groups=config["dataset"]["val_groups"],
        shards=N_SHARDS,
        seed=config["seed"],
        code=code_digest("manifest"),
    script:
        "../workflow_scripts/manifest.py"
