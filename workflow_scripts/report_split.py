"""One split's report: metrics.json of every method, and its plots."""

from moclip.io import log_to
from moclip.manifest import read_manifest
from moclip.report import make_split_report

log_to(snakemake.log[0])
inp, out, p = snakemake.input, snakemake.output, snakemake.params
make_split_report(
    int(snakemake.wildcards.split), {m: inp[m] for m in p.methods}, inp.failures, read_manifest(inp.manifest),
    p.settings, inp.fusion_predictions, inp.mv_training,
    {"fusion": inp.fusion_training, "clip_linear": inp.clip_linear_training},
    out.metrics, out.confusion, out.per_class, out.curves,
    artefacts={"mv_model": inp.mv_model, "fusion_model": inp.fusion_model},
)
