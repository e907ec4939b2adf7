# The motion stream: the MV network trained per split (selected on val), then frozen features.


rule train_mvnet:
    input:
        manifest=f"{RESULTS}/manifest.tsv",
        mv=mv_cache_dirs(),
        index=cache_indexes(),
    output:
        model=f"{RESULTS}/mvnet/{MV_TAG}/split{{split}}/model.pt",
        training=f"{RESULTS}/mvnet/{MV_TAG}/split{{split}}/training.json",
        metrics=f"{RESULTS}/mvnet/{MV_TAG}/split{{split}}/metrics.json",
    log:
        f"{LOGS}/mvnet/{MV_TAG}/split{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/mvnet/{MV_TAG}/split{{split}}.tsv"
    conda:
        "../envs/moclip.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=600,
        gpu=0 if config["mvnet"]["device"] == "cpu" else 1,
    params:
        settings=mv_settings(),
        code=code_digest("mv_stream", "manifest", "metrics"),
    script:
        "../workflow_scripts/train_mvnet.py"


rule mv_features:
    input:
        models=expand(f"{RESULTS}/mvnet/{MV_TAG}/split{{split}}/model.pt", split=SPLITS),
        mv=f"{RESULTS}/cache/mv/shard-{{shard}}",
        index=f"{RESULTS}/cache/index/shard-{{shard}}.tsv",
    output:
        # One job a shard writes every split's features: one read of the caches, one start-up.
        expand(
            f"{RESULTS}/embeddings/mv/{MV_TAG}/split{{split}}/shard-{{{{shard}}}}.h5",
            split=SPLITS,
        ),
    log:
        f"{LOGS}/mv_features/{MV_TAG}/shard-{{shard}}.log",
    conda:
        "../envs/moclip.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        code=code_digest("mv_stream"),
    script:
        "../workflow_scripts/mv_features.py"
