# Helpers shared by the stage files: where every output lives, the names a wildcard can
# take, the targets, and what identifies each rule's code. Module-level code here runs again
# in every cluster job: it stays cheap (no walk over the dataset but a folder's listing; the
# manifest is read only on demand; the code digests are a parse of the library's few modules).

import functools
import hashlib
import math
import os
import re
from pathlib import Path

import moclip
from moclip.demo import DOWNLOAD_NAMES, DemoSpec
from moclip.config import ConfigError, uses_registries, where_set
from moclip.videos import SPLITS as ALL_SPLITS
from moclip.datasets import count_videos, folder_videos
from moclip.datasets import list_files as dataset_list_files
from moclip.manifest import build_manifest, shard_count
from moclip.videos import ManifestError, read_manifest
from moclip.methods import HEADS
from moclip.prompts import PromptFileError, prompt_files, prompt_set
from moclip.provenance import code_digest as _code_digest
from moclip.runtime import local_gpu

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
LABELLED = FORMAT != "folder"  # a folder run extracts features only
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
        k: v if k == "lists" and FORMAT == "csv" else directory(v)
        for k, v in DEMO_DIRS.items()
    }


def _dataset_paths():
    """The videos' root and the lists (a folder, a CSV file, or None for a folder run): the
    user's, or the generated demo's."""
    if DEMO:
        return DEMO_DIRS["videos"], DEMO_DIRS.get("lists")
    videos, lists = config["dataset"]["videos"], config["dataset"]["lists"]
    if not os.path.isdir(videos):
        raise ValueError(f"config: dataset.videos={videos!r} is not a directory")
    if not LABELLED:
        return videos, None
    if lists is None:
        raise ValueError(
            f"config: dataset.lists is required with dataset.format: {FORMAT}"
        )
    kind, exists = (
        ("file", os.path.isfile) if FORMAT == "csv" else ("directory", os.path.isdir)
    )
    if not exists(lists):
        raise ValueError(f"config: dataset.lists={lists!r} is not a {kind}")
    return videos, lists


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


VIDEOS, LISTS = _dataset_paths()
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
    if uses_registries(config):
        from moclip.checks import check_models

        try:
            check_models(config, CONFIG_FILES)
        except ConfigError as e:
            raise WorkflowError(str(e)) from None


def _n_videos():
    """Videos the lists name, the folder holds, or the demo's spec makes, counted at parse time."""
    if DEMO:
        return DemoSpec.from_config(
            {**config["demo"], "seed": config["seed"]}
        ).n_videos()
    if not LABELLED:
        return len(FOLDER_VIDEOS)
    return count_videos(FORMAT, VIDEOS, LISTS, SPLITS)


N_VIDEOS = _n_videos()
# dataset.shards, or with auto about dataset.videos_per_shard videos a shard.
N_SHARDS = (
    config["dataset"]["shards"]
    if config["dataset"]["shards"] != "auto"
    else shard_count(N_VIDEOS, config["dataset"]["videos_per_shard"])
)
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


# What reencode_shard does, when it runs at all (REENCODING). With dataset.reencode,
# every video by that recipe (it wins over decode.reencode_unsupported); else, with
# decode.reencode_unsupported, only the videos whose decode exports no motion vectors
# (recipe None), probed over the decode.max_frames frames the cache reads.
REENCODE_RECIPE = (
    config["dataset"]["reencode"] if config["dataset"]["reencode"] != "none" else None
)
REENCODING = REENCODE_RECIPE is not None or config["decode"]["reencode_unsupported"]


def reencode_settings():
    """reencode_shard's recipe, and the frames it probes for vectors (0 = no probe)."""
    probe = config["decode"]["max_frames"] if REENCODE_RECIPE is None else 0
    return {"recipe": REENCODE_RECIPE, "probe_frames": probe}


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


def decode_settings():
    """Everything that shapes a cache: the fields of moclip.codec.DecodeSettings
    (decode.reencode_unsupported shapes the re-encode stage instead)."""
    return {
        **{k: v for k, v in config["decode"].items() if k != "reencode_unsupported"},
        "frame_count": config["frames"]["count"],
        "short_side": config["frames"]["short_side"],
    }


def mv_settings():
    """Fields of moclip.mv_stream.MVSettings: everything that shapes the MV network (not
    mvnet.device, a machine setting the scripts read)."""
    return {
        **{k: v for k, v in config["mvnet"].items() if k != "device"},
        "seed": config["seed"],
    }


MACHINE_SETTINGS = {
    "clip": ["device"],
    "mvnet": ["device"],
}  # read by the scripts, never params


def run_settings():
    """The settings a report records: every section that shapes the results, without the
    machine settings (a run moved to another device is the same run)."""
    keep = ("seed", "dataset", "decode", "frames", "clip", "mvnet", "heads")
    return {
        k: (
            {
                kk: vv
                for kk, vv in config[k].items()
                if kk not in MACHINE_SETTINGS.get(k, ())
            }
            if isinstance(config[k], dict)
            else config[k]
        )
        for k in keep
    }


def head_settings():
    """Fields of moclip.heads.HeadSettings."""
    return {k: v for k, v in config["heads"].items() if k != "seeds"}


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


def _safe(name):
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)


def _file_tag(path):
    """A local file's name in a directory tag: its stem and a digest of its absolute path,
    size and modification time (a changed file is a new tag)."""
    st = os.stat(path)
    key = f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}"
    return f"file-{Path(path).stem}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def _clip_tag():
    """Directory name of a CLIP model's embeddings: the architecture as built (a tag's
    weights trained with QuickGELU build it: ViT-B-32-quickgelu_openai), the weights and
    any resize but bicubic, so several models' embeddings coexist and switching back
    costs nothing. Only a pretrained tag needs open_clip's metadata (and so torch)."""
    c = config["clip"]
    model, pretrained = c["model"], c["pretrained"]
    if pretrained == "none":
        weights = f"random-seed{config['seed']}"
    elif os.path.isfile(pretrained):
        weights = _file_tag(pretrained)
    else:
        from moclip.clip_stream import built_name, tag_quick_gelu

        weights, model = pretrained, built_name(
            model, tag_quick_gelu(model, pretrained)
        )
    resize = "" if c["interpolation"] == "bicubic" else f"_{c['interpolation']}"
    return _safe(f"{model}_{weights}{resize}")


def _mv_tag():
    """Directory name of the MV network's outputs: its architecture and a digest of its
    settings; a folder run's given network: its file."""
    if not LABELLED:
        model = config["features"]["mv_model"]
        if model and not os.path.isfile(model):
            raise ValueError(f"config: features.mv_model={model!r} is not a file")
        return _safe(_file_tag(model)) if model else "none"
    digest = hashlib.sha256(repr(sorted(mv_settings().items())).encode()).hexdigest()
    return f"{_safe(config['mvnet']['arch'])}-{digest[:8]}"


CLIP_TAG = _clip_tag()
CLIP_RANDOM = config["clip"]["pretrained"] == "none"
MV_TAG = _mv_tag()
HEAD_ROOT = f"heads/{CLIP_TAG}/{MV_TAG}"

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
    """A head's features: CLIP shards, and the split's MV feature shards for fusion."""
    inputs = {"clip": CLIP_SHARDS}
    if wildcards.head == "fusion":
        inputs["mv"] = mv_feature_shards(wildcards.split)
    return inputs


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
    return expand(getattr(rules.train_head.output, name), split=split, head=head)[0]


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
# What a job asks of a cluster: mem_mb (sbatch --mem) and runtime (sbatch -t, minutes).
# Memory does not grow with the dataset (the caches are streamed; benchmarks/bench_scale.py
# measures every rule at 1,332 and 13,320 videos), so mem_mb is a measured peak with a
# margin. Time grows with a job's work (frames, images, samples, epochs) at the rates below,
# measured on this project's CPU cores (README, "Resources"); the GPU rates are assumptions
# until measured. Both double with each retry (--retries), so an estimate that falls short
# costs one resubmission, never the run.

RATES = {
    "cache_frames": 3700,  # frames decoded and cached a second, a thread (bench_scale: 2.46 M frames, 329 s x 2)
    # frames re-encoded a second by CoViAR's recipe, a thread: 1,000 from a 640x272 H.264 camera
    # clip, 1,800 from its 320x240 MPEG-4 re-encode, 2,250 from the demo's videos
    "reencode_frames": 1000,
    # ViT-B-32 images a second: a thread (bench_clip: 20 on 2 threads) / a GPU
    # images/s, gpu: the stage on an H200, bf16, 1-4 loader workers: 1,900-3,200 (benchmarks/gpu)
    "clip_images": {"cpu": 10, "gpu": 2000},
    "mv_samples": {  # MV network training segments a second: a thread (tiny at 64 px, timm at 224 px) / a GPU
        "tiny": 150,  # bench_mv: 388-395 with 2 threads (1 loader worker)
        "timm": 3.0,  # EfficientNet-B0, NHWC: bench_mv --arch efficientnet_b0 --input-size 224 --batch-size 80: 6.1 on 2
        "gpu": 1400,  # EfficientNet-B0 at 224 px, batch 80 x 3, bf16, 4 workers, H200: 1,418 (benchmarks/gpu)
    },
    "mv_feature_inputs_gpu": 11000,  # EfficientNet-B0 at 224 px, 25 x 10 views, H200: 11,500 (benchmarks/gpu)
    "head_samples": 6000,  # training samples x epochs a second, fusion MLP, one thread (bench_heads)
}
BYTES_A_FRAME = 2600  # UCF101's XviD: the fewest bytes a frame of the usual datasets, so the most frames a MB
TIME_MARGIN = 3


def _retry(value, attempt):
    return int(value * 2 ** (attempt - 1))


def memory_mb(mb, per_thread=0):
    """mem_mb: a measured peak in MB plus ``per_thread`` a thread (decode processes,
    loader workers), with half again as margin; doubled on each retry."""
    return lambda wildcards, threads, attempt: _retry(
        1.5 * (mb + per_thread * threads), attempt
    )


def minutes(seconds):
    """runtime in minutes: TIME_MARGIN x the job's work in seconds at the measured rates
    (a number, or a function of wildcards, input and threads), at least 10 minutes;
    doubled on each retry."""

    def estimate(wildcards, input, threads, attempt):
        work = seconds(wildcards, input, threads) if callable(seconds) else seconds
        return _retry(max(10, math.ceil(TIME_MARGIN * work / 60)), attempt)

    return estimate


def cache_seconds(wildcards, input, threads):
    """Decoding the shard's videos: their size in frames, estimated from their bytes."""
    frames = input.size_mb * 2**20 / BYTES_A_FRAME
    return frames / (RATES["cache_frames"] * threads)


def reencode_seconds(wildcards, input, threads):
    """Re-encoding the shard's videos: their frames, estimated from their bytes."""
    frames = input.size_mb * 2**20 / BYTES_A_FRAME
    return frames / (RATES["reencode_frames"] * threads)


# Videos a shard, from parse-time counts with a margin for the hash's imbalance: a resource
# function must not read the manifest (a checkpoint that may not have run yet).
VIDEOS_A_SHARD = math.ceil(1.2 * N_VIDEOS / N_SHARDS)


def clip_seconds(wildcards, input, threads):
    images = (N_VIDEOS if CLIP_BATCHED else VIDEOS_A_SHARD) * config["frames"]["count"]
    rate = RATES["clip_images"]
    return images / (rate["gpu"] if uses_gpu("clip") else rate["cpu"] * threads)


def mv_rate(threads):
    """MV network segments a second (training); inference is about 3x that."""
    m = config["mvnet"]
    rate = RATES["mv_samples"]
    if uses_gpu("mvnet"):
        return rate["gpu"] * min(1, (224 / m["input_size"]) ** 2)
    kind, ref = ("tiny", 64) if m["arch"] == "tiny" else ("timm", 224)
    return rate[kind] * threads * (ref / m["input_size"]) ** 2


def train_mvnet_mb():
    """train_mvnet's peak before its loader workers: on a GPU the process's host memory;
    on the CPU the tiny network's measured 1,100 MB plus a timm network's activations.
    """
    return GPU_HOST_MB if uses_gpu("mvnet") else 1100 + mvnet_activations_mb()


def mvnet_activations_mb():
    """What a timm MV network trained on the CPU adds to train_mvnet's peak: its
    activations, 85 MB an image at 224 px (EfficientNet-B0, batch 80 x 3 segments: 21.6 GB
    peak in bench_mv). The tiny network's are in its measured 1,100 MB; on a GPU they are
    GPU memory, not the job's."""
    m = config["mvnet"]
    if m["arch"] == "tiny" or uses_gpu("mvnet"):
        return 0
    return 85 * m["batch_size"] * m["segments"] * (m["input_size"] / 224) ** 2


# Host memory of a job that runs its network on a GPU (torch and CUDA's libraries; the
# activations are GPU memory), before its loader workers: 1,281-1,779 MB measured
# (ViT-B-32, EfficientNet-B0 at 224 px, benchmarks/gpu).
GPU_HOST_MB = 1800


def mv_features_mb():
    """mv_features' peak: on the CPU the network's forward over 192 inputs at a time
    (EfficientNet-B0 at 224 px: 3,341 MB measured; 14.8 MB an input beyond the 500 MB of
    the process and its model, scaled with the input's area); the tiny network's 800 MB,
    measured; on a GPU, the process's host memory."""
    m = config["mvnet"]
    if uses_gpu("mvnet"):
        return GPU_HOST_MB
    if m["arch"] == "tiny":
        return 800
    return 500 + 14.8 * 192 * (m["input_size"] / 224) ** 2


def eval_views():
    """MV network inputs a video at test and feature time: segments x crops."""
    return config["mvnet"]["eval_segments"] * config["mvnet"]["eval_crops"]


def train_mvnet_seconds(wildcards, input, threads):
    """Training and the selection on val (every video once an epoch, the training
    segments), then the test videos under the test protocol (fewer than all videos)."""
    m = config["mvnet"]
    train = m["epochs"] * N_VIDEOS * m["segments"] / mv_rate(threads)
    return train + N_VIDEOS * eval_views() / (3 * mv_rate(threads))


def mv_features_seconds(wildcards, input, threads):
    """A job's videos x networks x views, at the GPU's measured inference rate (scaled by
    the input area), or 3x the CPU's training rate."""
    if MV_BATCHED:
        scale = min(1, (224 / config["mvnet"]["input_size"]) ** 2)
        return N_VIDEOS * eval_views() / (RATES["mv_feature_inputs_gpu"] * scale)
    inputs = VIDEOS_A_SHARD * len(SPLITS if LABELLED else [1]) * eval_views()
    return inputs / (3 * mv_rate(threads))


def train_head_seconds(wildcards, input, threads):
    h = config["heads"]
    return len(h["seeds"]) * h["epochs"] * N_VIDEOS / RATES["head_samples"]
