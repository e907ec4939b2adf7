# Heads on precomputed features: the fusion MLP and the CLIP linear probe, per split and seed set.


rule train_head:
    input:
        unpack(head_feature_inputs),
        manifest=f"{RESULTS}/manifest.tsv",
    output:
        model=f"{HEAD_ROOT}/split{{split}}/{{head}}/model.pt",
        predictions=f"{HEAD_ROOT}/split{{split}}/{{head}}/predictions.tsv",
        training=f"{HEAD_ROOT}/split{{split}}/{{head}}/training.json",
        metrics=f"{HEAD_ROOT}/split{{split}}/{{head}}/metrics.json",
    log:
        f"{LOGS}/heads/split{{split}}/{{head}}.log",
    conda:
        "../envs/moclip.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        settings=head_settings(),
        seeds=config["heads"]["seeds"],
        code=code_digest("heads", "manifest", "metrics"),
    script:
        "../workflow_scripts/train_head.py"
