# The dataset's listing (split lists, a CSV table or a folder) -> the manifest (labels,
# groups, train/val/test, shards): one row a video, the same columns for every format.


checkpoint manifest:
    input:
        unpack(manifest_inputs),
    output:
        tsv=results("manifest.tsv"),
        summary=results("dataset.json"),
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
        videos=RUN.videos,
        lists=RUN.lists,
        format=RUN.format,
        classes=config["dataset"]["classes"],
        # A folder run's listing: adding or removing a video reruns the manifest.
        listing=hashlib.sha256("\n".join(RUN.folder_videos).encode()).hexdigest()[:16],
        splits=SPLITS,
        val_groups=config["dataset"]["val_groups"],
        shards=len(SHARDS),
        seed=config["seed"],
        code=code_digest("manifest"),
    script:
        "../workflow_scripts/manifest.py"
