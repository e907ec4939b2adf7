# The motion stream: the MV network trained per split (selected on val), then frozen features
# (a folder run: the features of a given network, features.mv_model).


rule train_mvnet:
    input:
        **cache_inputs_of(SHARDS, "mv", "index"),
        manifest=rules.manifest.output.tsv,
    output:
        model=results(f"mvnet/{MV_TAG}/split{{split}}/model.pt"),
        training=results(f"mvnet/{MV_TAG}/split{{split}}/training.json"),
        metrics=results(f"mvnet/{MV_TAG}/split{{split}}/metrics.json"),
    log:
        logs(f"mvnet/{MV_TAG}/split{{split}}.log"),
    benchmark:
        benchmarks(f"mvnet/{MV_TAG}/split{{split}}.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: GPU_THREADS if on_gpu("mvnet") else 2
    resources:
        mem_mb=memory_mb(WORK.train_mvnet_mb(), per_thread=300),
        runtime=minutes(WORK.train_mvnet_seconds),
        gpu=uses_gpu("mvnet"),
    params:
        settings=plan.mv_settings(config),
        code=code_digest("train_mvnet"),
    script:
        "../workflow_scripts/train_mvnet.py"


# On the CPU one job a shard writes every split's features (one read of the caches); on a
# GPU one job a split writes every shard's (MV_BATCHED: one start-up a network).
rule mv_features:
    input:
        unpack(mv_features_inputs),
    output:
        out=MV_JOB_OUTPUTS,
    log:
        logs(f"mv_features/{MV_TAG}/{MV_JOB}.log"),
    benchmark:
        benchmarks(f"mv_features/{MV_TAG}/{MV_JOB}.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: GPU_THREADS if MV_BATCHED else 2
    resources:
        mem_mb=memory_mb(WORK.mv_features_mb(), per_thread=300),
        runtime=minutes(WORK.mv_features_seconds),
        gpu=uses_gpu("mvnet"),
    params:
        draws=config["heads"]["mv_draws"] if LABELLED else 0,
        code=code_digest("mv_features"),
    script:
        "../workflow_scripts/mv_features.py"
