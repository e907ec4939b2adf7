"""Generate the embedded demo dataset in the configured format's layout."""

from moclip.runtime import log_to

log_to(snakemake.log[0])  # first: Ctrl-C during the imports below stays off the console

from moclip.dataset.demo import DemoSpec, demo_data

p = snakemake.params
demo_data(**snakemake.output, spec=DemoSpec.from_config(p.spec), format=p.format, threads=snakemake.threads)
