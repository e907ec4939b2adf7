"""Train the MV network on one split (train part), select on val, report test."""

from pathlib import Path

from moclip.io import log_to, use_threads
from moclip.manifest import read_manifest
from moclip.mv_stream import MVSettings, run_training

log_to(snakemake.log[0])
use_threads(snakemake.threads)
p, out = snakemake.params, snakemake.output
settings = MVSettings(**{**p.settings, "milestones": tuple(p.settings["milestones"])})
cache_root = Path(snakemake.input.index[0]).parent.parent  # results/cache
run_training(read_manifest(snakemake.input.manifest), cache_root, int(snakemake.wildcards.split), settings,
             out.model, out.training, out.metrics)
