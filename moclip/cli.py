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
from moclip.cache import ENCODINGS, FrameStorage, cache_video
from moclip.checks import check_experiments
from moclip.codec import DecodeSettings
from moclip.config import check_config, load_config
from moclip.datasets import FORMATS
from moclip.demo import APPEARANCES, DOWNLOAD_NAMES, MOTIONS, DemoSpec, make_demo_dataset
from moclip.experiments import describe, experiment_configs, experiments
from moclip.io import BrokenFileError, snakemake_program
from moclip.layout import Layout
from moclip.manifest import build_manifest
from moclip.videos import write_manifest


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
    videos, lists = (Path(a.dir) / n if n else None for n in DOWNLOAD_NAMES[a.format])
    with _in_flags("demo"):
        make_demo_dataset(videos, lists, spec, threads=a.threads, format=a.format)
    labels = f" and split lists to {lists}" if lists else " (no labels)"
    print(f"wrote {len(spec.classes())} classes to {videos}{labels}")
    return 0


def _demo_long(a: argparse.Namespace) -> int:
    from moclip.untrimmed import make_untrimmed_videos

    videos = make_untrimmed_videos(a.dir, a.videos, a.seconds, a.actions, seed=a.seed)
    print(
        f"wrote {len(videos)} untrimmed videos of {a.seconds:g} s to {a.dir} (actions: {a.dir.rstrip('/')}-actions.csv)"
    )
    return 0


def _manifest(a: argparse.Namespace) -> int:
    with _in_flags("dataset"):
        rows = build_manifest(a.videos, a.lists, a.splits, a.val_groups, a.shards, a.seed, a.format, a.classes)
    write_manifest(rows, a.out)
    print(f"wrote {len(rows)} videos to {a.out}")
    return 0


def _cache(a: argparse.Namespace) -> int:
    settings = DecodeSettings(mv_cell=a.mv_cell, frame_count=a.frames, short_side=a.short_side, max_frames=a.max_frames)
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
        info = {
            "datasets": {k: {"shape": list(d.shape), "dtype": str(d.dtype)} for k, d in f.items()},
            "attrs": {k: v.item() if hasattr(v, "item") else v for k, v in f.attrs.items()},
        }
    print(json.dumps(info, indent=2, default=str))
    return 0


def _predict(a: argparse.Namespace) -> int:
    from moclip.predict import Predictor  # torch and open_clip: loaded only for predict

    predictor = Predictor(a.run, a.split, a.device, a.precision)
    results, failed = [], 0
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
            f"not checked: {Path(a.results) / 'experiments'}/ (each experiment's own outputs; the ones "
            "the experiments share, at the top, are checked above)"
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


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _val_groups(text: str) -> int | str:
    if text == "auto":
        return text
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be auto or 0 or more, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(prog="moclip", description=__doc__.replace("``", ""), formatter_class=fmt)
    p.add_argument("--version", action="version", version=f"moclip {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser(
        "demo-data", help="write the synthetic demo dataset in UCF101's (or another) layout", formatter_class=fmt
    )
    layouts = "; ".join(f"{f}: {v}/" + (f" and {n}" if n else "") for f, (v, n) in DOWNLOAD_NAMES.items())
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
    d.add_argument("--groups", type=_positive, default=DemoSpec.groups, help="groups a class (UCF101: 25)")
    d.add_argument("--clips", type=_positive, default=DemoSpec.clips, help="clips a group")
    d.add_argument("--frames", type=_positive, default=DemoSpec.frames, help="frames a clip (25 fps)")
    d.add_argument("--seed", type=int, default=0, help="fixes every random choice")
    d.add_argument("--threads", type=_positive, default=1, help="clips rendered in parallel")
    d.add_argument(
        "--format",
        default="ucf101",
        choices=list(DOWNLOAD_NAMES),
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
    m.add_argument("--format", default="ucf101", choices=FORMATS, help="how the dataset lists its videos")
    m.add_argument("--videos", required=True, help="the videos' root, e.g. UCF-101/")
    m.add_argument("--lists", help="the split lists: a directory (ucf101, hmdb51) or the CSV file; none for folder")
    m.add_argument("--classes", help="csv: a file of class names, one a line, for the label order")
    m.add_argument("--out", required=True, help="the manifest TSV to write")
    m.add_argument("--splits", type=int, nargs="+", default=[1, 2, 3], choices=[1, 2, 3], help="splits to build")
    m.add_argument(
        "--val-groups",
        type=_val_groups,
        default="auto",
        help="whole training groups held out for validation: a number, or auto (the format's rule)",
    )
    m.add_argument("--shards", type=_positive, default=1, help="work units (a video's is a hash of its id)")
    m.add_argument("--seed", type=int, default=0, help="fixes the validation groups")
    m.set_defaults(func=_manifest)

    c = sub.add_parser("cache", help="decode videos into MV and frame caches (OUT/mv, OUT/frames)", formatter_class=fmt)
    c.add_argument("videos", nargs="+", help="video files; one that fails gets a line naming it, the rest go on")
    c.add_argument("--out", required=True, help="output directory")
    c.add_argument("--mv-cell", type=_positive, default=8, help="pixels a motion-vector grid cell")
    c.add_argument("--frames", type=_positive, default=8, help="RGB frames kept a video")
    c.add_argument("--short-side", type=_positive, default=256, help="shorter side of the kept frames, at most")
    c.add_argument("--max-frames", type=_positive, default=10_000, help="longer videos are read up to this")
    c.add_argument("--frame-encoding", choices=ENCODINGS, default=FrameStorage.encoding, help="how frames are stored")
    c.add_argument("--jpeg-quality", type=_positive, default=FrameStorage.jpeg_quality, help="1-100, JPEG frames")
    c.set_defaults(func=_cache)

    pr = sub.add_parser(
        "predict", help="classify videos with a finished run's models (fusion head, first seed)", formatter_class=fmt
    )
    pr.add_argument("videos", nargs="+", help="video files; one that fails gets a line naming it, the rest go on")
    pr.add_argument("--run", default="results", help="the run's results directory")
    pr.add_argument("--split", type=int, default=1, choices=[1, 2, 3], help="whose models to use")
    pr.add_argument("--top", type=_positive, default=5, help="classes printed a video")
    pr.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (a GPU when there is one)")
    pr.add_argument(
        "--precision",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="the networks' arithmetic (default: the run's; auto = mixed precision on a GPU, float32 on a CPU)",
    )
    pr.add_argument("--json", action="store_true", help="one JSON record a video (with 'error' where it failed)")
    pr.set_defaults(func=_predict)

    # The workflow's config.yaml and schema: links to a clone's files, copies in an installed package.
    data = Path(__file__).resolve().parent / "data"
    k = sub.add_parser(
        "check-config",
        help="check workflow config files as the workflow will (YAML errors with file and line, unknown keys "
        "and model names with the nearest valid one), without Snakemake",
        formatter_class=fmt,
    )
    k.add_argument("files", nargs="+", help="config files, merged in order over the defaults")
    k.add_argument("--defaults", default=str(data / "config.yaml"), help="the workflow's defaults (its config.yaml)")
    k.add_argument("--schema", default=str(data / "config.schema.yaml"), help="the workflow's schema")
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

    i = sub.add_parser("inspect", help="print the datasets and attributes of a cache file", formatter_class=fmt)
    i.add_argument("file", help="an MV or frame cache (.h5)")
    i.set_defaults(func=_inspect)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, BrokenFileError) as e:  # ManifestError is a ValueError
        print(f"moclip {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `moclip predict ... | head`: the reader has gone, as a shell tool exits
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 141


if __name__ == "__main__":
    sys.exit(main())
