"""Gather every shard's failed videos into one table."""

from moclip.runtime import log_to

log_to(snakemake.log[0])  # first: Ctrl-C during the imports below stays off the console

from moclip.video.cache import cache_failures

cache_failures(**snakemake.input, **snakemake.output)
