"""CLIP embedding stage against the bare encoder, side by side in one run.

Ours: ``embed_frame_caches`` over frame caches (HDF5 reads in a DataLoader worker, JPEG
decoded there on the CPU or on the card in one call a batch, uint8 frames pinned and copied
to the device, resize and normalisation batched there, the shard written), with the default
JPEG frames and with raw ones. Bare: ``model.encode_image`` on pre-made tensors of the same
batch size. Same model, same device; the three alternate for ``--rounds`` rounds, so that
the shared machine's changes of speed hit them alike. Goal: >= 0.9, decoding included.

Usage: python benchmarks/bench_clip.py [--model ViT-B-32] [--videos 32] [--batch-videos 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from moclip.clip.stream import embed_frame_caches, load_clip
from moclip.dataset.demo import DemoSpec, make_demo_dataset
from moclip.runtime import autocast_dtype, resolve_device
from moclip.video.cache import ENCODINGS, FrameStorage, cache_shard
from moclip.video.codec import DecodeSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--videos", type=int, default=32)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--batch-videos", type=int, default=4)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    dev = resolve_device(a.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_demo_dataset(root / "UCF-101", root / "lists", DemoSpec(groups=4, clips=2, frames=30), threads=2)
        videos = sorted((root / "UCF-101").rglob("*.avi"))[: a.videos]
        files = {}
        for enc in ENCODINGS:
            cache_shard(
                videos=videos,
                videos_root=root,
                settings=DecodeSettings(frame_count=a.frames),
                compression="lz4",
                storage=FrameStorage(enc),
                mv=root / enc / "mv",
                frames=root / enc / "fr",
                index=root / enc / "index.tsv",
                threads=2,
            )
            files[enc] = [root / enc / "fr" / f"{p.stem}.h5" for p in videos]
        clip = load_clip(a.model, "none", device=str(dev))
        n_img = len(videos) * a.frames
        batch = a.batch_videos * a.frames

        ids = [p.stem for p in videos]
        x = torch.randn(batch, 3, clip.image_size, clip.image_size, device=dev)
        amp = autocast_dtype(dev)

        def ours(enc: str) -> None:
            embed_frame_caches(clip, files[enc], ids, root / "shard.h5", a.batch_videos, 1, str(dev))

        @torch.no_grad()
        def bare() -> None:
            with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
                for _ in range(n_img // batch):
                    clip.model.encode_image(x).float().cpu()

        runs = {"jpeg": lambda: ours("jpeg"), "raw": lambda: ours("raw"), "bare": bare}
        for fn in runs.values():  # warm-up
            fn()
        ratios, rates = {"jpeg": [], "raw": []}, {name: [] for name in runs}
        for r in range(a.rounds):
            t = {}
            for name in list(runs)[r % 3 :] + list(runs)[: r % 3]:  # the order rotates a round
                t0 = time.perf_counter()
                runs[name]()
                t[name] = time.perf_counter() - t0
                rates[name].append(n_img / t[name])
            for enc in ratios:
                ratios[enc].append(t["bare"] / t[enc])
        name = torch.cuda.get_device_name() if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        print(f"## {a.model} (random weights), {n_img} images a round, batch {batch}, {a.rounds} rounds, {name}")
        print(f"bare encode_image on tensors        {_span(rates['bare'])} images/s")
        for enc in ratios:
            median = statistics.median(ratios[enc])
            print(f"moclip embedding stage, {enc:4s} frames {_span(rates[enc])} images/s")
            span = _span(ratios[enc], ".2f")
            print(f"ratio stage ({enc:4s}) / bare         {span}   (median {median:.2f}; goal >= 0.9)")


def _span(values: list[float], fmt: str = ".1f") -> str:
    return f"{min(values):{fmt}}-{max(values):{fmt}}"


if __name__ == "__main__":
    main()
