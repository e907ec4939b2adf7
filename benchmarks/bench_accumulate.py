"""The paper preset's CoViAR accumulation, ms a segment: the loader's per-pixel trace (NumPy,
``accumulate``, a segment at a time in a worker) against the batched one from cell-grid
vectors (``accumulate_batch``: a training batch's segments at once, on the CPU and, where
there is one, the GPU). Camera-like dense motion (a pan plus per-block noise, half-pixel vectors), GOP 12 at
340x256 (CoViAR's re-encode), the segment at each distance from the I-frame. Every variant's
maps are checked equal to the trace's before it is timed.

Then the training loader itself, segments a second delivered as maps on the device, old and
new side by side: maps traced per pixel in the workers (a CPU job's loader) against the
workers' cell-grid vectors traced batched on the device (``Traces``: a GPU job's), over MV
caches of the same motion, each loader's batches checked equal first.

Usage: python benchmarks/bench_accumulate.py [--rounds 5] [--batch 240] [--videos 48] [--workers 0 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from moclip.mv.data import EpochOrder, MVClips, MVItem, MVSettings, accumulate, accumulate_batch, gop_steps, mv_loader
from moclip.runtime import resolve_device
from moclip.video.cache import CHECKED, COMPRESSION

H, W, CELL, GOP = 256, 340, 8, 12


def camera_gop(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    hc, wc = -(-H // CELL), -(-W // CELL)
    pan = rng.normal(0, 3, (1, 1, 1, 2)) + rng.normal(0, 0.5, (GOP, 1, 1, 2))
    mv = (np.round((pan + rng.normal(0, 1.5, (GOP, hc, wc, 2))) * 2) / 2).astype(np.float16)
    return mv, np.frombuffer(("I" + "P" * (GOP - 1)).encode(), np.uint8)


def write_caches(root: Path, n: int, gops: int) -> list[MVItem]:
    """``n`` MV caches of ``gops`` camera-like GOPs each, laid out as moclip.video.cache writes them."""
    rng, items = np.random.default_rng(1), []
    for k in range(n):
        mv, ft = zip(*(camera_gop(rng) for _ in range(gops)), strict=True)
        mv, ft = np.concatenate(mv), np.concatenate(ft)
        path = root / f"v{k}.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("mv", data=mv, chunks=(min(64, len(mv)), *mv.shape[1:]), **COMPRESSION["lz4"], **CHECKED)
            f.create_dataset("frame_type", data=ft)
            f.create_dataset("ref_distance", data=np.ones(len(ft), np.int16))
            f.attrs.update(status="ok", mv_cell=CELL, height=H, width=W)
        items.append(MVItem(f"v{k}", path, k % 3))
    return items


def loader_rate(items: list[MVItem], traces: bool, workers: int, batch: int, dev: torch.device | None, rounds: int):
    """Training segments a second out of the loader as maps on ``dev`` (best of ``rounds``
    epochs of one loader, its workers kept), and its first batch's maps; ``dev`` None: the
    batches as the workers ship them (the loader's side alone)."""
    s = MVSettings(accumulate=True, input_size=224, input_range=0.5)
    order = EpochOrder(len(items), seed=0)
    pin = dev is not None and dev.type == "cuda"
    loader = mv_loader(MVClips(items, s, s.segments, 0, traces=traces), batch, workers, order, pin)
    best, first = 0.0, None
    for epoch in range(rounds):
        order.epoch = epoch
        t0, n = time.perf_counter(), 0
        for x, _ in loader:
            m = x if dev is None else x.to(dev, non_blocking=True)
            first = m if first is None else first
            n += (m.steps if dev is None and traces else m).shape[0] * s.segments
        if pin:
            torch.cuda.synchronize(dev)
        best = max(best, n / (time.perf_counter() - t0))
    return best, first if dev is None else first.cpu()


def per_segment_ms(fn, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        n = fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return 1e3 * best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=240, help="segments a batched call (the recipe: 80 x 3)")
    ap.add_argument("--videos", type=int, default=48, help="MV caches the loader reads (6 GOPs each)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1], help="loader workers to compare")
    ap.add_argument("--device", default="auto", help="where the new loader traces: auto | cpu | cuda | cuda:N")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    mv, ft = camera_gop(rng)
    print(f"## CoViAR accumulation, {W}x{H}, GOP {GOP}, one thread: ms a segment (best of {a.rounds})")
    print("P-frames back | loader's trace (NumPy) | batched, CPU | batched, GPU")
    for t in (1, 6, 11):
        want = accumulate(mv, ft, t, CELL, (H, W))
        steps = torch.from_numpy(np.stack([gop_steps(mv, ft, t, GOP - 1)] * a.batch))
        assert torch.equal(accumulate_batch(steps[:2], CELL, (H, W))[1], torch.from_numpy(want).permute(2, 0, 1))
        reps = 20
        old = per_segment_ms(lambda: [accumulate(mv, ft, t, CELL, (H, W)) for _ in range(reps)] and reps, a.rounds)  # noqa: B023
        cpu = per_segment_ms(lambda: accumulate_batch(steps, CELL, (H, W)).shape[0], max(1, a.rounds // 2))  # noqa: B023
        gpu = "-"
        if torch.cuda.is_available():
            on = steps.cuda()

            def run():
                out = accumulate_batch(on, CELL, (H, W))  # noqa: B023
                torch.cuda.synchronize()
                return out.shape[0]

            run()
            gpu = f"{per_segment_ms(run, a.rounds):.4f}"
        print(f"{t:13d} | {old:21.2f} | {cpu:12.2f} | {gpu}")
    dev = resolve_device(a.device)
    batch = max(1, a.batch // 3)
    print(f"\n## The training loader, {a.videos} videos x 3 segments, batch {batch}: segments/s as maps on {dev}")
    print("workers | old: traced per pixel in the workers | new: vectors, traced on the device | new / old", end="")
    print(" | new, the workers' side alone")
    with tempfile.TemporaryDirectory() as tmp:
        items = write_caches(Path(tmp), a.videos, 6)
        for w in a.workers:
            old, want = loader_rate(items, False, w, batch, dev, max(2, a.rounds // 2))
            new, got = loader_rate(items, True, w, batch, dev, max(2, a.rounds // 2))
            assert torch.equal(got, want), "the traced loader's maps differ from the workers'"
            ship, _ = loader_rate(items, True, w, batch, None, max(2, a.rounds // 2))
            print(f"{w:7d} | {old:36.0f} | {new:34.0f} | {new / old:9.2f} | {ship:.0f}")


if __name__ == "__main__":
    main()
