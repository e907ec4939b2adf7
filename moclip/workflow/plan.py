"""What a validated config asks of each stage, as pure functions of it: the settings (the
params that shape its outputs) and the tags that name output directories. rules/common.smk
keeps Snakemake's glue (paths, wildcards, inputs, targets, the checkpoint) and calls these
(and moclip.workflow.layout, the dataset and the jobs); they are tested without Snakemake.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
from pathlib import Path

from moclip.dataset.formats import FORMATS
from moclip.io import snakemake_program
from moclip.methods import shapes

MACHINE_SETTINGS = {"clip": ("device",), "mvnet": ("device",)}  # read by the scripts, never params
ZEROSHOT_SETTINGS = ("prompts", "templates", "prompt_norm")  # clip keys that shape zero-shot only
RUN_SECTIONS = ("seed", "dataset", "decode", "frames", "clip", "mvnet", "heads")  # what shapes the results


def labelled(config: dict) -> bool:
    """Whether the run trains and tests (a folder run extracts features only)."""
    return FORMATS[config["dataset"]["format"]].labelled


# --------------------------------------------------------------------------- each stage's settings


def reencode_recipe(config: dict) -> str | None:
    """dataset.reencode's recipe, or None."""
    return config["dataset"]["reencode"] if config["dataset"]["reencode"] != "none" else None


def reencoding(config: dict) -> bool:
    """Whether reencode_shard runs at all: every video by a recipe (dataset.reencode wins),
    or only those whose decode exports no motion vectors (decode.reencode_unsupported)."""
    return reencode_recipe(config) is not None or config["decode"]["reencode_unsupported"]


def reencode_settings(config: dict) -> dict:
    """reencode_shard's recipe, and the frames it probes for vectors (0 = no probe): without
    a recipe, the decode.max_frames frames the cache reads."""
    recipe = reencode_recipe(config)
    return {"recipe": recipe, "probe_frames": config["decode"]["max_frames"] if recipe is None else 0}


def decode_settings(config: dict) -> dict:
    """Everything that shapes a cache: the fields of moclip.video.codec.DecodeSettings
    (decode.reencode_unsupported shapes the re-encode stage instead)."""
    return {
        **{k: v for k, v in config["decode"].items() if k != "reencode_unsupported"},
        "frame_count": config["frames"]["count"],
        "short_side": config["frames"]["short_side"],
    }


def frame_storage(config: dict) -> dict:
    """Fields of moclip.video.cache.FrameStorage: how the frame caches store the frames
    (frames.jpeg_quality only with JPEG, so that it reruns nothing with raw frames)."""
    f = config["frames"]
    return {"encoding": f["encoding"], **({"jpeg_quality": f["jpeg_quality"]} if f["encoding"] == "jpeg" else {})}


def mv_settings(config: dict) -> dict:
    """Fields of moclip.mv.data.MVSettings: everything that shapes the MV network (not
    mvnet.device, a machine setting the scripts read)."""
    return {**{k: v for k, v in config["mvnet"].items() if k not in MACHINE_SETTINGS["mvnet"]}, "seed": config["seed"]}


def clip_settings(config: dict) -> dict:
    """Fields of moclip.clip.stream.ClipSettings: what shapes the CLIP embeddings (not the
    zero-shot prompts, nor clip.device, a machine setting the scripts read)."""
    other = (*MACHINE_SETTINGS["clip"], *ZEROSHOT_SETTINGS)
    return {**{k: v for k, v in config["clip"].items() if k not in other}, "seed": config["seed"]}


def zeroshot_settings(config: dict) -> dict:
    """The settings of moclip.clip.zeroshot.zeroshot (rule zeroshot): the model as clip_embed
    builds it, the prompts, the seed and the threads (not clip.device, a machine setting)."""
    c = config["clip"]
    model = {k: c[k] for k in ("model", "pretrained", "quick_gelu", "cpu_threads")}
    return {**model, **{k: c[k] for k in ZEROSHOT_SETTINGS}, "seed": config["seed"]}


def dense_on(config: dict) -> bool:
    """Whether the run computes dense per-window features (dense.every_s set)."""
    return config["dense"]["every_s"] is not None


def dense_settings(config: dict) -> dict:
    """Fields of moclip.dense.DenseSettings: the windows, and the grid and frame size the
    caches use (so that the windows' inputs are the CLIP and MV stages' own)."""
    d = config["dense"]
    return {
        "every_s": d["every_s"],
        "window_s": d["window_s"],
        "mv_cell": config["decode"]["mv_cell"],
        "short_side": config["frames"]["short_side"],
    }


def dense_network(config: dict) -> int | str | None:
    """The dense stage's MV network: a split's number (that split's trained network) or a
    checkpoint file; dense.mvnet null: the first split's (a folder run: features.mv_model)."""
    m = config["dense"]["mvnet"]
    if m is not None:
        return m
    return config["dataset"]["splits"][0] if labelled(config) else config["features"]["mv_model"]


def head_settings(config: dict, head: str | None = None) -> dict:
    """Fields of moclip.heads.HeadSettings; for one ``head``, only those that shape it (a
    change to the fusion MLP's width or to the MV draws retrains no CLIP probe)."""
    return {k: v for k, v in config["heads"].items() if k != "seeds" and (head is None or shapes(head, k))}


def run_settings(config: dict) -> dict:
    """The settings a report records: every section that shapes the results, without the
    machine settings (a run moved to another device is the same run)."""
    return {
        k: (
            {kk: vv for kk, vv in config[k].items() if kk not in MACHINE_SETTINGS.get(k, ())}
            if isinstance(config[k], dict)
            else config[k]
        )
        for k in RUN_SECTIONS
    }


# --------------------------------------------------------------------------- directory tags


def safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)


def file_tag(path: str) -> str:
    """A local file's name in a directory tag: its stem and a digest of its absolute path,
    size and modification time (a changed file is a new tag)."""
    st = os.stat(path)
    key = f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}"
    return f"file-{Path(path).stem}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def clip_tag(config: dict) -> str:
    """Directory name of a CLIP model's embeddings: the architecture as built (a tag's
    weights trained with QuickGELU build it: ViT-B-32-quickgelu_openai), the weights and
    any resize but bicubic, so several models' embeddings coexist and switching back
    costs nothing. Only a pretrained tag needs open_clip's metadata (and so torch)."""
    c = config["clip"]
    model, pretrained = c["model"], c["pretrained"]
    if pretrained == "none":
        weights = f"random-seed{config['seed']}"
    elif os.path.isfile(pretrained):
        weights = file_tag(pretrained)
    else:
        weights = pretrained
    if pretrained != "none" or c.get("quick_gelu"):
        from moclip.clip.stream import built_name, tag_quick_gelu

        model = built_name(model, tag_quick_gelu(model, pretrained, c.get("quick_gelu")))
    resize = "" if c["interpolation"] == "bicubic" else f"_{c['interpolation']}"
    return safe(f"{model}_{weights}{resize}")


def mv_tag(config: dict) -> str:
    """Directory name of the MV network's outputs: its architecture and a digest of its
    settings; a folder run's given network: its file."""
    if not labelled(config):
        model = config["features"]["mv_model"]
        if model and not os.path.isfile(model):
            raise ValueError(f"config: features.mv_model={model!r} is not a file")
        return safe(file_tag(model)) if model else "none"
    digest = hashlib.sha256(repr(sorted(mv_settings(config).items())).encode()).hexdigest()
    return f"{safe(config['mvnet']['arch'])}-{digest[:8]}"


# --------------------------------------------------------------------------- the end of a run


# Options that redo finished work: a resume without them runs only the jobs left (and --report
# writes the report instead of running). --until, --omit-from and targets still bound the run.
ONE_SHOT = ("--report", "--forceall", "-F", "--forcerun", "-R", "--force", "-f")
FLAGS = ("--forceall", "-F", "--force", "-f")  # Snakemake's options among them that take no value


def again(argv: list[str], *extra: str, drop: tuple[str, ...] = ("--report",)) -> str:
    """The snakemake command ``argv`` again with ``extra`` arguments, without the options in
    ``drop`` (and their values; a flag's next word is a target, kept): the config arguments
    kept, so the command sees the same run."""
    args, keep = [], True
    for a in argv[1:]:
        if a.startswith("-"):
            name = a.split("=")[0]
            keep = name not in drop
            if name in FLAGS and not keep:
                keep = True  # the words after a flag are not its values
                continue
        if keep:
            args.append(a)
    return " ".join([snakemake_program(argv[0]), shlex.join([*args, *extra])]).strip()


def run_end_line(
    ok: bool, argv: list[str], results: str, table: str | None, built: bool = True, interrupted: bool = False
) -> str:
    """The run's last line: the table of results (``table``: the summary or the experiments'
    comparison; None for a folder run, whose product is its features; ``built``: False when
    the run's targets stopped short of it) and how to build the report, or how to resume
    (``interrupted``: by Ctrl-C, else a job failed)."""
    if not ok:
        how = "was interrupted" if interrupted else "stopped: a job failed (see above)"
        return f"moclip: the run {how}. Finished jobs are kept; to resume: {again(argv, drop=ONE_SHOT)}"
    if table is None:
        return f"moclip: done. Features: {results}/embeddings/; videos that failed: {results}/cache/failures.tsv"
    report = again(argv, "--report", "report.html", drop=("--report", "--cores", "-c", "--jobs", "-j"))
    if not built:
        return f"moclip: done, up to the targets asked for (a run without targets writes {table}); the report: {report}"
    return f"moclip: done. The table: {table} (and .html); the report: {report}"
