"""The dense features along time, for the report: a panel a video (the first few of the
run), the windows' motion and how much each CLIP row changes from the one before."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moclip.dense import read_dense
from moclip.plots import _plt, _save

MAX_VIDEOS = 6  # panels a figure: the first videos of the first shards


def clip_change(clip: np.ndarray) -> np.ndarray:
    """1 - cosine between each window's CLIP row and the previous one's ([W]; 0 for the first)."""
    z = clip / np.maximum(np.linalg.norm(clip, axis=1, keepdims=True), 1e-12)
    out = np.zeros(len(z), np.float32)
    out[1:] = 1 - (z[1:] * z[:-1]).sum(1)
    return out


def plot_dense_timeline(videos: list, out: Path | str, actions: dict | None = None) -> None:
    """One panel a video of ``videos`` (:class:`moclip.dense.DenseVideo`, at most MAX_VIDEOS):
    the windows' mean motion (px a frame) and their CLIP change against time (window
    centres, s); ``actions``: video_id -> [(start, end)] shaded where known."""
    plt = _plt()
    shown = videos[:MAX_VIDEOS]
    fig, axes = plt.subplots(max(1, len(shown)), 1, figsize=(10, 1.8 * max(1, len(shown))), squeeze=False)
    for ax, v in zip(axes[:, 0], shown):
        t = (v.start + v.end) / 2
        for a, b in (actions or {}).get(v.video_id, []):
            ax.axvspan(a, b, color="0.85", lw=0)
        ax.plot(t, v.motion, color="tab:blue", lw=1)
        ax.set_ylabel("motion, px", color="tab:blue", fontsize=8)
        ax2 = ax.twinx()
        ax2.plot(t, clip_change(v.clip), color="tab:orange", lw=1)
        ax2.set_ylabel("CLIP change", color="tab:orange", fontsize=8)
        ax.set_title(v.video_id, fontsize=9, loc="left")
    if not shown:
        axes[0, 0].text(0.5, 0.5, "no video with dense features", ha="center", va="center")
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    _save(fig, out)


def dense_plot(*, shards: list[Path | str], out: Path | str) -> None:
    """Rule ``dense_plot``: the timeline of the first videos of ``shards``."""
    videos = []
    for s in shards:
        videos += read_dense(s).videos
        if len(videos) >= MAX_VIDEOS:
            break
    plot_dense_timeline(videos, out)
