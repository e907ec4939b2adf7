"""Re-encode one shard's videos (CoViAR's MPEG-4 Part 2 at 340x256, GOP 12) for the cache."""

from moclip.reencode import reencode_shard
from moclip.runtime import log_to

log_to(snakemake.log[0])
p = snakemake.params
reencode_shard(
    **snakemake.input,
    **snakemake.output,
    videos_root=p.videos_root,
    recipe=p.recipe,
    threads=snakemake.threads,
)
