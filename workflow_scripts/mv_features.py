"""Frozen MV-network features: one shard under every split's network (CPU), or every shard
under one split's network (GPU)."""

from moclip.runtime import log_to

log_to(snakemake.log[0])  # first: Ctrl-C during the imports below stays off the console

from moclip.mv.stream import mv_features

inp = snakemake.input
mv_features(
    models=list(inp.models),
    mv=list(inp.mv),
    index=list(inp.index),
    out=list(snakemake.output.out),
    device=snakemake.config["mvnet"]["device"],  # a machine setting: not a param
    manifest=inp.get("manifest"),
    draws=snakemake.params.draws,
    threads=snakemake.threads,
)
