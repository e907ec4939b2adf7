"""Train one head (fusion or clip_linear) on one split's precomputed features."""

from pathlib import Path

from moclip.heads import HeadSettings, run_head
from moclip.io import log_to, use_threads
from moclip.manifest import read_manifest

log_to(snakemake.log[0])
use_threads(snakemake.threads)
inp, p = snakemake.input, snakemake.params
run_head(snakemake.wildcards.head, read_manifest(inp.manifest), int(snakemake.wildcards.split), inp.clip,
         inp.get("mv", []), HeadSettings(**p.settings), list(p.seeds), Path(snakemake.output.metrics).parent)
