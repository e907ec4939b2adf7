# Helpers shared by the stage files: where every output lives, the names a wildcard can
# take, the targets, and what identifies each rule's code. Module-level code here runs again
# in every cluster job: it stays cheap (no walk over the dataset but a folder's listing; the
# manifest is read only on demand; the code digests are a parse of the library's few modules).

import functools
import os
import re
from pathlib import Path

import moclip
from moclip import plan
from moclip.config import ConfigError, uses_registries, where_set
from moclip.datasets import FORMATS, folder_videos
from moclip.datasets import list_files as dataset_list_files
from moclip.demo import DOWNLOAD_NAMES
from moclip.manifest import build_manifest
from moclip.methods import HEADS, head_inputs
from moclip.prompts import PromptFileError, prompt_files, prompt_set
from moclip.provenance import code_digest as _code_digest
from moclip.resources import Workload, memory_mb, minutes
from moclip.runtime import local_gpu
from moclip.videos import SPLITS as ALL_SPLITS
from moclip.videos import ManifestError, read_manifest

# --------------------------------------------------------------------------- paths

RESULTS = config["results"].rstrip("/")


def results(path):
    """Every output lives under the results root."""
    return f"{RESULTS}/{path}"


def logs(path):
    return results(f"logs/{path}")


def benchmarks(path):
    return results(f"benchmarks/{path}")


# --------------------------------------------------------------------------- what a wildcard can take

SPLITS = config["dataset"]["splits"]
SHARD_DIGITS = 5  # shard-00000 ...: the wildcard constraint here, the shard list below
WILDCARDS = {
    "shard": rf"\d{{{SHARD_DIGITS}}}",
    "split": "|".join(str(k) for k in ALL_SPLITS),
    "head": "|".join(HEADS),
}

# --------------------------------------------------------------------------- the dataset

FORMAT = config["dataset"]["format"]
LABELLED = plan.labelled(config)  # a folder run extracts features only
DEMO = config["dataset"]["videos"] is None
# The generated demo, in the configured format's layout, named as the dataset's downloads.
DEMO_DIRS = {
    k: results(f"demo/{name}")
    for k, name in zip(("videos", "lists"), DOWNLOAD_NAMES[FORMAT])
    if name
}


def demo_outputs():
    """Rule demo_data's outputs: the videos' folder, and the lists' folder or CSV file."""
    return {
        k: v if k == "lists" and FORMATS[FORMAT].lists == "file" else directory(v)
        for k, v in DEMO_DIRS.items()
    }


def check_listed_videos():
    """Every list entry parsed as the manifest stage will parse it: a missing video, an
    unknown class or a bad name stops the run before any job, naming list file and line.
    A folder has no entries to check: its listing (FOLDER_VIDEOS, walked once) must not be empty.
    """
    if not LABELLED:
        if not FOLDER_VIDEOS:
            raise WorkflowError(f"{VIDEOS}: no video files (dataset.format: folder)")
        return
    try:
        build_manifest(VIDEOS, LISTS, SPLITS, format=FORMAT, classes=CLASSES)
    except ManifestError as e:
        raise WorkflowError(str(e)) from None


VIDEOS, LISTS = plan.dataset_paths(config, DEMO_DIRS)
CLASSES = config["dataset"]["classes"]
# A folder run's videos, listed once at parse time: the count sizes the shards, and a
# digest of the list reruns the manifest when a video is added or removed.
FOLDER_VIDEOS = [] if DEMO or LABELLED else folder_videos(VIDEOS)
# Once, before any job: cluster jobs parse this file again and skip it. The registries
# need torch, open_clip and timm: imported here only, and only for real models.
if workflow.is_main_process:
    if not DEMO:
        check_listed_videos()
    try:
        prompt_set(config["clip"]["prompts"], config["clip"]["templates"])
    except PromptFileError as e:
        where = where_set(["clip", "prompts"], CONFIG_FILES)
        raise WorkflowError(f"{where}clip.prompts: {e}") from None
    if uses_registries(
        config
    ):  # the names, then whether the tags' weights are here or reachable
        from moclip.checks import check_models, check_weights

        try:
            check_models(config, CONFIG_FILES)
            check_weights(config, CONFIG_FILES)
        except ConfigError as e:
            raise WorkflowError(str(e)) from None


# Counted at parse time: the shards are known before the manifest checkpoint runs.
N_VIDEOS = plan.n_videos(config, VIDEOS, LISTS, FOLDER_VIDEOS)
N_SHARDS = plan.n_shards(config, N_VIDEOS)
SHARDS = [f"{s:0{SHARD_DIGITS}d}" for s in range(N_SHARDS)]


def list_files():
    """The files the manifest reads besides the videos (real datasets only): split lists,
    the CSV table, the class-order file."""
    return [str(f) for f in dataset_list_files(FORMAT, LISTS, SPLITS)] + (
        [CLASSES] if CLASSES else []
    )


def manifest_inputs(wildcards):
    """The manifest's inputs: the videos' root and the lists. A real dataset's timestamps
    never trigger reruns (the list files' contents and a folder's listing do); the demo is
    regenerated by the workflow, so its times count."""
    if DEMO:
        return dict(DEMO_DIRS)
    return {"videos": ancient(VIDEOS), "list_files": list_files()}


@functools.cache
def _shards_of(path, mtime_ns):
    shards = {}
    for row in read_manifest(path):
        shards.setdefault(row.shard, []).append(row)
    return shards


def _shard_rows(wildcards):
    path = checkpoints.manifest.get().output.tsv
    return _shards_of(path, os.stat(path).st_mtime_ns).get(int(wildcards.shard), [])


def shard_videos(wildcards):
    """A shard's video files (after the manifest checkpoint has run). A real dataset's
    timestamps never trigger reruns; a change of the set of videos does. The demo is
    regenerated by the workflow, so its times count."""
    paths = [os.path.join(VIDEOS, r.path) for r in _shard_rows(wildcards)]
    return paths if DEMO else [ancient(p) for p in paths]


REENCODING = plan.reencoding(config)


def cache_inputs(wildcards):
    """cache_shard's inputs: the shard's videos (the index names them), the manifest (their
    ids; its time never triggers a rerun) and, when videos are re-encoded, reencode_shard's
    directory (the files it decodes) and index."""
    inputs = {
        "videos": shard_videos(wildcards),
        "manifest": ancient(rules.manifest.output.tsv),
    }
    if REENCODING:
        out = rules.reencode_shard.output
        inputs["reencoded"] = expand(out.out, shard=wildcards.shard)[0]
        inputs["reencode_index"] = expand(out.index, shard=wildcards.shard)[0]
    return inputs


# --------------------------------------------------------------------------- code and settings


@functools.cache
def code_digest(rule):
    """Digest of the library modules that rule ``rule``'s script reaches through its imports
    (Snakemake tracks the script itself, not the library): a code change reruns exactly the
    rules whose scripts reach the changed module. Each rule runs workflow_scripts/<rule>.py.
    """
    script = Path(workflow.basedir, "workflow_scripts", f"{rule}.py")
    return _code_digest(script, Path(moclip.__file__).parent)


LOCAL_GPU = local_gpu()


def on_gpu(section):
    """Whether the stage set by ``config[section]["device"]`` runs on a GPU: ``cuda`` (any
    card) always; ``auto`` when its jobs run on this machine and it has a card. With a
    cluster executor ``auto`` cannot know the nodes (and each job, parsing again on its
    node, must plan the same DAG): the CPU; set ``cuda`` for the cluster's GPUs."""
    device = config[section]["device"]
    if device == "auto":
        return LOCAL_GPU and workflow.local_exec and not workflow.remote_exec
    return device != "cpu"


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


CLIP_TAG = plan.clip_tag(config)
CLIP_RANDOM = config["clip"]["pretrained"] == "none"
MV_TAG = plan.mv_tag(config)
# Each head under the tags of the streams it reads (moclip.methods.head_inputs).
HEAD_INPUTS = {head: head_inputs(head, CLIP_TAG, MV_TAG) for head in HEADS}
WILDCARDS["inputs"] = "|".join(re.escape(v) for v in sorted(set(HEAD_INPUTS.values())))

# --------------------------------------------------------------------------- inputs and targets


def all_shards(path):
    """``path`` (a rule's output with a ``{shard}`` wildcard) for every shard."""
    return expand(path, shard=SHARDS, allow_missing=True)


def clip_shard_path(shard):
    return results(f"embeddings/clip/{CLIP_TAG}/shard-{shard}.h5")


CLIP_SHARDS = [clip_shard_path(s) for s in SHARDS]
CLIP_JOB = "all-shards" if CLIP_BATCHED else "shard-{shard}"  # a clip_embed job's name
# clip_embed's outputs: every shard's file in one GPU job, or the job's shard's
CLIP_JOB_OUTPUTS = CLIP_SHARDS if CLIP_BATCHED else [clip_shard_path("{shard}")]


def cache_inputs_of(shards, *keys):
    """Outputs ``keys`` of rule cache_shard (frames, mv, index) for ``shards``, by key."""
    out = rules.cache_shard.output
    return {key: expand(getattr(out, key), shard=shards) for key in keys}


def clip_embed_inputs(wildcards):
    """A clip_embed job's shards' frame caches and indexes."""
    return cache_inputs_of(
        SHARDS if CLIP_BATCHED else [wildcards.shard], "frames", "index"
    )


def head_feature_inputs(wildcards):
    """A head's features: the shards of the streams it reads (CLIP's, the split's MV)."""
    shards = {
        "clip": lambda: CLIP_SHARDS,
        "mv": lambda: mv_feature_shards(wildcards.split),
    }
    return {s: shards[s]() for s in HEADS[wildcards.head].streams}


def mv_feature_shards(split):
    return all_shards(mv_features_path(split, "{shard}"))


def mv_features_path(split, shard):
    return results(f"embeddings/mv/{MV_TAG}/split{split}/shard-{shard}.h5")


def mv_feature_models():
    """The MV networks whose features mv_features writes: each split's, or a folder run's given one."""
    if LABELLED:
        return expand(rules.train_mvnet.output.model, split=SPLITS)
    return [ancient(config["features"]["mv_model"])]


def mv_feature_outputs(shard):
    """One shard's MV feature files, one a network of mv_feature_models()."""
    if LABELLED:
        return [mv_features_path(k, shard) for k in SPLITS]
    return [results(f"embeddings/mv/{MV_TAG}/shard-{shard}.h5")]


# A mv_features job's name and outputs, network-major: on the CPU one shard under every
# network; on a GPU every shard under one network (a split's, or a folder run's given one).
if not MV_BATCHED:
    MV_JOB = "shard-{shard}"
    MV_JOB_OUTPUTS = mv_feature_outputs("{shard}")
elif LABELLED:
    MV_JOB = "split{split}"
    MV_JOB_OUTPUTS = [mv_features_path("{split}", s) for s in SHARDS]
else:
    MV_JOB = "all-shards"
    MV_JOB_OUTPUTS = [f for s in SHARDS for f in mv_feature_outputs(s)]


def mv_features_inputs(wildcards):
    """A mv_features job's networks, and its shards' MV caches and indexes."""
    models = mv_feature_models()
    if MV_BATCHED and LABELLED:
        models = expand(rules.train_mvnet.output.model, split=wildcards.split)
    shards = SHARDS if MV_BATCHED else [wildcards.shard]
    inputs = {"models": models, **cache_inputs_of(shards, "mv", "index")}
    if LABELLED and config["heads"]["mv_draws"]:  # which videos each network trained on
        inputs["manifest"] = rules.manifest.output.tsv
    return inputs


def feature_targets():
    """Every shard's CLIP embeddings and MV features, and the failed videos' list."""
    mv = []
    if LABELLED or config["features"]["mv_model"]:
        mv = [f for s in SHARDS for f in mv_feature_outputs(s)]
    return [rules.cache_failures.output.out, *CLIP_SHARDS, *mv]


def split_method_metrics(wildcards):
    """Every method's metrics.json of one split (zero-shot only with pretrained CLIP)."""
    k = wildcards.split
    files = {"mv_only": expand(rules.train_mvnet.output.metrics, split=k)[0]}
    files.update((head, head_output("metrics", k, head)) for head in HEADS)
    if not CLIP_RANDOM:
        files["zeroshot"] = expand(rules.zeroshot.output.metrics, split=k)[0]
    return files


def head_output(name, split, head):
    """One output of rule train_head."""
    out = getattr(rules.train_head.output, name)
    return expand(out, inputs=HEAD_INPUTS[head], split=split, head=head)[0]


def head_files(name, split):
    """Output ``name`` of every head of a split, as named inputs ``<head>_<name>``."""
    return {f"{head}_{name}": head_output(name, split, head) for head in HEADS}


def final_targets():
    """The default targets: the reports, and through them every stage; a folder run (no
    labels): the features."""
    if not LABELLED:
        return feature_targets()
    return [rules.summary.output.json, rules.summary.output.md] + expand(
        rules.report_split.output.metrics, split=SPLITS
    )


# --------------------------------------------------------------------------- resources
# Each job's mem_mb and runtime, from measured peaks and rates (moclip.resources).

WORK = Workload(config, N_VIDEOS, N_SHARDS, clip_gpu=CLIP_BATCHED, mv_gpu=MV_BATCHED)
