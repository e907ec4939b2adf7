"""The paper preset's CoViAR accumulation, ms a segment: the loader's per-pixel trace (NumPy,
``accumulate``, a segment at a time in a worker) against the batched one from cell-grid
vectors (``accumulate_batch``: a training batch's segments at once, on the CPU and, where
there is one, the GPU). Camera-like dense motion (a pan plus per-block noise, half-pixel vectors), GOP 12 at
340x256 (CoViAR's re-encode), the segment at each distance from the I-frame. Every variant's
maps are checked equal to the trace's before it is timed.

Usage: python benchmarks/bench_accumulate.py [--rounds 5] [--batch 240]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from moclip.mv_data import accumulate, accumulate_batch, gop_steps

H, W, CELL, GOP = 256, 340, 8, 12


def camera_gop(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    hc, wc = -(-H // CELL), -(-W // CELL)
    pan = rng.normal(0, 3, (1, 1, 1, 2)) + rng.normal(0, 0.5, (GOP, 1, 1, 2))
    mv = (np.round((pan + rng.normal(0, 1.5, (GOP, hc, wc, 2))) * 2) / 2).astype(np.float16)
    return mv, np.frombuffer(("I" + "P" * (GOP - 1)).encode(), np.uint8)


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


if __name__ == "__main__":
    main()
