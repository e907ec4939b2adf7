"""Decode one shard's videos into motion-vector and frame caches."""

from pathlib import Path

from moclip.cache import cache_shard
from moclip.codec import DecodeSettings
from moclip.io import log_to

log_to(snakemake.log[0])
p, out = snakemake.params, snakemake.output
cache_shard(
    [(Path(v).stem, v) for v in snakemake.input.videos],
    out.mv,
    out.frames,
    out.index,
    DecodeSettings(**p.decode),
    p.compression,
    snakemake.threads,
)
