"""Zero-shot classification of one split's test videos from the CLIP embedding shards."""

from moclip.runtime import log_to

log_to(snakemake.log[0])  # first: Ctrl-C during the imports below stays off the console

from moclip.clip.zeroshot import zeroshot

zeroshot(
    **snakemake.output,
    manifest=snakemake.input.manifest,
    shards=list(snakemake.input.shards),
    split=int(snakemake.wildcards.split),
    device=snakemake.config["clip"]["device"],  # a machine setting: not a param
    **snakemake.params.settings,
)
