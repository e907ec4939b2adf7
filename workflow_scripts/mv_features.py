"""Frozen MV-network features of one shard's videos, for every split's network."""

from moclip.mv_stream import mv_features
from moclip.runtime import log_to

log_to(snakemake.log[0])
mv_features(
    **snakemake.input,
    **snakemake.output,
    device=snakemake.config["mvnet"]["device"],  # a machine setting: not a param
    threads=snakemake.threads,
)
