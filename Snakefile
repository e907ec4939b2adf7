# moclip: MoCLIP-Lite action recognition from frozen CLIP and compressed-stream motion vectors.
# Stages: demo data (when no dataset is given) -> manifest -> per-shard MV and frame caches.


from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "schemas/config.schema.yaml")


include: "rules/common.smk"
include: "rules/demo.smk"
include: "rules/manifest.smk"
include: "rules/cache.smk"


rule all:
    default_target: True
    input:
        rules.caches.input,
