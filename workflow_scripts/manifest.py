"""Read the dataset's listing into the manifest and the dataset summary."""

from moclip.runtime import log_to

log_to(snakemake.log[0])  # first: Ctrl-C during the imports below stays off the console

from moclip.dataset.manifest import manifest

p = snakemake.params
manifest(
    videos=p.videos,
    lists=p.lists,
    format=p.format,
    classes=p.classes,
    splits=p.splits,
    val_groups=p.val_groups,
    shards=p.shards,
    seed=p.seed,
    out=snakemake.output.tsv,
    summary=snakemake.output.summary,
)
