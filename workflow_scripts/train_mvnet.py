"""Train the MV network on one split (train part), select on val, report test."""

from moclip.runtime import log_to

log_to(snakemake.log[0])  # first: Ctrl-C during the imports below stays off the console

from moclip.mv.data import MVSettings
from moclip.mv.stream import train_mvnet

inp = snakemake.input
train_mvnet(
    **snakemake.output,
    manifest=inp.manifest,
    mv=inp.mv,
    index=inp.index,
    split=int(snakemake.wildcards.split),
    settings=MVSettings.from_config(snakemake.params.settings),
    device=snakemake.config["mvnet"]["device"],  # a machine setting: not a param
    threads=snakemake.threads,
)
