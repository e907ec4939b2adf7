# The embedded demo dataset, in the layout of dataset.format (only when dataset.videos is null).


rule demo_data:
    output:
        **demo_outputs(),
    log:
        logs("demo_data.log"),
    benchmark:
        benchmarks("demo_data.tsv")
    conda:
        "../envs/moclip.yaml"
    threads: 4
    resources:
        mem_mb=memory_mb(500, per_thread=200),
        runtime=minutes(600),
    params:
        spec={**config["demo"], "seed": config["seed"]},
        format=RUN.format,
        code=code_digest("demo_data"),
    script:
        "../workflow_scripts/demo_data.py"
