"""Zero-shot classification of one split's test videos from the CLIP embedding shards."""

from moclip.runtime import log_to
from moclip.zeroshot import zeroshot

log_to(snakemake.log[0])
p = snakemake.params
zeroshot(
    **snakemake.output,
    manifest=snakemake.input.manifest,
    shards=list(snakemake.input.shards),
    split=int(snakemake.wildcards.split),
    model=p.model,
    pretrained=p.pretrained,
    device=snakemake.config["clip"]["device"],  # a machine setting: not a param
    prompts=p.prompts,
    templates=p.templates,
    prompt_norm=p.prompt_norm,
    seed=p.seed,
    threads=snakemake.threads,
)
