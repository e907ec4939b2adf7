# Reports: per-split metrics and plots, then the method x split summary.


rule report_split:
    input:
        unpack(split_method_metrics),
        unpack(report_inputs),
        manifest=rules.manifest.output.tsv,
        dataset=rules.manifest.output.summary,
    output:
        metrics=results("{exp}reports/split{split}/metrics.json"),
        table=report(
            results("{exp}reports/split{split}/table.html"),
            caption="../report/table.rst",
            category="Split {split}",
            labels=split_result("table: every method's top-1 and top-5"),
        ),
        confusion=report(
            results(f"{{exp}}reports/split{{split}}/{CONFUSION_PLOT}"),
            caption="../report/confusion.rst",
            category="Split {split}",
            labels=split_result(f"confusion matrix ({PRODUCT})"),
        ),
        per_class=report(
            results("{exp}reports/split{split}/per_class_top1.png"),
            caption="../report/per_class.rst",
            category="Split {split}",
            labels=split_result("per-class top-1"),
        ),
        curves=report(
            results("{exp}reports/split{split}/training_curves.png"),
            caption="../report/curves.rst",
            category="Split {split}",
            labels=split_result("training curves"),
        ),
    log:
        logs("{exp}reports/split{split}.log"),
    benchmark:
        benchmarks("{exp}reports/split{split}.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(900),
        runtime=minutes(120),
    params:
        methods=lambda wildcards: list(split_method_metrics(wildcards)),
        settings=setting(plan.run_settings),
        code=code_digest("report_split"),
    script:
        "../workflow_scripts/report_split.py"


rule summary:
    input:
        unpack(summary_inputs),
        dataset=rules.manifest.output.summary,
    output:
        json=results("{exp}summary.json"),
        md=results("{exp}summary.md"),
        html=report(
            results("{exp}summary.html"),
            caption="../report/summary.rst",
            category="Summary",
            labels=summary_labels,
        ),
    log:
        logs("{exp}summary.log"),
    benchmark:
        benchmarks("{exp}summary.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(900),
        runtime=minutes(120),
    params:
        frames=setting(lambda c: c["frames"]["count"]),
        code=code_digest("summary"),
    script:
        "../workflow_scripts/summary.py"


# The experiments side by side (a run with experiments): mean top-1 over splits, the change
# from the first experiment against the seed noise, the cost a video and the time of the
# jobs each experiment added (their benchmark files).
rule compare_experiments:
    input:
        summaries=[expand(rules.summary.output.json, exp=e.own)[0] for e in EXPERIMENTS],
    output:
        json=results("experiments.json"),
        md=results("experiments.md"),
        html=report(
            results("experiments.html"),
            caption="../report/experiments.rst",
            category="Experiments",
        ),
        plot=report(
            results("experiments.png"),
            caption="../report/experiments.rst",
            category="Experiments",
        ),
    log:
        logs("experiments.log"),
    benchmark:
        benchmarks("experiments.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(500),
        runtime=minutes(30),
    params:
        names=[e.name for e in EXPERIMENTS],
        # the benchmark files of the jobs each experiment added, and the stages run on a GPU
        jobs={e.name: own_jobs(e, EXPERIMENTS) for e in EXPERIMENTS},
        benchmarks=benchmarks(""),
        gpu_dirs=[STAGE_DIRS[s] for s, dev in DEVICE_SECTIONS.items() if RUN.on_gpu(dev)],
        code=code_digest("compare_experiments"),
    script:
        "../workflow_scripts/compare_experiments.py"
