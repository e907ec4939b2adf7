# Helpers shared by the stage files: where every output lives, the names a wildcard can
# take, the inputs and targets, and what identifies each rule's code. Module-level code here
# runs again in every cluster job: it stays cheap (no walk over the dataset but a folder's
# listing; the manifest is read only on demand; the code digests parse the library's modules).

import contextlib
import functools
import logging
import os
import signal
import sys
from pathlib import Path

from snakemake_interface_logger_plugins.common import LogEvent

import moclip
from moclip.workflow import plan
from moclip.workflow.checks import check_experiments
from moclip.workflow.config import ConfigError
from moclip.workflow.experiments import (
    DEVICE_SECTIONS,
    STAGE_DIRS,
    by_root,
    describe,
    experiment_wildcards,
    experiments,
    own_jobs,
)
from moclip.workflow.layout import SHARD_DIGITS, Layout, gpu_slots_line
from moclip.methods import CONFUSION_PLOT, HEADS, PRODUCT, head_inputs
from moclip.clip.prompts import prompt_files
from moclip.workflow.provenance import code_digest as _code_digest
from moclip.workflow.resources import DENSE_MB, Workloads, dense_seconds, memory_mb, minutes
from moclip.runtime import JOBS_PER_CARD, local_gpu, local_gpus
from moclip.dataset.videos import SPLITS as ALL_SPLITS
from moclip.dataset.videos import shard_rows

# --------------------------------------------------------------------------- the run


def cluster_executor():
    """Whether the run's jobs go to a cluster: the executor its command line or profile names
    (``executor: slurm``) runs jobs elsewhere. Snakemake attaches the executor to the workflow
    only after reading this file, so it is read from the command line as Snakemake's CLI
    parsed it (profiles included; a dry run keeps the executor it plans for). Through the
    Python API there is no command line: the run counts as local."""
    frame = sys._getframe()
    while frame is not None:
        args = frame.f_locals.get("args")
        if frame.f_code.co_name == "args_to_api" and hasattr(args, "executor"):
            from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

            return not ExecutorPluginRegistry().get_plugin(args.executor or "local").common_settings.local_exec
        frame = frame.f_back
    return False


# What ``device: auto`` means for the run, decided once by the main process and read by its
# jobs (each parses this file again, on its node, and must plan the same DAG): a GPU when
# this machine shows a card and the jobs run here, or when they go to a cluster (a GPU job
# gets its card from the scheduler, sbatch --gpus; a cluster without GPUs sets device: cpu).
AUTO_GPU = "MOCLIP_AUTO_GPU"
if workflow.is_main_process:
    os.environ[AUTO_GPU] = "1" if cluster_executor() or local_gpu() else "0"


envvars:
    AUTO_GPU,  # through the executor to every job (SLURM's sbatch exports it anyway)


# The dataset's paths, videos and shards, and which stages run on a GPU (moclip.workflow.layout).
RUN = Layout(config, os.environ[AUTO_GPU] == "1", tuple(CONFIG_FILES))
RESULTS, LABELLED, SPLITS = RUN.results, RUN.labelled, RUN.splits
# GPU jobs a card runs at once, each in a slot of its own (moclip.runtime.claim_gpu): every
# job's environment carries the setting, as the stages' scripts never see it.
os.environ[JOBS_PER_CARD] = str(config["gpu"]["jobs_per_card"])
# The run's experiments (moclip.workflow.experiments): each a whole config, and where each stage's
# outputs live (the top level's are the run's own settings'); a run without the key is one
# experiment, every output at the top level.
EXPERIMENTS = experiments(config, EXPERIMENT_CONFIGS)
BY_ROOT = by_root(config, EXPERIMENTS)  # an output root ({exp} wildcard) -> its experiment
# Once, before any job (cluster jobs parse this file again and skip it): the dataset's
# entries, the prompts, and with real models the registries and the weights' files.
if workflow.is_main_process:
    try:
        check_experiments(config, EXPERIMENTS, CONFIG_FILES, RUN)
    except ConfigError as e:  # the user's file and line, without Snakemake's wrapper and traceback
        sys.exit(str(e))
    for line in describe(EXPERIMENTS):
        print(f"moclip: {line}", file=sys.stderr)
    if local_gpu() and not cluster_executor() and (RUN.on_gpu("clip") or RUN.on_gpu("mvnet")):  # gpu=1: a slot
        gpu = workflow.global_resources.get("gpu").value if "gpu" in workflow.global_resources else None
        line = gpu_slots_line(gpu, local_gpus(), config["gpu"]["jobs_per_card"])
        if line:
            print(f"moclip: {line}", file=sys.stderr)
SHARDS = RUN.shards  # counted after the checks, which name a bad list's file and line
# Each job's mem_mb and runtime from measured peaks and rates (moclip.workflow.resources), for the
# experiment's config (device settings, and so the batching, are the run's).
WORK = Workloads(
    {r: e.config for r, e in BY_ROOT.items()},
    RUN.n_videos,
    len(SHARDS),
    RUN.clip_batched,
    RUN.mv_batched,
    RUN.split_videos,
)


def results(path):
    """Every output lives under the results root."""
    return f"{RESULTS}/{path}"


def logs(path):
    return results(f"logs/{path}")


def benchmarks(path):
    return results(f"benchmarks/{path}")


def demo_outputs():
    """Rule demo_data's outputs: the videos' folder, and the lists' folder or CSV file."""
    return {k: v if k == "lists" and RUN.lists_are_a_file else directory(v) for k, v in RUN.demo_dirs.items()}


def experiment(wildcards):
    """The experiment whose outputs a job writes (its ``exp`` wildcard, an output root)."""
    return BY_ROOT[wildcards.exp]


def setting(fn, *args):
    """A param: ``fn`` (a moclip.workflow.plan function) of the job's experiment's config."""
    return lambda wildcards: fn(experiment(wildcards).config, *args)


def uses_gpu(section):
    """The ``gpu`` resource of a rule that runs the stage of ``config[section]``."""
    return int(RUN.on_gpu(section))


@functools.cache
def code_digest(rule):
    """Digest of the library modules that rule ``rule``'s script reaches through its imports
    (Snakemake tracks the script itself, not the library): a code change reruns exactly the
    rules whose scripts reach the changed module. Each rule runs workflow_scripts/<rule>.py.
    """
    script = Path(workflow.basedir, "workflow_scripts", f"{rule}.py")
    return _code_digest(script, Path(moclip.__file__).parent)


# --------------------------------------------------------------------------- what a wildcard can take

WILDCARDS = {
    "shard": rf"\d{{{SHARD_DIGITS}}}",
    "split": "|".join(str(k) for k in ALL_SPLITS),
    "head": "|".join(HEADS),
    **experiment_wildcards(EXPERIMENTS),  # roots, tags and heads' inputs
}

# --------------------------------------------------------------------------- inputs


def manifest_inputs(wildcards):
    """The manifest's inputs: the videos' root and the lists. A real dataset's timestamps
    never trigger reruns (the list files' contents and a folder's listing do); the demo is
    regenerated by the workflow, so its times count."""
    if RUN.demo:
        return dict(RUN.demo_dirs)
    return {"videos": ancient(RUN.videos), "list_files": RUN.list_files}


def shard_videos(wildcards):
    """A shard's video files (after the manifest checkpoint has run). A real dataset's
    timestamps never trigger reruns; a change of the set of videos does. The demo is
    regenerated by the workflow, so its times count."""
    rows = shard_rows(checkpoints.manifest.get().output.tsv, int(wildcards.shard))
    paths = [os.path.join(RUN.videos, r.path) for r in rows]
    return paths if RUN.demo else [ancient(p) for p in paths]


def output_of(rule, name, e, stage=None, **wildcards):
    """Output ``name`` of ``rule`` for experiment ``e``: under the root of the shared
    ``stage`` whose outputs it is (else the experiment's own root), with its tags."""
    root = e.own if stage is None else e.roots[stage]
    pattern = getattr(getattr(rules, rule).output, name)
    return expand(pattern, exp=root, clip=e.clip_tag, mv=e.mv_tag, **wildcards)


def cache_inputs(wildcards):
    """cache_shard's inputs: the shard's videos (the index names them), the manifest (their
    ids; its time never triggers a rerun) and, when videos are re-encoded, reencode_shard's
    directory (the files it decodes) and index."""
    e, shard = experiment(wildcards), wildcards.shard
    inputs = {
        "videos": shard_videos(wildcards),
        "manifest": ancient(rules.manifest.output.tsv),
    }
    if plan.reencoding(e.config):
        inputs["reencoded"] = output_of("reencode_shard", "out", e, "reencode", shard=shard)[0]
        inputs["reencode_index"] = output_of("reencode_shard", "index", e, "reencode", shard=shard)[0]
    return inputs


def cache_files(e, shards, *keys):
    """Outputs ``keys`` of rule cache_shard (frames, mv, index) for ``shards``, by key."""
    return {key: output_of("cache_shard", key, e, "cache", shard=shards) for key in keys}


CLIP_SHARD = results("{exp}embeddings/clip/{clip}/shard-{shard}.h5")
CLIP_JOB = "all-shards" if RUN.clip_batched else "shard-{shard}"  # a clip_embed job's name
# clip_embed's outputs: every shard's file in one GPU job, or the job's shard's
CLIP_JOB_OUTPUTS = expand(CLIP_SHARD, shard=SHARDS, allow_missing=True) if RUN.clip_batched else [CLIP_SHARD]


def clip_shards(e):
    return expand(CLIP_SHARD, exp=e.roots["clip"], clip=e.clip_tag, shard=SHARDS)


def clip_embed_inputs(wildcards):
    """A clip_embed job's shards' frame caches and indexes."""
    shards = SHARDS if RUN.clip_batched else [wildcards.shard]
    return cache_files(experiment(wildcards), shards, "frames", "index")


def train_mvnet_inputs(wildcards):
    """Every shard's MV caches and indexes, and the manifest."""
    return {
        **cache_files(experiment(wildcards), SHARDS, "mv", "index"),
        "manifest": rules.manifest.output.tsv,
    }


def mvnet_file(e, name, split):
    """The experiment's MV network of ``split``: output ``name`` of train_mvnet."""
    return output_of("train_mvnet", name, e, "mvnet", split=split)[0]


def mv_features_path(split, shard):
    network = f"split{split}/" if LABELLED else ""  # a split's network, or a folder run's one
    return results(f"{{exp}}embeddings/mv/{{mv}}/{network}shard-{shard}.h5")


def mv_feature_shards(e, split):
    path = mv_features_path(split, "{shard}")
    return expand(path, exp=e.roots["mv_features"], mv=e.mv_tag, shard=SHARDS)


# A mv_features job's name and outputs, network-major: on the CPU one shard under every
# network; on a GPU every shard under one network (a split's, or a folder run's given one).
if not RUN.mv_batched:
    MV_JOB = "shard-{shard}"
    MV_JOB_OUTPUTS = [mv_features_path(k, "{shard}") for k in RUN.networks]
else:
    MV_JOB = "split{split}" if LABELLED else "all-shards"
    MV_JOB_OUTPUTS = [mv_features_path("{split}", s) for s in SHARDS]


def mv_features_inputs(wildcards):
    """A mv_features job's networks, and its shards' MV caches and indexes."""
    e = experiment(wildcards)
    models = [ancient(config["features"]["mv_model"])]  # a folder run's given network
    if LABELLED:
        models = [mvnet_file(e, "model", k) for k in ([wildcards.split] if RUN.mv_batched else SPLITS)]
    shards = SHARDS if RUN.mv_batched else [wildcards.shard]
    inputs = {"models": models, **cache_files(e, shards, "mv", "index")}
    if LABELLED and e.config["heads"]["mv_draws"]:  # the videos each network trained on
        inputs["manifest"] = rules.manifest.output.tsv
    return inputs


DENSE_SHARD = results("dense/shard-{shard}.h5")  # the run's (experiments cannot vary dense:)


def dense_inputs(wildcards):
    """A dense job's videos, the manifest (their ids) and its MV network: a split's trained
    one, or a given checkpoint (whose time never triggers a rerun)."""
    net = plan.dense_network(config)
    model = mvnet_file(EXPERIMENTS[0], "model", net) if isinstance(net, int) else ancient(net)
    return {"videos": shard_videos(wildcards), "manifest": ancient(rules.manifest.output.tsv), "model": model}


def dense_targets():
    """Every shard's dense file and the timeline plot, with dense: on."""
    return [*expand(DENSE_SHARD, shard=SHARDS), results("dense/timeline.png")] if plan.dense_on(config) else []


def head_feature_inputs(wildcards):
    """A head's features: the shards of the streams it reads (CLIP's, the split's MV)."""
    e = experiment(wildcards)
    shards = {
        "clip": lambda: clip_shards(e),
        "mv": lambda: mv_feature_shards(e, wildcards.split),
    }
    return {s: shards[s]() for s in HEADS[wildcards.head].streams}


def head_output(e, name, split, head):
    """One output of rule train_head."""
    inputs = head_inputs(head, e.clip_tag, e.mv_tag)
    return output_of("train_head", name, e, inputs=inputs, split=split, head=head)[0]


def split_method_metrics(wildcards):
    """Every method's metrics.json of one split (zero-shot only with pretrained CLIP)."""
    e, k = experiment(wildcards), wildcards.split
    files = {"mv_only": mvnet_file(e, "metrics", k)}
    files.update((head, head_output(e, "metrics", k, head)) for head in HEADS)
    if e.config["clip"]["pretrained"] != "none":
        files["zeroshot"] = output_of("zeroshot", "metrics", e, "zeroshot", split=k)[0]
    return files


def report_inputs(wildcards):
    """report_split's inputs beside the methods' metrics: what its tables and plots read,
    and what ``moclip predict`` loads (the CLIP settings from an embedding shard)."""
    e, k = experiment(wildcards), wildcards.split
    return {
        **{f"{h}_training": head_output(e, "training", k, h) for h in HEADS},
        "failures": output_of("cache_failures", "out", e, "cache")[0],
        "reencoded": output_of("cache_failures", "reencoded", e, "cache")[0],
        "cut": output_of("cache_failures", "cut", e, "cache")[0],
        "mv_training": mvnet_file(e, "training", k),
        "clip_shard": clip_shards(e)[0],
        "mv_model": mvnet_file(e, "model", k),
        "product_model": head_output(e, "model", k, PRODUCT),
        "product_predictions": head_output(e, "predictions", k, PRODUCT),
    }


def summary_inputs(wildcards):
    """The summary's inputs: the split reports, the first split's models (the costs) and a
    CLIP shard (the CLIP settings, as recorded with the embeddings)."""
    e = experiment(wildcards)
    return {
        **{f"{h}_model": head_output(e, "model", SPLITS[0], h) for h in HEADS},
        "reports": output_of("report_split", "metrics", e, split=SPLITS),
        "mv_model": mvnet_file(e, "model", SPLITS[0]),
        "clip_shard": clip_shards(e)[0],
    }


def summary_labels(wildcards):
    """The report's label of a summary: the experiment's name where the run has several."""
    return {"experiment": experiment(wildcards).name}


def split_result(name):
    """The report's labels of one result of a split's page: which result it is, and the
    experiment where the run has several (a page's rows must differ, or it shows one)."""

    def labels(wildcards):
        e = experiment(wildcards)
        return {"result": name, **({"experiment": e.name} if e.name else {})}  # experiments: a toggle

    return labels


# --------------------------------------------------------------------------- targets


def job_outputs(rule, e, stage=None, **wildcards):
    """Every output of ``rule``'s jobs for experiment ``e`` (see output_of)."""
    return [f for name in getattr(rules, rule).output.keys() for f in output_of(rule, name, e, stage, **wildcards)]


def cache_targets():
    """Every cache of the experiments (each shard's files) and the failed videos' lists."""
    files = []
    for e in EXPERIMENTS:
        files += job_outputs("cache_shard", e, "cache", shard=SHARDS) + job_outputs("cache_failures", e, "cache")
        if plan.reencoding(e.config):
            files += job_outputs("reencode_shard", e, "reencode", shard=SHARDS)
    return sorted(set(files))


def feature_targets():
    """Every shard's CLIP embeddings and MV features, and the caches."""
    e = EXPERIMENTS[0]
    mv = []
    if LABELLED or config["features"]["mv_model"]:
        mv = [f for k in RUN.networks for f in mv_feature_shards(e, k)]
    return [*cache_targets(), *clip_shards(e), *mv, *dense_targets()]


def final_targets():
    """The default targets: every output of every job the run's reports, summaries and
    comparison are made from (a folder run, no labels: the features). Each is a target so
    that the next plain run rebuilds a missing one (a killed job's outputs, which Snakemake
    deletes) and what reads it: Snakemake rebuilds a missing file only when a job that runs
    asks for it, and an up-to-date reader does not run."""
    files = [*RUN.demo_dirs.values()] if RUN.demo else []
    files += [rules.manifest.output.tsv, rules.manifest.output.summary, *feature_targets()]
    if not LABELLED:
        return sorted(set(files))
    for e in EXPERIMENTS:
        files += clip_shards(e)
        if e.config["clip"]["pretrained"] != "none":
            files += job_outputs("zeroshot", e, "zeroshot", split=SPLITS)
        for k in SPLITS:
            files += job_outputs("train_mvnet", e, "mvnet", split=k) + mv_feature_shards(e, k)
            files += [head_output(e, name, k, h) for h in HEADS for name in rules.train_head.output.keys()]
        files += job_outputs("report_split", e, split=SPLITS) + job_outputs("summary", e)
    if EXPERIMENTS[0].name:
        files += list(rules.compare_experiments.output)
    return sorted(set(files))


# Ctrl-C (SIGINT) seen by the main process, so that the run's last line says it was
# interrupted, not that a job failed; the signal then goes on as before (Snakemake stops).
INTERRUPTED = []
if workflow.is_main_process:
    _sigint = signal.getsignal(signal.SIGINT)

    def _note_sigint(signum, frame):
        INTERRUPTED.append(signum)
        if callable(_sigint):
            _sigint(signum, frame)
        elif _sigint == signal.SIG_DFL:
            raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread (the Python API's caller's)
        if _sigint != signal.SIG_IGN:
            signal.signal(signal.SIGINT, _note_sigint)

    def _not_after_sigint(record):
        """After Ctrl-C, Snakemake reports the jobs it stopped as failed ("Error in rule") and
        the run as a WorkflowError ("At least one job did not complete"): the run's last line
        says it was interrupted instead (each job's log keeps its own account)."""
        event = getattr(record, "event", None)
        stopped = event == LogEvent.JOB_ERROR or getattr(record, "exception", None) == "WorkflowError"
        return not (INTERRUPTED and stopped)

    logging.getLogger("snakemake.logging").addFilter(_not_after_sigint)

    def _short_file_lists(record, first=3):
        """A job's input and output lists on the console (and Snakemake's log) as their first
        few files and a count: a shard's videos or every shard's caches ran to 11,695
        characters on one line. The jobs' own logs and --summary still name every file."""
        for item in ("input", "output"):
            files = getattr(record, item, None)
            if isinstance(files, list) and len(files) > first + 1:
                setattr(record, item, [*files[:first], f"... {len(files) - first} more ({len(files)} files)"])
        return True

    logging.getLogger("snakemake.logging").addFilter(_short_file_lists)


def run_end(ok):
    """The run's last line: where the results are, or how to resume."""
    table = None  # a folder run's product is its features
    if LABELLED:
        last = rules.compare_experiments if EXPERIMENTS[0].name else rules.summary
        table = expand(last.output.md, exp="")[0]
    built = table is None or Path(table).exists()
    return plan.run_end_line(ok, sys.argv, RESULTS, table, built=built, interrupted=bool(INTERRUPTED))


def running_jobs():
    """The jobs this run is running now, as its console names them: rule (wildcards)."""
    out = []
    for job in list(workflow.scheduler.running):
        wildcards = getattr(job, "wildcards_dict", None) or {}
        named = ", ".join(f"{k}={v}" for k, v in wildcards.items() if v != "")
        out.append(f"{job.name} ({named})" if named else str(job.name))
    return sorted(out)
