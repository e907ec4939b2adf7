"""The method x split summary (JSON, Markdown, HTML) with costs, the CLIP weights and the dataset."""

from moclip.runtime import log_to

log_to(snakemake.log[0])  # first: Ctrl-C during the imports below stays off the console

from moclip.methods import HEADS
from moclip.report import summary

inp, p = snakemake.input, snakemake.params
summary(
    **snakemake.output,
    reports=inp.reports,
    mv_model=inp.mv_model,
    dataset=inp.dataset,
    head_models={h: inp[f"{h}_model"] for h in HEADS},
    clip_shard=inp.clip_shard,
    frames=p.frames,
)
