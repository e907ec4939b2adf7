# Heads on precomputed features: the fusion MLP and the CLIP linear probe, per split and seed set.


rule train_head:
    input:
        unpack(head_feature_inputs),
        manifest=rules.manifest.output.tsv,
    output:
        model=results(f"{HEAD_ROOT}/split{{split}}/{{head}}/model.pt"),
        predictions=results(f"{HEAD_ROOT}/split{{split}}/{{head}}/predictions.tsv"),
        training=results(f"{HEAD_ROOT}/split{{split}}/{{head}}/training.json"),
        metrics=results(f"{HEAD_ROOT}/split{{split}}/{{head}}/metrics.json"),
    log:
        logs(f"{HEAD_ROOT}/split{{split}}/{{head}}.log"),
    benchmark:
        benchmarks(f"{HEAD_ROOT}/split{{split}}/{{head}}.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(800),
        runtime=minutes(WORK.train_head_seconds),
    params:
        settings=plan.head_settings(config),
        seeds=config["heads"]["seeds"],
        code=code_digest("train_head"),
    script:
        "../workflow_scripts/train_head.py"
