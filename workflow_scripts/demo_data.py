"""Generate the embedded demo dataset."""

from moclip.demo import DemoSpec, make_demo_dataset
from moclip.io import log_to

log_to(snakemake.log[0])
spec = DemoSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in snakemake.params.spec.items()})
make_demo_dataset(snakemake.output.videos, snakemake.output.lists, spec, threads=snakemake.threads)
