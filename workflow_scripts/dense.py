"""Dense per-window CLIP and MV features of one shard's whole videos."""

from moclip.runtime import log_to

log_to(snakemake.log[0])  # first: Ctrl-C during the imports below stays off the console

from moclip.clip.stream import ClipSettings
from moclip.dense import DenseSettings, dense

p = snakemake.params
dense(
    videos=list(snakemake.input.videos),
    manifest=snakemake.input.manifest,
    model=snakemake.input.model,
    out=snakemake.output.out,
    videos_root=p.videos_root,
    settings=DenseSettings.from_config(p.settings),
    clip=ClipSettings.from_config(p.clip),
    device=snakemake.config["clip"]["device"],  # a machine setting: not a param
    threads=snakemake.threads,
)
