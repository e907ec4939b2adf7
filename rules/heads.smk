# Heads on precomputed features (moclip.methods.HEADS), per split and seed set. A head's outputs
# live under the tags of the features it reads: heads/<clip tag>/<mv tag or no-mv>/..., under
# the experiment's root (experiments/<name>/) for an experiment whose settings are not the run's.


rule train_head:
    input:
        unpack(head_feature_inputs),
        manifest=rules.manifest.output.tsv,
    output:
        model=results("{exp}heads/{inputs}/split{split}/{head}/model.pt"),
        predictions=results("{exp}heads/{inputs}/split{split}/{head}/predictions.tsv"),
        training=results("{exp}heads/{inputs}/split{split}/{head}/training.json"),
        metrics=results("{exp}heads/{inputs}/split{split}/{head}/metrics.json"),
    log:
        logs("{exp}heads/{inputs}/split{split}/{head}.log"),
    benchmark:
        benchmarks("{exp}heads/{inputs}/split{split}/{head}.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: config["heads"]["cpu_threads"]
    resources:
        mem_mb=memory_mb(800),
        runtime=WORK.runtime("train_head_seconds"),
    params:
        settings=lambda wildcards: plan.head_settings(experiment(wildcards).config, wildcards.head),
        seeds=setting(lambda c: c["heads"]["seeds"]),
        code=code_digest("train_head"),
    script:
        "../workflow_scripts/train_head.py"
