"""Parse the dataset's split lists into the manifest."""

from moclip.manifest import manifest
from moclip.runtime import log_to

log_to(snakemake.log[0])
p = snakemake.params
manifest(
    videos=snakemake.input.videos,
    lists=snakemake.input.lists,
    splits=p.splits,
    val_groups=p.val_groups,
    shards=p.shards,
    seed=p.seed,
    out=snakemake.output.tsv,
)
