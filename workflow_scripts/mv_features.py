"""Frozen MV-network features of one shard's videos, for every split's network."""

from pathlib import Path

from moclip.cache import read_index
from moclip.io import log_to, use_threads
from moclip.mv_stream import extract_features, load_checkpoint

log_to(snakemake.log[0])
use_threads(snakemake.threads)
ids = [r.video_id for r in read_index(snakemake.input.index)]
files = [Path(snakemake.input.mv) / f"{v}.h5" for v in ids]
for model_file, out in zip(snakemake.input.models, snakemake.output, strict=True):
    model, settings, _ = load_checkpoint(model_file)
    extract_features(model, settings, files, ids, out)
