# Helpers shared by the stage files: where every output lives, the names a wildcard can
# take, the inputs and targets, and what identifies each rule's code. Module-level code here
# runs again in every cluster job: it stays cheap (no walk over the dataset but a folder's
# listing; the manifest is read only on demand; the code digests parse the library's modules).

import functools
import os
import sys
from pathlib import Path

import moclip
from moclip import plan
from moclip.checks import check_run
from moclip.config import ConfigError
from moclip.datasets import FORMATS, folder_videos
from moclip.demo import DOWNLOAD_NAMES
from moclip.experiments import (
    DEVICE_SECTIONS,
    STAGE_DIRS,
    by_root,
    describe,
    experiment_wildcards,
    experiments,
    own_jobs,
)
from moclip.methods import HEADS, head_inputs
from moclip.prompts import prompt_files
from moclip.provenance import code_digest as _code_digest
from moclip.resources import Workloads, memory_mb, minutes
from moclip.runtime import local_gpu
from moclip.videos import SPLITS as ALL_SPLITS
from moclip.videos import shard_rows

# --------------------------------------------------------------------------- paths

RESULTS = config["results"].rstrip("/")


def results(path):
    """Every output lives under the results root."""
    return f"{RESULTS}/{path}"


def logs(path):
    return results(f"logs/{path}")


def benchmarks(path):
    return results(f"benchmarks/{path}")


# --------------------------------------------------------------------------- the dataset

FORMAT = config["dataset"]["format"]
LABELLED = plan.labelled(config)  # a folder run extracts features only
DEMO = config["dataset"]["videos"] is None
# The generated demo, in the configured format's layout, named as the dataset's downloads.
DEMO_DIRS = {k: results(f"demo/{name}") for k, name in zip(("videos", "lists"), DOWNLOAD_NAMES[FORMAT]) if name}


def demo_outputs():
    """Rule demo_data's outputs: the videos' folder, and the lists' folder or CSV file."""
    return {k: v if k == "lists" and FORMATS[FORMAT].lists == "file" else directory(v) for k, v in DEMO_DIRS.items()}


VIDEOS, LISTS = plan.dataset_paths(config, DEMO_DIRS)
CLASSES = config["dataset"]["classes"]
SPLITS = config["dataset"]["splits"]
# A folder run's videos, listed once at parse time: the count sizes the shards, and a
# digest of the list reruns the manifest when a video is added or removed.
FOLDER_VIDEOS = [] if DEMO or LABELLED else folder_videos(VIDEOS)
# The run's experiments (moclip.experiments): each a whole config, and where each stage's
# outputs live; a run without the key is one experiment, every output at the top level.
EXPERIMENTS = experiments(config, EXPERIMENT_CONFIGS)
BY_ROOT = by_root(EXPERIMENTS)  # an output root ({exp} wildcard) -> its experiment
# Once, before any job (cluster jobs parse this file again and skip it): the dataset's
# entries, the prompts, and with real models the registries and the weights' files.
if workflow.is_main_process:
    try:
        check_run(config, CONFIG_FILES, VIDEOS, LISTS, FOLDER_VIDEOS)
        for e in EXPERIMENTS[1:] if EXPERIMENTS[0].name == "" else EXPERIMENTS:
            check_run(e.config, CONFIG_FILES, VIDEOS, LISTS, dataset=False)
    except ConfigError as e:
        raise WorkflowError(str(e)) from None
    for line in describe(EXPERIMENTS):
        print(f"moclip: {line}", file=sys.stderr)


# Counted at parse time: the shards are known before the manifest checkpoint runs.
N_VIDEOS = plan.n_videos(config, VIDEOS, LISTS, FOLDER_VIDEOS)
N_SHARDS = plan.n_shards(config, N_VIDEOS)
SHARD_DIGITS = 5  # shard-00000 ...: the wildcard constraint here, the shard list below
SHARDS = [f"{s:0{SHARD_DIGITS}d}" for s in range(N_SHARDS)]


def experiment(wildcards):
    """The experiment whose outputs a job writes (its ``exp`` wildcard, an output root)."""
    return BY_ROOT[wildcards.exp]


def setting(fn, *args):
    """A param: ``fn`` (a moclip.plan function) of the job's experiment's config."""
    return lambda wildcards: fn(experiment(wildcards).config, *args)


# --------------------------------------------------------------------------- what a wildcard can take

WILDCARDS = {
    "shard": rf"\d{{{SHARD_DIGITS}}}",
    "split": "|".join(str(k) for k in ALL_SPLITS),
    "head": "|".join(HEADS),
    **experiment_wildcards(EXPERIMENTS),  # roots, tags and heads' inputs
}

# --------------------------------------------------------------------------- code and devices


@functools.cache
def code_digest(rule):
    """Digest of the library modules that rule ``rule``'s script reaches through its imports
    (Snakemake tracks the script itself, not the library): a code change reruns exactly the
    rules whose scripts reach the changed module. Each rule runs workflow_scripts/<rule>.py.
    """
    script = Path(workflow.basedir, "workflow_scripts", f"{rule}.py")
    return _code_digest(script, Path(moclip.__file__).parent)


# A card on this machine, and the jobs run here (device: auto; moclip.plan.on_gpu).
LOCAL_GPU = local_gpu() and workflow.local_exec and not workflow.remote_exec


def on_gpu(section):
    return plan.on_gpu(config, section, LOCAL_GPU)


def uses_gpu(section):
    """The ``gpu`` resource of a rule that runs the stage of ``config[section]``."""
    return int(on_gpu(section))


# A GPU job's start-up (Python, torch, the CUDA context, the model: 10.6-14.8 s for
# ViT-B-32 and EfficientNet-B0 on an H200, benchmarks/gpu) is ~15x the GPU work of one
# CLIP shard, so on a GPU one job takes every shard (one a network for mv_features);
# on the CPU one job a shard spreads over the cores. Outputs stay one file a shard.
CLIP_BATCHED = on_gpu("clip")
MV_BATCHED = on_gpu("mvnet")
GPU_THREADS = 5  # 4 loader workers: data wait 66% -> 7% (MV training), CLIP 1,900 -> 3,200 images/s

# Each job's mem_mb and runtime from measured peaks and rates (moclip.resources), for the
# experiment's config (device settings, and so the batching, are the run's).
WORK = Workloads({root: e.config for root, e in BY_ROOT.items()}, N_VIDEOS, N_SHARDS, CLIP_BATCHED, MV_BATCHED)


# --------------------------------------------------------------------------- inputs


def manifest_inputs(wildcards):
    """The manifest's inputs: the videos' root and the lists. A real dataset's timestamps
    never trigger reruns (the list files' contents and a folder's listing do); the demo is
    regenerated by the workflow, so its times count."""
    if DEMO:
        return dict(DEMO_DIRS)
    return {"videos": ancient(VIDEOS), "list_files": plan.list_files(config, LISTS)}


def shard_videos(wildcards):
    """A shard's video files (after the manifest checkpoint has run). A real dataset's
    timestamps never trigger reruns; a change of the set of videos does. The demo is
    regenerated by the workflow, so its times count."""
    rows = shard_rows(checkpoints.manifest.get().output.tsv, int(wildcards.shard))
    paths = [os.path.join(VIDEOS, r.path) for r in rows]
    return paths if DEMO else [ancient(p) for p in paths]


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
CLIP_JOB = "all-shards" if CLIP_BATCHED else "shard-{shard}"  # a clip_embed job's name
# clip_embed's outputs: every shard's file in one GPU job, or the job's shard's
CLIP_JOB_OUTPUTS = expand(CLIP_SHARD, shard=SHARDS, allow_missing=True) if CLIP_BATCHED else [CLIP_SHARD]


def clip_shards(e):
    return expand(CLIP_SHARD, exp=e.roots["clip"], clip=e.clip_tag, shard=SHARDS)


def clip_embed_inputs(wildcards):
    """A clip_embed job's shards' frame caches and indexes."""
    shards = SHARDS if CLIP_BATCHED else [wildcards.shard]
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
NETWORKS = SPLITS if LABELLED else [None]
if not MV_BATCHED:
    MV_JOB = "shard-{shard}"
    MV_JOB_OUTPUTS = [mv_features_path(k, "{shard}") for k in NETWORKS]
else:
    MV_JOB = "split{split}" if LABELLED else "all-shards"
    MV_JOB_OUTPUTS = [mv_features_path("{split}", s) for s in SHARDS]


def mv_features_inputs(wildcards):
    """A mv_features job's networks, and its shards' MV caches and indexes."""
    e = experiment(wildcards)
    models = [ancient(config["features"]["mv_model"])]  # a folder run's given network
    if LABELLED:
        models = [mvnet_file(e, "model", k) for k in ([wildcards.split] if MV_BATCHED else SPLITS)]
    shards = SHARDS if MV_BATCHED else [wildcards.shard]
    inputs = {"models": models, **cache_files(e, shards, "mv", "index")}
    if LABELLED and e.config["heads"]["mv_draws"]:  # the videos each network trained on
        inputs["manifest"] = rules.manifest.output.tsv
    return inputs


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
        "mv_training": mvnet_file(e, "training", k),
        "clip_shard": clip_shards(e)[0],
        "mv_model": mvnet_file(e, "model", k),
        "fusion_model": head_output(e, "model", k, "fusion"),
        "fusion_predictions": head_output(e, "predictions", k, "fusion"),
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


# --------------------------------------------------------------------------- targets


def cache_targets():
    """Every cache of the experiments, through the failed videos' lists."""
    return sorted({f for e in EXPERIMENTS for f in output_of("cache_failures", "out", e, "cache")})


def feature_targets():
    """Every shard's CLIP embeddings and MV features, and the failed videos' list."""
    e = EXPERIMENTS[0]
    mv = []
    if LABELLED or config["features"]["mv_model"]:
        mv = [f for k in NETWORKS for f in mv_feature_shards(e, k)]
    return [*cache_targets(), *clip_shards(e), *mv]


def final_targets():
    """The default targets: each experiment's reports and summary (through them every
    stage) and the experiments' comparison; a folder run (no labels): the features."""
    if not LABELLED:
        return feature_targets()
    files = []
    for e in EXPERIMENTS:
        files += [*output_of("summary", "json", e), *output_of("summary", "md", e)]
        files += output_of("report_split", "metrics", e, split=SPLITS)
    if EXPERIMENTS[0].name:
        files += [
            rules.compare_experiments.output.json,
            rules.compare_experiments.output.md,
        ]
    return files


def run_end(ok):
    """The run's last line: where the results are, or how to resume."""
    table = None  # a folder run's product is its features
    if LABELLED:
        last = rules.compare_experiments if EXPERIMENTS[0].name else rules.summary
        table = expand(last.output.md, exp="")[0]
    return plan.run_end_line(ok, sys.argv, RESULTS, table, built=table is None or Path(table).exists())
