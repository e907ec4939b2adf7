"""Gather every shard's failed videos into one table."""

from moclip.cache import collect_failures
from moclip.io import log_to

log_to(snakemake.log[0])
collect_failures(snakemake.input, snakemake.output[0])
