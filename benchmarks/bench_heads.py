"""Heads on UCF101-sized feature sets: seconds to train one seed of each head on the CPU.

Random features of UCF101's split-1 size (9,537 training videos of which ~1,600 val,
3,783 test; CLIP 512-d + MV 1280-d, 101 classes), the paper's settings: 100 epochs,
batch 64, in-memory tensors.

Usage: python benchmarks/bench_heads.py [--epochs 100]
"""

from __future__ import annotations

import argparse
import time

import torch

from moclip.heads import HeadSettings, fit_head


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=100)
    a = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    n_train, n_val, dims, classes = 7_950, 1_587, [512, 1280], 101
    y_tr = torch.randint(0, classes, (n_train,), generator=g)
    y_va = torch.randint(0, classes, (n_val,), generator=g)
    centres = torch.randn(classes, sum(dims), generator=g)
    x_tr = centres[y_tr] + 3 * torch.randn(n_train, sum(dims), generator=g)
    x_va = centres[y_va] + 3 * torch.randn(n_val, sum(dims), generator=g)
    s = HeadSettings(epochs=a.epochs)
    print(
        f"## {n_train} train / {n_val} val videos, {sum(dims)}-d features, {classes} classes, "
        f"{a.epochs} epochs, CPU {torch.get_num_threads()} threads"
    )
    for kind, d in (("fusion", dims), ("clip_linear", dims[:1])):
        t = time.perf_counter()
        _, best, hist = fit_head(kind, d, classes, s, 0, x_tr[:, : sum(d)], y_tr, x_va[:, : sum(d)], y_va)
        print(
            f"{kind:12s} {time.perf_counter() - t:6.1f} s a seed   (best epoch {best}, "
            f"val top-1 {hist[best]['val_top1']:.3f})"
        )


if __name__ == "__main__":
    main()
