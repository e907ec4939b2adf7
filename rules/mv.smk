# The motion stream: the MV network trained per split (selected on val), then frozen features
# (a folder run: the features of a given network, features.mv_model).


rule train_mvnet:
    input:
        manifest=rules.manifest.output.tsv,
        mv=all_shards(rules.cache_shard.output.mv),
        index=all_shards(rules.cache_shard.output.index),
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
    threads: 2
    resources:
        mem_mb=memory_mb(1100 + mvnet_activations_mb(), per_thread=300),
        runtime=minutes(train_mvnet_seconds),
        gpu=uses_gpu("mvnet"),
    params:
        settings=mv_settings(),
        code=code_digest("train_mvnet"),
    script:
        "../workflow_scripts/train_mvnet.py"


rule mv_features:
    input:
        models=mv_feature_models(),
        mv=rules.cache_shard.output.mv,
        index=rules.cache_shard.output.index,
    output:
        # One job a shard writes every split's features: one read of the caches, one start-up.
        out=mv_feature_outputs("{shard}"),
    log:
        logs(f"mv_features/{MV_TAG}/shard-{{shard}}.log"),
    benchmark:
        benchmarks(f"mv_features/{MV_TAG}/shard-{{shard}}.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: 2
    resources:
        mem_mb=memory_mb(mv_features_mb(), per_thread=300),
        runtime=minutes(mv_features_seconds),
        gpu=uses_gpu("mvnet"),
    params:
        code=code_digest("mv_features"),
    script:
        "../workflow_scripts/mv_features.py"
