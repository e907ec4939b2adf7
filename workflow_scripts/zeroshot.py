"""Zero-shot classification of one split's test videos from the CLIP embedding shards."""

from moclip.runtime import log_to

log_to(snakemake.log[0])  # first: Ctrl-C during the imports below stays off the console

from moclip.zeroshot import zeroshot

p = snakemake.params
zeroshot(
    **snakemake.output,
    manifest=snakemake.input.manifest,
    shards=list(snakemake.input.shards),
    split=int(snakemake.wildcards.split),
    model=p.model,
    pretrained=p.pretrained,
    quick_gelu=p.quick_gelu,
    device=snakemake.config["clip"]["device"],  # a machine setting: not a param
    prompts=p.prompts,
    templates=p.templates,
    prompt_norm=p.prompt_norm,
    seed=p.seed,
    cpu_threads=p.cpu_threads,
)
