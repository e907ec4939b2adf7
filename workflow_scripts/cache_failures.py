"""Gather every shard's failed videos into one table."""

from moclip.cache import cache_failures
from moclip.runtime import log_to

log_to(snakemake.log[0])
cache_failures(**snakemake.input, **snakemake.output)
