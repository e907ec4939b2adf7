"""Train one head (moclip.methods.HEADS) on one split's precomputed features."""

from moclip.runtime import log_to

log_to(snakemake.log[0])  # first: Ctrl-C during the imports below stays off the console

from moclip.heads import HeadSettings, train_head

inp, p = snakemake.input, snakemake.params
train_head(
    **snakemake.output,
    head=snakemake.wildcards.head,
    split=int(snakemake.wildcards.split),
    manifest=inp.manifest,
    clip=inp.get("clip", []),
    mv=inp.get("mv", []),
    settings=HeadSettings.from_config(p.settings),
    seeds=list(p.seeds),
)
