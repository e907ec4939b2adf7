"""Frozen MV-network features of one shard's videos at the fixed evaluation segments."""

from pathlib import Path

from moclip.cache import read_index
from moclip.io import log_to, use_threads
from moclip.mv_stream import extract_features, load_checkpoint

log_to(snakemake.log[0])
use_threads(snakemake.threads)
model, settings, _ = load_checkpoint(snakemake.input.model)
ids = [r.video_id for r in read_index(snakemake.input.index)]
extract_features(model, settings, [Path(snakemake.input.mv) / f"{v}.h5" for v in ids], ids, snakemake.output[0])
