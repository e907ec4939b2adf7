"""The ``moclip`` command: the library's stages by hand, outside the workflow."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
from pathlib import Path

import h5py

from moclip import __version__
from moclip.dataset.demo import APPEARANCES, MOTIONS, DemoSpec, make_demo_dataset
from moclip.dataset.formats import FORMATS
from moclip.dataset.manifest import build_manifest
from moclip.dataset.videos import SPLITS, write_manifest
from moclip.features import LAYOUTS, READERS, export_npy, export_table, load_features
from moclip.io import BrokenFileError, snakemake_program
from moclip.methods import PRODUCT
from moclip.runtime import PRECISIONS
from moclip.settings import WORKFLOW_DEFAULTS, WORKFLOW_SCHEMA, bound, default, workflow_defaults
from moclip.video.cache import ENCODINGS, FrameStorage, cache_video
from moclip.video.codec import DecodeSettings
from moclip.workflow.checks import check_experiments
from moclip.workflow.config import check_config, load_config
from moclip.workflow.experiments import describe, experiment_configs, experiments
from moclip.workflow.layout import Layout

SEED = workflow_defaults()["seed"]  # every default below is the workflow's (config.yaml, the settings classes)


@contextlib.contextmanager
def _in_flags(prefix: str):
    """Re-raise a library ValueError naming the command's flags instead of the config keys
    (``demo.groups`` -> ``--groups``): the user typed flags, not a config."""
    try:
        yield
    except ValueError as e:
        key = re.compile(rf"\b{re.escape(prefix)}\.([a-z_]+)")
        raise ValueError(key.sub(lambda m: "--" + m.group(1).replace("_", "-"), str(e))) from None


def _demo_data(a: argparse.Namespace) -> int:
    spec = DemoSpec(
        appearances=tuple(a.appearances),
        motions=tuple(a.motions),
        groups=a.groups,
        clips=a.clips,
        frames=a.frames,
        seed=a.seed,
    )
    videos, lists = (Path(a.dir) / n if n else None for n in FORMATS[a.format].names)
    with _in_flags("demo"):
        make_demo_dataset(videos, lists, spec, threads=a.threads, format=a.format)
    labels = f" and split lists to {lists}" if lists else " (no labels)"
    print(f"wrote {len(spec.classes())} classes to {videos}{labels}")
    return 0


def _demo_long(a: argparse.Namespace) -> int:
    from moclip.dataset.untrimmed import make_untrimmed_videos

    videos = make_untrimmed_videos(a.dir, a.videos, a.seconds, a.actions, seed=a.seed)
    print(
        f"wrote {len(videos)} untrimmed videos of {a.seconds:g} s to {a.dir} (actions: {a.dir.rstrip('/')}-actions.csv)"
    )
    return 0


def _manifest(a: argparse.Namespace) -> int:
    with _in_flags("dataset"):
        rows = build_manifest(
            a.videos, a.lists, a.splits, a.val_groups, a.shards, a.seed, a.format, a.classes, a.videos_per_shard
        )
    write_manifest(rows, a.out)
    print(f"wrote {len(rows)} videos to {a.out}")
    return 0


def decode_settings(a: argparse.Namespace) -> DecodeSettings:
    """``moclip cache``'s flags as the settings of a cache."""
    return DecodeSettings(mv_cell=a.mv_cell, frame_count=a.frames, short_side=a.short_side, max_frames=a.max_frames)


def _cache(a: argparse.Namespace) -> int:
    settings = decode_settings(a)
    storage = FrameStorage(a.frame_encoding, a.jpeg_quality)
    failed = 0
    for v in a.videos:
        vid = Path(v).stem
        out = Path(a.out)
        rec = cache_video(v, vid, out / "mv" / f"{vid}.h5", out / "frames" / f"{vid}.h5", settings, storage=storage)
        print(f"{vid}\t{rec.status}\t{rec.n_frames}\t{rec.error}")
        failed += rec.status != "ok"
    return 1 if failed else 0


def _check_config(a: argparse.Namespace) -> int:
    files = [Path(a.defaults), *map(Path, a.files)]
    config = load_config(files)
    check_config(config, a.schema, files)
    runs = experiments(config, experiment_configs(config, a.schema, files))
    check_experiments(config, runs, files, Layout(config, sources=tuple(files)))  # the workflow's parse-time checks
    print(f"ok: {', '.join(a.files)} merged over {a.defaults}: a valid configuration")
    for line in describe(runs):  # what each experiment shares and adds
        print(line)
    return 0


def _inspect(a: argparse.Namespace) -> int:
    if not Path(a.file).exists():
        print(f"moclip inspect: error: {a.file}: no such file", file=sys.stderr)
        return 2
    try:
        f = h5py.File(a.file, "r")
    except (OSError, ValueError) as e:
        print(f"moclip inspect: error: {a.file}: not a readable HDF5 file ({type(e).__name__})", file=sys.stderr)
        return 2
    with f:
        datasets = {}
        f.visititems(lambda name, d: datasets.update({name: d}) if isinstance(d, h5py.Dataset) else None)
        shapes = {
            k: {"shape": list(d.shape), "dtype": str(d.dtype), "bytes": d.id.get_storage_size()}
            for k, d in datasets.items()
        }
        attrs = {k: v.item() if hasattr(v, "item") and getattr(v, "size", 1) == 1 else v for k, v in f.attrs.items()}
    if a.json:  # as before: the datasets' shapes and dtypes (in a group: by their path), the attributes
        info = {"datasets": {k: {"shape": v["shape"], "dtype": v["dtype"]} for k, v in shapes.items()}, "attrs": attrs}
        print(json.dumps(info, indent=2, default=str))
        return 0
    for line in _described(a.file, shapes, attrs):
        print(line)
    return 0


def _described(path: str, datasets: dict[str, dict], attrs: dict) -> list[str]:
    """``moclip inspect`` for a person: a heading, then aligned columns of the datasets
    (shape, dtype, bytes stored) and the attributes (long values cut: --json has them whole)."""
    out = [f"{path}: {len(datasets)} datasets, {len(attrs)} attributes"]
    if datasets:
        out.append("datasets:")
        width = max(map(len, datasets))
        dims = {k: " x ".join(map(str, v["shape"])) or "scalar" for k, v in datasets.items()}
        dim_width = max(map(len, dims.values()))
        for k, v in datasets.items():
            out.append(f"  {k:<{width}}  {dims[k]:<{dim_width}}  {v['dtype']:<8}  {_size(v['bytes'])} stored")
    if attrs:
        out.append("attributes:")
        width = max(map(len, attrs))
        for k, v in attrs.items():
            text = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
            shown = '""' if text == "" else (text.splitlines() or [""])[0][:80]
            cut = f" ... ({len(text)} characters; --json shows it all)" if shown not in ('""', text) else ""
            out.append(f"  {k:<{width}}  {shown}{cut}")
    return out


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def _predict(a: argparse.Namespace) -> int:
    from moclip.predict import Predictor  # torch and open_clip: loaded only for predict

    predictor = Predictor(a.run, a.split, a.device, a.precision)
    results, failed = [], 0
    if not a.json:  # a header naming the columns; each top-k cell reads "class probability"
        print("\t".join(["video", *(f"top {k}" for k in range(1, min(a.top, len(predictor.classes)) + 1))]))
    for v in a.videos:
        r = predictor(v, a.top)
        results.append(r)
        failed += bool(r.error)
        if not a.json:
            if r.error:
                print(f"{v}: error: {r.error}", file=sys.stderr)
            else:
                print(f"{v}\t" + "\t".join(f"{c} {p:.3f}" for c, p in r.classes))
    if a.json:
        print(
            json.dumps(
                [
                    {
                        "video": r.video,
                        "error": r.error or None,
                        "top": [{"class": c, "probability": p} for c, p in r.classes],
                    }
                    for r in results
                ],
                indent=2,
            )
        )
    return 1 if failed else 0


def _verify(a: argparse.Namespace) -> int:
    from moclip.verify import clear, table, verify  # torch: loaded only to check the checkpoints

    if not Path(a.results).is_dir():
        raise FileNotFoundError(f"{a.results}: not a directory (a run's results)")
    start = time.perf_counter()
    checks = verify(a.results, threads=a.threads)
    took = time.perf_counter() - start
    print(f"{a.results}: {len(checks.checked)} files checked in {took:.1f} s, {len(checks.broken)} broken")
    if (Path(a.results) / "experiments").is_dir():  # said, not skipped in silence
        print(
            f"not checked: {Path(a.results) / 'experiments'}/ (the experiments' own outputs; the run's, "
            "at the top level, are checked above)"
        )
    if not checks.broken:
        return 0
    print("\n".join(table(checks)))
    if not a.clear:
        print(
            f"to rebuild them and what depends on them: moclip verify --clear {a.results}, then {snakemake_program()}"
        )
        return 1
    deleted = clear(checks)
    print("".join(f"deleted {p}\n" for p in deleted), end="")
    print(f"deleted {len(deleted)} outputs: the next {snakemake_program()} rebuilds them, and only them")
    return 0


def _export(a: argparse.Namespace) -> int:
    if a.tag is not None and len(a.stream) > 1:
        raise ValueError("--tag names one stream's configuration: export one --stream with it")
    feats = [load_features(a.results, s, a.split, a.experiment, tag=a.tag) for s in a.stream]
    if a.layout == "npy":
        written = export_npy(feats, a.out, pooled=a.pooled)
    else:
        written = export_table(feats, a.out)
    videos = len({v for f in feats for v in f.ids})
    print(f"wrote {len(written)} files ({', '.join(a.stream)} of {videos} videos) to {a.out}")
    for f in feats:
        if f.failed:
            print(f"{f.stream}: {len(f.failed)} videos without features (failed): {', '.join(f.failed)}")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _setting(key: str):
    """A flag's type for the numeric setting ``key``: its range (and ``auto`` where it takes
    that) as the workflow's schema states it (:func:`moclip.settings.bound`)."""
    rule = bound(key)

    def parse(text: str) -> int | str:
        value = text if rule.auto and text == "auto" else int(text)
        if problem := rule.problem(value):
            raise argparse.ArgumentTypeError(problem.split(": ", 1)[1] + f", got {text}")
        return value

    parse.__name__ = key  # argparse names the type in its message for a value int() refuses
    return parse


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(prog="moclip", description=__doc__.replace("``", ""), formatter_class=fmt)
    p.add_argument("--version", action="version", version=f"moclip {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser(
        "demo-data", help="write the synthetic demo dataset in UCF101's (or another) layout", formatter_class=fmt
    )
    layouts = "; ".join(
        f"{f}: {v}/" + (f" and {n}" if n else "") for f, (v, n) in ((f, fmt.names) for f, fmt in FORMATS.items())
    )
    d.add_argument("dir", help=f"output directory (gets, by format, {layouts})")
    d.add_argument(
        "--appearances",
        nargs="+",
        default=list(DemoSpec.appearances),
        choices=sorted(APPEARANCES),
        help="object appearances (each a class family)",
    )
    d.add_argument(
        "--motions",
        nargs="+",
        default=list(DemoSpec.motions),
        choices=list(MOTIONS),
        help="motion patterns (each a class family)",
    )
    d.add_argument(
        "--groups", type=_setting("demo.groups"), default=DemoSpec.groups, help="groups a class (UCF101: 25)"
    )
    d.add_argument("--clips", type=_setting("demo.clips"), default=DemoSpec.clips, help="clips a group")
    d.add_argument("--frames", type=_setting("demo.frames"), default=DemoSpec.frames, help="frames a clip (25 fps)")
    d.add_argument("--seed", type=int, default=SEED, help="fixes every random choice")
    d.add_argument("--threads", type=_positive, default=1, help="clips rendered in parallel")
    d.add_argument(
        "--format",
        default=default("dataset", "format"),
        choices=list(FORMATS),
        help="layout: UCF101's, HMDB51's, one CSV of labels and splits, or bare folders without labels",
    )
    d.set_defaults(func=_demo_data)

    lg = sub.add_parser(
        "demo-long",
        help="write long untrimmed synthetic videos with actions at known times (a folder dataset, for dense:)",
        formatter_class=fmt,
    )
    lg.add_argument("dir", help="output folder of the videos (the actions' table is written beside it)")
    lg.add_argument("--videos", type=_positive, default=3, help="videos (every third at a variable frame rate)")
    lg.add_argument("--seconds", type=float, default=120, help="length of each video")
    lg.add_argument("--actions", type=_positive, default=4, help="actions a video")
    lg.add_argument("--seed", type=int, default=0, help="fixes every random choice")
    lg.set_defaults(func=_demo_long)

    m = sub.add_parser("manifest", help="read a dataset's listing into a manifest TSV", formatter_class=fmt)
    m.add_argument(
        "--format", default=default("dataset", "format"), choices=FORMATS, help="how the dataset lists its videos"
    )
    m.add_argument("--videos", required=True, help="the videos' root, e.g. UCF-101/")
    m.add_argument("--lists", help="the split lists: a directory (ucf101, hmdb51) or the CSV file; none for folder")
    m.add_argument("--classes", help="csv: a file of class names, one a line, for the label order")
    m.add_argument("--out", required=True, help="the manifest TSV to write")
    m.add_argument(
        "--splits",
        type=int,
        nargs="+",
        default=list(default("dataset", "splits")),
        choices=SPLITS,
        help="splits to build",
    )
    m.add_argument(
        "--val-groups",
        type=_setting("dataset.val_groups"),
        default=default("dataset", "val_groups"),
        help="whole training groups held out for validation: a number, or auto (the format's rule)",
    )
    m.add_argument(
        "--shards",
        type=_setting("dataset.shards"),
        default=default("dataset", "shards"),
        help="work units (a video's is a hash of its id): a number, or auto (as the workflow: about "
        "--videos-per-shard videos a shard, counted from the lists)",
    )
    m.add_argument(
        "--videos-per-shard",
        type=_setting("dataset.videos_per_shard"),
        default=default("dataset", "videos_per_shard"),
        help="with --shards auto",
    )
    m.add_argument("--seed", type=int, default=SEED, help="fixes the validation groups")
    m.set_defaults(func=_manifest)

    c = sub.add_parser("cache", help="decode videos into MV and frame caches (OUT/mv, OUT/frames)", formatter_class=fmt)
    c.add_argument("videos", nargs="+", help="video files; one that fails gets a line naming it, the rest go on")
    c.add_argument("--out", required=True, help="output directory")
    c.add_argument(
        "--mv-cell",
        type=_setting("decode.mv_cell"),
        default=DecodeSettings.mv_cell,
        help="pixels a motion-vector grid cell",
    )
    c.add_argument(
        "--frames", type=_setting("frames.count"), default=DecodeSettings.frame_count, help="RGB frames kept a video"
    )
    c.add_argument(
        "--short-side",
        type=_setting("frames.short_side"),
        default=DecodeSettings.short_side,
        help="shorter side of the kept frames, at most",
    )
    c.add_argument(
        "--max-frames",
        type=_setting("decode.max_frames"),
        default=DecodeSettings.max_frames,
        help="longer videos are read up to this",
    )
    c.add_argument("--frame-encoding", choices=ENCODINGS, default=FrameStorage.encoding, help="how frames are stored")
    c.add_argument(
        "--jpeg-quality", type=_setting("frames.jpeg_quality"), default=FrameStorage.jpeg_quality, help="JPEG frames"
    )
    c.set_defaults(func=_cache)

    pr = sub.add_parser(
        "predict",
        help=f"classify videos with a finished run's models ({PRODUCT} head, first seed)",
        formatter_class=fmt,
    )
    pr.add_argument("videos", nargs="+", help="video files; one that fails gets a line naming it, the rest go on")
    pr.add_argument("--run", default="results", help="the run's results directory")
    pr.add_argument("--split", type=int, default=SPLITS[0], choices=SPLITS, help="whose models to use")
    pr.add_argument("--top", type=_positive, default=5, help="classes printed a video")
    pr.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (a GPU when there is one)")
    pr.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="the networks' arithmetic (default: the run's; auto = mixed precision on a GPU, float32 on a CPU)",
    )
    pr.add_argument("--json", action="store_true", help="one JSON record a video (with 'error' where it failed)")
    pr.set_defaults(func=_predict)

    # The workflow's config.yaml and schema: links to a clone's files, copies in an installed package.
    k = sub.add_parser(
        "check-config",
        help="check workflow config files as the workflow will (YAML errors with file and line, unknown keys "
        "and model names with the nearest valid one), without Snakemake",
        formatter_class=fmt,
    )
    k.add_argument("files", nargs="+", help="config files, merged in order over the defaults")
    k.add_argument("--defaults", default=str(WORKFLOW_DEFAULTS), help="the workflow's defaults (its config.yaml)")
    k.add_argument("--schema", default=str(WORKFLOW_SCHEMA), help="the workflow's schema")
    k.set_defaults(func=_check_config)

    v = sub.add_parser(
        "verify",
        help="check every output of a run against its indexes and print what is broken; --clear deletes it so "
        "that the next snakemake rebuilds exactly that and what depends on it",
        formatter_class=fmt,
    )
    v.add_argument("results", nargs="?", default="results", help="the run's results directory")
    v.add_argument("--clear", action="store_true", help="delete the broken files and the outputs that go with them")
    v.add_argument("--threads", type=_positive, default=1, help="processes that read the caches")
    v.set_defaults(func=_verify)

    x = sub.add_parser(
        "export",
        help="write a run's features as files other code reads: one .npy a video and stream with video_features' "
        "names (npy), or one .npz table a stream of video, time, label, vector (table)",
        formatter_class=fmt,
    )
    x.add_argument("results", nargs="?", default="results", help="the run's results directory")
    x.add_argument("--out", required=True, help="the folder to write")
    x.add_argument("--stream", nargs="+", default=["clip"], choices=sorted(READERS), help="the streams to export")
    x.add_argument("--split", type=int, choices=SPLITS, help="that split's videos (mv: its network's features)")
    x.add_argument("--experiment", help="an experiment's features, as its reports name them")
    x.add_argument("--tag", help="which configuration's, where the results hold several (default: the reports')")
    x.add_argument("--layout", choices=LAYOUTS, default="npy", help="<video>_<stream>.npy files, or <stream>.npz")
    x.add_argument("--pooled", action="store_true", help="npy: a video's pooled vector [D], not its frames [K, D]")
    x.set_defaults(func=_export)

    i = sub.add_parser("inspect", help="print the datasets and attributes of a cache file", formatter_class=fmt)
    i.add_argument("file", help="an MV or frame cache (.h5), or any HDF5 file of a run")
    i.add_argument("--json", action="store_true", help="one JSON object: datasets (shape, dtype) and attrs")
    i.set_defaults(func=_inspect)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, BrokenFileError, NotImplementedError) as e:  # ManifestError: a ValueError
        print(f"moclip {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `moclip predict ... | head`: the reader has gone, as a shell tool exits
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 141


if __name__ == "__main__":
    sys.exit(main())
