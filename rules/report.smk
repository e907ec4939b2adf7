# Reports: per-split metrics and plots, then the method x split summary.


rule report_split:
    input:
        unpack(split_method_metrics),
        failures=f"{RESULTS}/cache/failures.tsv",
        manifest=f"{RESULTS}/manifest.tsv",
        fusion_predictions=f"{HEAD_ROOT}/split{{split}}/fusion/predictions.tsv",
        mv_training=f"{RESULTS}/mvnet/{MV_TAG}/split{{split}}/training.json",
        fusion_training=f"{HEAD_ROOT}/split{{split}}/fusion/training.json",
        clip_linear_training=f"{HEAD_ROOT}/split{{split}}/clip_linear/training.json",
        mv_model=f"{RESULTS}/mvnet/{MV_TAG}/split{{split}}/model.pt",
        fusion_model=f"{HEAD_ROOT}/split{{split}}/fusion/model.pt",
    output:
        metrics=f"{RESULTS}/reports/split{{split}}/metrics.json",
        confusion=report(
            f"{RESULTS}/reports/split{{split}}/confusion_fusion.png",
            caption="../report/confusion.rst",
            category="Split {split}",
        ),
        per_class=report(
            f"{RESULTS}/reports/split{{split}}/per_class_top1.png",
            caption="../report/per_class.rst",
            category="Split {split}",
        ),
        curves=report(
            f"{RESULTS}/reports/split{{split}}/training_curves.png",
            caption="../report/curves.rst",
            category="Split {split}",
        ),
    log:
        f"{LOGS}/reports/split{{split}}.log",
    conda:
        "../envs/moclip.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        methods=lambda wildcards: list(split_method_metrics(wildcards)),
        settings={
            k: config[k]
            for k in ("seed", "dataset", "decode", "frames", "clip", "mvnet", "heads")
        },
        code=code_digest("report"),
    script:
        "../workflow_scripts/report_split.py"


rule summary:
    input:
        reports=expand(f"{RESULTS}/reports/split{{split}}/metrics.json", split=SPLITS),
        mv_model=f"{RESULTS}/mvnet/{MV_TAG}/split{SPLITS[0]}/model.pt",
        fusion_model=f"{HEAD_ROOT}/split{SPLITS[0]}/fusion/model.pt",
        clip_linear_model=f"{HEAD_ROOT}/split{SPLITS[0]}/clip_linear/model.pt",
    output:
        json=f"{RESULTS}/summary.json",
        md=report(
            f"{RESULTS}/summary.md",
            caption="../report/summary.rst",
            category="Summary",
        ),
    log:
        f"{LOGS}/summary.log",
    conda:
        "../envs/moclip.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        model=config["clip"]["model"],
        pretrained=config["clip"]["pretrained"],
        frames=config["frames"]["count"],
        seed=config["seed"],
        code=code_digest("report", "heads", "mv_stream", "clip_stream"),
    script:
        "../workflow_scripts/summary.py"
