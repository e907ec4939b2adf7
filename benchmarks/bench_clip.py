"""CLIP embedding stage against the bare encoder, side by side in one run.

Ours: ``embed_frame_caches`` over frame caches (HDF5 read, preprocessing in a DataLoader
worker, batching across videos, writing the shard). Bare: ``model.encode_image`` on
pre-made tensors of the same batch size. Same model, same device. Goal: >= 0.8.

Usage: python benchmarks/bench_clip.py [--model ViT-B-32] [--videos 16] [--batch-videos 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from moclip.cache import cache_shard
from moclip.clip_stream import embed_frame_caches, load_clip
from moclip.codec import DecodeSettings
from moclip.demo import DemoSpec, make_demo_dataset
from moclip.runtime import resolve_device


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--batch-videos", type=int, default=4)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    dev = resolve_device(a.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_demo_dataset(root / "UCF-101", root / "lists", DemoSpec(groups=4, clips=1, frames=30), threads=2)
        videos = sorted((root / "UCF-101").rglob("*.avi"))[: a.videos]
        cache_shard(
            videos=videos,
            videos_root=root,
            settings=DecodeSettings(frame_count=a.frames),
            compression="lz4",
            mv=root / "mv",
            frames=root / "fr",
            index=root / "index.tsv",
            threads=2,
        )
        files = [root / "fr" / f"{p.stem}.h5" for p in videos]
        clip = load_clip(a.model, "none", device=str(dev))
        n_img = len(files) * a.frames
        batch = a.batch_videos * a.frames

        embed_frame_caches(
            clip,
            files[: a.batch_videos],
            [p.stem for p in videos[: a.batch_videos]],
            root / "warm.h5",
            a.batch_videos,
            1,
            str(dev),
        )  # warm-up
        t = time.perf_counter()
        embed_frame_caches(clip, files, [p.stem for p in videos], root / "shard.h5", a.batch_videos, 1, str(dev))
        t_ours = time.perf_counter() - t

        x = torch.randn(batch, 3, clip.image_size, clip.image_size, device=dev)
        amp = dev.type == "cuda"
        with torch.no_grad(), torch.autocast(dev.type, enabled=amp):
            clip.model.encode_image(x)  # warm-up
            if amp:
                torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(n_img // batch):
                clip.model.encode_image(x).float().cpu()
            t_bare = time.perf_counter() - t
        name = torch.cuda.get_device_name() if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        print(f"## {a.model} (random weights), {n_img} images, batch {batch}, {name}")
        print(f"bare encode_image on tensors   {n_img / t_bare:8.1f} images/s")
        print(f"moclip embedding stage         {n_img / t_ours:8.1f} images/s")
        print(f"ratio stage / bare             {t_bare / t_ours:8.2f}   (goal >= 0.8)")


if __name__ == "__main__":
    main()
