"""MV network: training samples/s, feature extraction videos/s, and the share of training time
spent waiting for data (building segment batches from the in-memory caches). Goal: < 20%.

Usage: python benchmarks/bench_mv.py [--arch tiny] [--input-size 64] [--epochs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from moclip.cache import cache_shard
from moclip.codec import DecodeSettings
from moclip.demo import DemoSpec, make_demo_dataset
from moclip.mv_stream import MVNet, MVSettings, extract_features, fit_mvnet, load_video_mv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="tiny")
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = DemoSpec(groups=6, clips=2, frames=60)
        make_demo_dataset(root / "UCF-101", root / "lists", spec, threads=2)
        videos = sorted((root / "UCF-101").rglob("*.avi"))
        cache_shard(
            videos=videos,
            videos_root=root,
            settings=DecodeSettings(),
            compression="lz4",
            mv=root / "mv",
            frames=root / "fr",
            index=root / "index.tsv",
            threads=2,
        )
        classes = spec.classes()
        data = [load_video_mv(root / "mv" / f"{p.stem}.h5", p.stem, classes.index(p.parent.name)) for p in videos]
        s = MVSettings(arch=a.arch, input_size=a.input_size, epochs=a.epochs, milestones=(a.epochs,))
        torch.set_num_threads(2)
        t = time.perf_counter()
        result = fit_mvnet(data, [], len(classes), s)
        t_train = time.perf_counter() - t
        wait = sum(h["data_wait"] for h in result.history)
        samples = len(data) * s.segments * s.epochs
        model = MVNet(s.arch, len(classes))
        model.load_state_dict(result.state_dict)
        model.eval()
        t = time.perf_counter()
        extract_features(
            model, s, [root / "mv" / f"{p.stem}.h5" for p in videos], [p.stem for p in videos], root / "features.h5"
        )
        t_feat = time.perf_counter() - t
        print(f"## MV network '{a.arch}', input {a.input_size}px, {len(data)} videos, {s.segments} segments, CPU")
        print(f"training                 {samples / t_train:8.1f} samples/s   ({a.epochs} epochs)")
        print(f"waiting for data         {100 * wait / t_train:8.1f} %          (goal < 20%)")
        print(f"feature extraction       {len(data) / t_feat:8.1f} videos/s (reading the caches included)")


if __name__ == "__main__":
    main()
