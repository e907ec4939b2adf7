"""MV network: training samples/s, feature extraction videos/s, and the share of training time
spent waiting for data (the streaming loader reading segments from the caches). Goal: < 20% on
a CPU, < 10% on a GPU with EfficientNet-B0 at 224 px.

Usage: python benchmarks/bench_mv.py [--arch tiny] [--input-size 64] [--epochs 3] [--batch-size 32] [--workers 0 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from moclip.dataset.demo import DemoSpec, make_demo_dataset
from moclip.mv.data import MVItem, MVSettings
from moclip.mv.nets import MVNet
from moclip.mv.stream import extract_features
from moclip.mv.train import fit_mvnet
from moclip.runtime import resolve_device
from moclip.video.cache import cache_shard
from moclip.video.codec import DecodeSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="tiny")
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32, help="videos a step (config/ucf101.yaml: 80)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1], help="DataLoader workers to compare")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (mvnet.device)")
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
        data = [MVItem(p.stem, root / "mv" / f"{p.stem}.h5", classes.index(p.parent.name)) for p in videos]
        s = MVSettings(
            arch=a.arch, input_size=a.input_size, epochs=a.epochs, milestones=(a.epochs,), batch_size=a.batch_size
        )
        dev = resolve_device(a.device)
        torch.set_num_threads(2)
        print(f"## MV network '{a.arch}', input {a.input_size}px, {len(data)} videos, {s.segments} segments, {dev}")
        print("loader workers | training samples/s | waiting for data (goal < 20% CPU, < 10% GPU) | features videos/s")
        for workers in a.workers:
            t = time.perf_counter()
            result = fit_mvnet(data, [], len(classes), s, workers, device=str(dev))
            t_train = time.perf_counter() - t
            wait = sum(h["data_wait"] for h in result.history)
            samples = len(data) * s.segments * s.epochs
            model = MVNet(s.arch, len(classes)).to(dev)
            model.load_state_dict(result.state_dict)
            model.eval()
            t = time.perf_counter()
            extract_features(model, s, data, np.ones(len(data), bool), root / "features.h5", workers=workers)
            t_feat = time.perf_counter() - t
            share = 100 * wait / t_train
            print(f"{workers:14d} | {samples / t_train:18.1f} | {share:44.1f}% | {len(data) / t_feat:17.1f}")


if __name__ == "__main__":
    main()
