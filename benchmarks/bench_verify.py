"""`moclip verify` on a UCF101-sized run: 13,320 videos in 52 shards, laid out as the workflow
writes them, without running it.

The manifest is built from placeholder videos in UCF101's layout (``bench_dag.py``'s). Each
video gets real MV and frame caches: one cache pair made by ``moclip.video.cache.cache_video`` from
a 320x240 clip of 186 frames (UCF101's mean) is copied and given the video's id, so every file
has a cache's structure; the frames are kept at 64 px on the shorter side to spare 24 GB of
disk (verify reads a cache's metadata, not its frames). Shard indexes, failures.tsv, CLIP
shards of ViT-B-32's size ([N, 8, 512] float16) and MV feature shards of the UCF101 recipe's
EfficientNet-B0 ([N, 8, 1280] float32, three splits) complete it. Then verify runs on it
twice with 1 and with 2 processes with every file just written (in the page cache), and
again with its files evicted from the page cache before each run (read from the disk).
Models and reports are a few dozen files whatever the dataset: only the check of one
EfficientNet-B0 checkpoint (the recipe's MV network, 101 classes) is timed.

Usage: python benchmarks/bench_verify.py [--shards 52] [--root DIR] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from bench_dag import make_placeholder_ucf101

from moclip.dataset.demo import smooth_noise
from moclip.dataset.manifest import manifest
from moclip.dataset.videos import read_manifest
from moclip.mv.data import MVSettings
from moclip.mv.nets import MVNet
from moclip.mv.train import TrainResult, save_checkpoint
from moclip.outputs import shard_name
from moclip.shards import write_shard
from moclip.verify import Checks, mv_checkpoint, verify
from moclip.video.cache import CacheRecord, cache_failures, cache_video, video_file, write_index
from moclip.video.codec import DecodeSettings
from moclip.video.encode import encode_video


def template_caches(root: Path) -> tuple[Path, Path, int]:
    """One real MV and frame cache pair of a 186-frame 320x240 MPEG-4 clip (a textured square
    moving 1 px a frame over a textured background), frames kept at 64 px."""
    rng = np.random.default_rng(0)
    background = (smooth_noise(rng, 240, 320, 16) * 80 + 60).astype(np.uint8)
    square = (smooth_noise(rng, 64, 64, 8) * 255).astype(np.uint8)

    def frames():
        for i in range(186):
            img = background.copy()
            img[88:152, 20 + i : 84 + i] = square
            yield img

    root.mkdir(parents=True, exist_ok=True)
    encode_video(root / "clip.avi", frames(), codec="mpeg4", bit_rate=2_000_000)
    rec = cache_video(root / "clip.avi", "template", root / "mv.h5", root / "frames.h5", DecodeSettings(short_side=64))
    assert rec.status == "ok", rec.error
    return root / "mv.h5", root / "frames.h5", rec.n_frames


def build(results: Path, videos: Path, lists: Path, shards: int, rng: np.random.Generator) -> int:
    """The run's files in ``results``; the number of files written."""
    manifest(
        videos=videos,
        lists=lists,
        format="ucf101",
        classes=None,
        splits=[1, 2, 3],
        val_groups=3,
        shards=shards,
        seed=0,
        out=results / "manifest.tsv",
        summary=results / "dataset.json",
    )
    rows = read_manifest(results / "manifest.tsv")
    mv_template, frames_template, n_frames = template_caches(results.parent / "template")
    cache, files = results / "cache", 2
    for n in range(shards):
        ids = [r.video_id for r in rows if r.shard == n]
        for kind, template in (("mv", mv_template), ("frames", frames_template)):
            folder = cache / kind / shard_name(n)
            folder.mkdir(parents=True, exist_ok=True)
            for i in ids:
                shutil.copyfile(template, video_file(folder, i))
                with h5py.File(video_file(folder, i), "r+") as f:
                    f.attrs["video_id"] = i
        write_index(
            [CacheRecord(i, f"{i}.avi", "ok", n_frames, "") for i in ids], cache / "index" / f"{shard_name(n)}.tsv"
        )
        valid = np.ones(len(ids), bool)
        write_shard(
            results / "embeddings" / "clip" / "ViT-B-32_openai" / f"{shard_name(n)}.h5",
            ids,
            rng.standard_normal((len(ids), 8, 512)).astype(np.float16),
            valid,
        )
        for k in (1, 2, 3):
            write_shard(
                results / "embeddings" / "mv" / "efficientnet_b0-bench" / f"split{k}" / f"{shard_name(n)}.h5",
                ids,
                rng.standard_normal((len(ids), 8, 1280)).astype(np.float32),
                valid,
            )
        files += 2 * len(ids) + 1 + 4
    indexes = sorted((cache / "index").glob("*.tsv"))
    cache_failures(indexes=indexes, out=cache / "failures.tsv", reencoded=cache / "reencoded.tsv")
    return files + 2


def evict(root: Path) -> None:
    """Drop every file under ``root`` from the page cache (``posix_fadvise``: these files
    only, not the machine's cache), so that verify reads them from the disk."""
    for p in root.rglob("*"):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)


def checkpoint_seconds(root: Path) -> float:
    """Seconds to check one EfficientNet-B0 MV checkpoint (zip CRC-32s, load), best of 3."""
    path = root / "effb0.pt"
    net = MVNet("efficientnet_b0", 101)
    save_checkpoint(path, TrainResult(net.state_dict(), 0, []), MVSettings(arch="efficientnet_b0"), 101, 1)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        Checks().read(path, mv_checkpoint)
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=int, default=52)
    ap.add_argument("--root", help="where to build (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the built run")
    a = ap.parse_args()
    root = Path(a.root or tempfile.mkdtemp(prefix="bench-verify-"))
    try:
        t = time.perf_counter()
        videos, lists = make_placeholder_ucf101(root / "data")
        results = root / "run" / "results"
        files = build(results, videos, lists, a.shards, np.random.default_rng(0))
        size = sum(p.stat().st_size for p in results.rglob("*") if p.is_file()) / 2**30
        print(f"# built {files:,} files ({size:.1f} GB) in {time.perf_counter() - t:.0f} s")
        for evicted in (False, True):
            for threads in (1, 2, 1, 2):
                if evicted:
                    evict(results)
                t = time.perf_counter()
                checks = verify(results, threads=threads)
                wall = time.perf_counter() - t
                assert checks.broken == [], checks.broken[:3]
                kinds = ", ".join(f"{k} {n:,} in {s:.1f} s" for k, (n, s) in checks.seconds.items() if n)
                where = "evicted from the page cache" if evicted else "in the page cache"
                print(f"verify, files {where}, {threads} process(es): {len(checks.checked):,} files in {wall:.1f} s")
                print(f"    {kinds}")
        print(f"one EfficientNet-B0 checkpoint checked in {checkpoint_seconds(root):.2f} s")
    finally:
        if not a.keep:
            shutil.rmtree(root)


if __name__ == "__main__":
    main()
