"""Embed shards' cached frames with the frozen CLIP image encoder (one shard a job on the
CPU, every shard on a GPU)."""

from moclip.runtime import log_to

log_to(snakemake.log[0])  # first: Ctrl-C during the imports below stays off the console

from moclip.clip.stream import ClipSettings, clip_embed

clip_embed(
    frames=list(snakemake.input.frames),
    index=list(snakemake.input.index),
    out=list(snakemake.output.out),
    settings=ClipSettings.from_config(snakemake.params.settings),
    device=snakemake.config["clip"]["device"],  # a machine setting: not a param
    threads=snakemake.threads,
)
