"""Parse the UCF101 split lists into the manifest."""

from moclip.io import log_to
from moclip.manifest import build_manifest, write_manifest

log_to(snakemake.log[0])
p = snakemake.params
rows = build_manifest(snakemake.input.videos, snakemake.input.lists, p.splits, p.val_groups, p.shards, p.seed)
write_manifest(rows, snakemake.output.tsv)
