"""Re-encode one shard's videos (all by dataset.reencode's recipe, or those without motion vectors) for the cache."""

from moclip.runtime import log_to

log_to(snakemake.log[0])  # first: Ctrl-C during the imports below stays off the console

from moclip.video.reencode import reencode_shard

p = snakemake.params
reencode_shard(
    **snakemake.input,
    **snakemake.output,
    videos_root=p.videos_root,
    **p.settings,
    threads=snakemake.threads,
)
