"""Decode one shard's videos into motion-vector and frame caches."""

from moclip.runtime import log_to

log_to(snakemake.log[0])  # first: Ctrl-C during the imports below stays off the console

from moclip.video.cache import FrameStorage, cache_shard
from moclip.video.codec import DecodeSettings

p = snakemake.params
cache_shard(
    **snakemake.input,
    **snakemake.output,
    videos_root=p.videos_root,
    settings=DecodeSettings.from_config(p.decode),
    compression=p.compression,
    storage=FrameStorage.from_config(p.storage),
    threads=snakemake.threads,
)
