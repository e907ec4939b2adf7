"""The experiments side by side: one table (Markdown, HTML, JSON) and a plot of accuracy against cost."""

from moclip.runtime import log_to

log_to(snakemake.log[0])  # first: Ctrl-C during the imports below stays off the console

from moclip.compare import compare

p = snakemake.params
compare(
    **snakemake.output,
    summaries=dict(zip(p.names, snakemake.input.summaries)),
    jobs=p.jobs,
    benchmarks=p.benchmarks,
    gpu_dirs=p.gpu_dirs,
)
