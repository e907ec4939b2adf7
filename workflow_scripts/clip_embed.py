"""Embed one shard's cached frames with the frozen CLIP image encoder."""

from pathlib import Path

from moclip.cache import read_index
from moclip.clip_stream import embed_frame_caches, load_clip
from moclip.io import log_to, use_threads

log_to(snakemake.log[0])
use_threads(snakemake.threads)
p = snakemake.params
clip = load_clip(p.model, p.pretrained, seed=p.seed)
ids = [r.video_id for r in read_index(snakemake.input.index)]
files = [Path(snakemake.input.frames) / f"{v}.h5" for v in ids]
workers = max(0, snakemake.threads - 1)
embed_frame_caches(clip, files, ids, snakemake.output[0], p.batch_videos, workers, p.device, p.dtype)
