"""Shared test helpers: synthetic videos with known motion, tiny demo datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
import pytest

from moclip.codec import encode_video
from moclip.demo import DemoSpec, make_demo_dataset, smooth_noise

REPO = Path(__file__).resolve().parents[1]
TINY_DEMO = DemoSpec(groups=5, clips=1, frames=24)


def moving_object_video(
    path: Path, vx: int, vy: int, codec: str = "mpeg4", bframes: int = 0, n: int = 24, size: int = 64, seed: int = 0
) -> list[tuple[int, int]]:
    """Encode a smooth textured square moving (vx, vy) px a frame over a static textured
    background; return its top-left corner per frame."""
    rng = np.random.default_rng(seed)
    bg = (smooth_noise(rng, 240, 320, 16) * 80 + 60).astype(np.uint8)
    tex = (smooth_noise(rng, size, size, 8) * 255).astype(np.uint8)
    x0 = 160 - size // 2 - vx * (n - 1) // 2
    y0 = 120 - size // 2 - vy * (n - 1) // 2
    pos = [(x0 + vx * i, y0 + vy * i) for i in range(n)]

    def frames():
        for x, y in pos:
            img = bg.copy()
            img[y : y + size, x : x + size] = tex
            yield img

    opts = {"refs": "1"} if codec == "libx264" else None
    encode_video(path, frames(), codec=codec, bframes=bframes, bit_rate=2_000_000, options=opts)
    return pos


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> tuple[Path, Path]:
    """A small demo dataset (9 classes x 5 groups x 1 clip), built once a session."""
    root = tmp_path_factory.mktemp("demo")
    make_demo_dataset(root / "UCF-101", root / "ucfTrainTestlist", TINY_DEMO, threads=2)
    return root / "UCF-101", root / "ucfTrainTestlist"


def demo_config(overrides: dict) -> dict:
    """The repository's config.yaml (the demo's CPU-sized settings) with ``overrides`` merged
    in key by key. A run in another directory reads that directory's config.yaml, and keys
    missing there take the schema's defaults (the paper's UCF101 settings): tests write this."""

    def merge(a: dict, b: dict) -> dict:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return out

    return merge(yaml.safe_load((REPO / "config.yaml").read_text()), overrides)
