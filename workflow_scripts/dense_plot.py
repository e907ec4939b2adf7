"""The dense features of the run's first videos along time, for the report."""

from moclip.runtime import log_to

log_to(snakemake.log[0])  # first: Ctrl-C during the imports below stays off the console

from moclip.dense_plots import dense_plot

dense_plot(shards=list(snakemake.input.shards), out=snakemake.output.png)
