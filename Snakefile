# moclip: MoCLIP-Lite action recognition from frozen CLIP and compressed-stream motion vectors.
# Stages: demo data (when no dataset is given) -> manifest -> per-shard MV and frame caches
# -> CLIP embeddings (and zero-shot with pretrained weights) and MV network features
# -> heads (clip_linear, fusion) -> per-split reports and the summary.


import atexit
import sys

from snakemake.utils import min_version

from moclip.workflow.config import CommandLine, ConfigError, check_config, load_config, load_yaml, ordered_like
from moclip.workflow.experiments import experiment_configs
from moclip.io import RunLockedError, hold_run_lock
from moclip.runtime import watch_run

min_version("9.0")

# The jobs import moclip from this repository, whatever the environment they run in: an
# --sdm conda env (envs/moclip.yaml) holds the packages but not the workflow's own code.
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (workflow.basedir, os.environ.get("PYTHONPATH")) if p))
# OpenMP threads wait by sleeping, not spinning, unless the environment says otherwise: a
# job's spinning threads take the cores its own data preparation and the run's other jobs
# need. The numbers do not change (the thread count sets the arithmetic, not the wait).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# The defaults (config.yaml), always read from this repository whatever the working
# directory; a user's --configfile (config/ holds the presets) is merged over them key by key.
configfile: os.path.join(workflow.basedir, "config.yaml")


# Then the --config values, typed as YAML inside a nested value (heads='{"lr": 0.01}': Snakemake
# merges it into the block with every leaf a string) and named "--config" in errors.
CONFIG_FILES = [
    os.path.join(workflow.basedir, "config.yaml"),
    *workflow.overwrite_configfiles,
    CommandLine(workflow.config_settings.config or {}),
]
# Keys in config.yaml's order whatever order a user's file sets them in: params built from
# a section do not change (and rerun nothing) when a file's keys are reordered.
try:
    _ordered = ordered_like(load_config(CONFIG_FILES), load_yaml(CONFIG_FILES[0]))
except ConfigError as e:  # the user's file and line, without Snakemake's wrapper and traceback
    sys.exit(str(e))
config.clear()
config.update(_ordered)


# One line a problem, naming the file and line that set the key and the nearest valid name;
# then each experiment's config (the run's with its overrides), checked as a whole.
SCHEMA = os.path.join(workflow.basedir, "schemas", "config.schema.yaml")
try:
    check_config(config, SCHEMA, CONFIG_FILES)
    EXPERIMENT_CONFIGS = experiment_configs(config, SCHEMA, CONFIG_FILES)
except ConfigError as e:  # printed as it is, exit status 1: no Snakemake wrapper or traceback
    sys.exit(str(e))


report: "report/workflow.rst"


include: "rules/common.smk"


wildcard_constraints:
    **WILDCARDS,


include: "rules/demo.smk"
include: "rules/manifest.smk"
include: "rules/cache.smk"
include: "rules/clip.smk"
include: "rules/mv.smk"
include: "rules/dense.smk"
include: "rules/heads.smk"
include: "rules/report.smk"


localrules:
    all,
    caches,
    features,
    cache_failures,


# Every video's frozen features and the list of videos that failed: a folder run's product.
rule features:
    input:
        feature_targets(),


rule all:
    default_target: True
    input:
        final_targets(),


# One run writes a results folder at a time, whatever its working directory (Snakemake's
# lock is per working directory): this process holds a flock in the folder until it ends.
# Only a run that executes jobs takes it (onstart: no dry run, nothing-to-do or --summary).
onstart:
    try:
        hold_run_lock(RESULTS)
    except RunLockedError as e:
        raise WorkflowError(str(e)) from None
    watch = watch_run(running_jobs)  # the console hears of a running job at least every ~20 s
    if watch:
        atexit.register(watch.stamp.close)  # its stamp file ($TMPDIR) goes with the run


onsuccess:
    print(run_end(True), file=sys.stderr)


onerror:
    print(run_end(False), file=sys.stderr)
