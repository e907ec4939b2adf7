# The embedded demo dataset, in UCF101's exact layout (only when dataset.videos is null).


rule demo_data:
    output:
        videos=directory(f"{RESULTS}/demo/UCF-101"),
        lists=directory(f"{RESULTS}/demo/ucfTrainTestlist"),
    log:
        f"{LOGS}/demo_data.log",
    conda:
        "../envs/moclip.yaml"
    threads: 4
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        spec={**config["demo"], "seed": config["seed"]},
        code=code_digest("demo", "codec"),
    script:
        "../workflow_scripts/demo_data.py"
