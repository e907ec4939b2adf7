"""Generate the embedded demo dataset."""

from moclip.demo import DemoSpec, demo_data
from moclip.runtime import log_to

log_to(snakemake.log[0])
demo_data(**snakemake.output, spec=DemoSpec.from_config(snakemake.params.spec), threads=snakemake.threads)
