"""Embed shards' cached frames with the frozen CLIP image encoder (one shard a job on the
CPU, every shard on a GPU)."""

from moclip.runtime import log_to

log_to(snakemake.log[0])  # first: Ctrl-C during the imports below stays off the console

from moclip.clip_stream import clip_embed

p = snakemake.params
clip_embed(
    frames=list(snakemake.input.frames),
    index=list(snakemake.input.index),
    out=list(snakemake.output.out),
    model=p.model,
    pretrained=p.pretrained,
    device=snakemake.config["clip"]["device"],  # a machine setting: not a param
    precision=p.precision,
    batch_videos=p.batch_videos,
    dtype=p.dtype,
    seed=p.seed,
    interpolation=p.interpolation,
    threads=snakemake.threads,
)
