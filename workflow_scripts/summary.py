"""The method x split summary (JSON and Markdown) with costs and the CLIP weights used."""

from moclip.clip_stream import load_clip
from moclip.io import log_to
from moclip.report import make_summary

log_to(snakemake.log[0])
inp, p = snakemake.input, snakemake.params
make_summary(inp.reports, load_clip(p.model, p.pretrained, seed=p.seed), inp.mv_model,
             {"fusion": inp.fusion_model, "clip_linear": inp.clip_linear_model}, p.frames,
             snakemake.output.json, snakemake.output.md)
