# The motion stream: the MV network trained per split (selected on val), then frozen features
# (a folder run: the features of a given network, features.mv_model).


rule train_mvnet:
    input:
        unpack(train_mvnet_inputs),
    output:
        model=results("{exp}mvnet/{mv}/split{split}/model.pt"),
        training=results("{exp}mvnet/{mv}/split{split}/training.json"),
        metrics=results("{exp}mvnet/{mv}/split{split}/metrics.json"),
    log:
        logs("{exp}mvnet/{mv}/split{split}.log"),
    benchmark:
        benchmarks("{exp}mvnet/{mv}/split{split}.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: RUN.threads("mvnet")
    resources:
        mem_mb=WORK.mem_mb("train_mvnet_mb", per_thread="train_mvnet_thread_mb"),
        runtime=WORK.runtime("train_mvnet_seconds"),
        gpu=uses_gpu("mvnet"),
    params:
        settings=setting(plan.mv_settings),
        code=code_digest("train_mvnet"),
    script:
        "../workflow_scripts/train_mvnet.py"


# On the CPU one job a shard writes every split's features (one read of the caches); on a
# GPU one job a split writes every shard's (RUN.mv_batched: one start-up a network).
rule mv_features:
    input:
        unpack(mv_features_inputs),
    output:
        out=MV_JOB_OUTPUTS,
    log:
        logs(f"{{exp}}mv_features/{{mv}}/{MV_JOB}.log"),
    benchmark:
        benchmarks(f"{{exp}}mv_features/{{mv}}/{MV_JOB}.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: RUN.threads("mvnet")
    resources:
        mem_mb=WORK.mem_mb("mv_features_mb", per_thread="mv_features_thread_mb"),
        runtime=WORK.runtime("mv_features_seconds"),
        gpu=uses_gpu("mvnet"),
    params:
        draws=setting(lambda c: c["heads"]["mv_draws"] if LABELLED else 0),
        code=code_digest("mv_features"),
    script:
        "../workflow_scripts/mv_features.py"
