# Reports: per-split metrics and plots, then the method x split summary.


rule report_split:
    input:
        unpack(split_method_metrics),
        unpack(lambda wildcards: head_files("training", wildcards.split)),
        failures=rules.cache_failures.output.out,
        reencoded=rules.cache_failures.output.reencoded,
        manifest=rules.manifest.output.tsv,
        dataset=rules.manifest.output.summary,
        mv_training=rules.train_mvnet.output.training,
        # predict loads these (the CLIP settings from an embedding shard); the confusion
        # matrix is the fusion head's
        clip_shard=CLIP_SHARDS[0],
        mv_model=rules.train_mvnet.output.model,
        fusion_model=head_output("model", "{split}", "fusion"),
        fusion_predictions=head_output("predictions", "{split}", "fusion"),
    output:
        metrics=results("reports/split{split}/metrics.json"),
        table=report(
            results("reports/split{split}/table.html"),
            caption="../report/table.rst",
            category="Split {split}",
        ),
        confusion=report(
            results("reports/split{split}/confusion_fusion.png"),
            caption="../report/confusion.rst",
            category="Split {split}",
        ),
        per_class=report(
            results("reports/split{split}/per_class_top1.png"),
            caption="../report/per_class.rst",
            category="Split {split}",
        ),
        curves=report(
            results("reports/split{split}/training_curves.png"),
            caption="../report/curves.rst",
            category="Split {split}",
        ),
    log:
        logs("reports/split{split}.log"),
    benchmark:
        benchmarks("reports/split{split}.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(900),
        runtime=minutes(120),
    params:
        methods=lambda wildcards: list(split_method_metrics(wildcards)),
        settings=plan.run_settings(config),
        code=code_digest("report_split"),
    script:
        "../workflow_scripts/report_split.py"


rule summary:
    input:
        **head_files("model", SPLITS[0]),
        reports=expand(rules.report_split.output.metrics, split=SPLITS),
        mv_model=expand(rules.train_mvnet.output.model, split=SPLITS[0])[0],
        clip_shard=CLIP_SHARDS[0],  # the CLIP settings, as recorded with the embeddings
        dataset=rules.manifest.output.summary,
    output:
        json=results("summary.json"),
        md=results("summary.md"),
        html=report(
            results("summary.html"),
            caption="../report/summary.rst",
            category="Summary",
        ),
    log:
        logs("summary.log"),
    benchmark:
        benchmarks("summary.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(900),
        runtime=minutes(120),
    params:
        frames=config["frames"]["count"],
        code=code_digest("summary"),
    script:
        "../workflow_scripts/summary.py"
