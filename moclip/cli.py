"""The ``moclip`` command: the library's stages by hand, outside the workflow."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import h5py

from moclip.cache import cache_video
from moclip.codec import DecodeSettings
from moclip.demo import APPEARANCES, MOTIONS, DemoSpec, make_demo_dataset
from moclip.manifest import build_manifest, write_manifest


def _demo_data(a: argparse.Namespace) -> int:
    spec = DemoSpec(
        appearances=tuple(a.appearances),
        motions=tuple(a.motions),
        groups=a.groups,
        clips=a.clips,
        frames=a.frames,
        seed=a.seed,
    )
    out = Path(a.dir)
    make_demo_dataset(out / "UCF-101", out / "ucfTrainTestlist", spec, threads=a.threads)
    print(f"wrote {len(spec.classes())} classes to {out / 'UCF-101'} and split lists to {out / 'ucfTrainTestlist'}")
    return 0


def _manifest(a: argparse.Namespace) -> int:
    rows = build_manifest(a.videos, a.lists, a.splits, a.val_groups, a.shards, a.seed)
    write_manifest(rows, a.out)
    print(f"wrote {len(rows)} videos to {a.out}")
    return 0


def _cache(a: argparse.Namespace) -> int:
    settings = DecodeSettings(mv_cell=a.mv_cell, frame_count=a.frames, short_side=a.short_side, max_frames=a.max_frames)
    failed = 0
    for v in a.videos:
        vid = Path(v).stem
        rec = cache_video(v, vid, Path(a.out) / "mv" / f"{vid}.h5", Path(a.out) / "frames" / f"{vid}.h5", settings)
        print(f"{vid}\t{rec.status}\t{rec.n_frames}\t{rec.error}")
        failed += rec.status != "ok"
    return 1 if failed else 0


def _inspect(a: argparse.Namespace) -> int:
    with h5py.File(a.file, "r") as f:
        info = {
            "datasets": {k: {"shape": list(d.shape), "dtype": str(d.dtype)} for k, d in f.items()},
            "attrs": {k: v.item() if hasattr(v, "item") else v for k, v in f.attrs.items()},
        }
    print(json.dumps(info, indent=2, default=str))
    return 0


def _predict(a: argparse.Namespace) -> int:
    from moclip.predict import Predictor  # torch and open_clip: loaded only for predict

    predictor = Predictor(a.run, a.split)
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moclip", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo-data", help="write the synthetic demo dataset in UCF101's layout")
    d.add_argument("dir", help="output directory (gets UCF-101/ and ucfTrainTestlist/)")
    d.add_argument("--appearances", nargs="+", default=list(DemoSpec.appearances), choices=sorted(APPEARANCES))
    d.add_argument("--motions", nargs="+", default=list(DemoSpec.motions), choices=list(MOTIONS))
    d.add_argument("--groups", type=int, default=DemoSpec.groups)
    d.add_argument("--clips", type=int, default=DemoSpec.clips)
    d.add_argument("--frames", type=int, default=DemoSpec.frames)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--threads", type=int, default=1)
    d.set_defaults(func=_demo_data)

    m = sub.add_parser("manifest", help="parse UCF-101/ and ucfTrainTestlist/ into a manifest TSV")
    m.add_argument("--videos", required=True)
    m.add_argument("--lists", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--splits", type=int, nargs="+", default=[1, 2, 3])
    m.add_argument("--val-groups", type=int, default=1)
    m.add_argument("--shards", type=int, default=1)
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(func=_manifest)

    c = sub.add_parser("cache", help="decode videos into MV and frame caches (OUT/mv, OUT/frames)")
    c.add_argument("videos", nargs="+")
    c.add_argument("--out", required=True)
    c.add_argument("--mv-cell", type=int, default=8)
    c.add_argument("--frames", type=int, default=8)
    c.add_argument("--short-side", type=int, default=256)
    c.add_argument("--max-frames", type=int, default=10_000)
    c.set_defaults(func=_cache)

    pr = sub.add_parser("predict", help="classify videos with a finished run's models (fusion head)")
    pr.add_argument("videos", nargs="+")
    pr.add_argument("--run", default="results", help="the run's results directory")
    pr.add_argument("--split", type=int, default=1, help="whose models to use")
    pr.add_argument("--top", type=int, default=5)
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=_predict)

    i = sub.add_parser("inspect", help="print the datasets and attributes of a cache file")
    i.add_argument("file")
    i.set_defaults(func=_inspect)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:  # ManifestError is a ValueError
        print(f"moclip {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
