"""One split's report: metrics.json of every method, and its plots."""

from moclip.runtime import log_to

log_to(snakemake.log[0])  # first: Ctrl-C during the imports below stays off the console

from moclip.methods import HEADS, PRODUCT_MODEL
from moclip.report import report_split

inp, p = snakemake.input, snakemake.params
report_split(
    **snakemake.output,
    split=int(snakemake.wildcards.split),
    methods={m: inp[m] for m in p.methods},
    failures=inp.failures,
    reencoded=inp.reencoded,
    cut=inp.cut,
    manifest=inp.manifest,
    dataset=inp.dataset,
    settings=p.settings,
    product_predictions=inp.product_predictions,
    mv_training=inp.mv_training,
    head_training={h: inp[f"{h}_training"] for h in HEADS},
    artefacts={"clip_embeddings": inp.clip_shard, "mv_model": inp.mv_model, PRODUCT_MODEL: inp.product_model},
)
