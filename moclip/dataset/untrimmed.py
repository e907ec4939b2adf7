"""Long untrimmed synthetic videos with actions at known times (the dense stage's tests,
benchmark and demo): a still textured scene where an object moves only during each action.

A constant frame rate writes AVI (MPEG-4 Part 2, UCF101's tag, as the demo); ``vfr`` writes
Matroska with millisecond timestamps whose frame intervals change along the video, so that
times and frame counts disagree.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from moclip.dataset.demo import smooth_noise
from moclip.io import atomic_path

SPEED = 60.0  # px a second an object moves during an action


@dataclass(frozen=True)
class Action:
    """An action: the object moves from ``start`` to ``end`` (seconds from the first frame)."""

    start: float
    end: float
    label: str = "move"


def frame_times(seconds: float, fps: float, vfr: bool, seed: int = 0) -> np.ndarray:
    """Frame times (s) of a video of ``seconds``: every 1/fps, or with ``vfr`` stretches of
    one second at fps, fps / 2 or fps / 3 in a seeded order (whole milliseconds)."""
    if not vfr:
        return np.arange(int(round(seconds * fps))) / fps
    rng = np.random.default_rng([seed, 7])
    out, t = [], 0
    step = round(1000 / fps)
    while t < seconds * 1000:
        gap = step * int(rng.choice([1, 2, 3]))
        stop = min(t + 1000, seconds * 1000)
        while t < stop:
            out.append(t)
            t += gap
    return np.asarray(out, np.float64) / 1000


def positions(times: np.ndarray, actions: list[Action], width: int, size: int) -> np.ndarray:
    """The object's left edge at each time: still between actions, moving at SPEED during
    them (bouncing between the frame's edges)."""
    moving = np.zeros_like(times)
    for a in actions:
        moving += np.clip(times - a.start, 0, a.end - a.start)
    span = width - size
    x = (SPEED * moving) % (2 * span)
    return np.where(x > span, 2 * span - x, x)


def render(times: np.ndarray, actions: list[Action], size=(320, 240), seed: int = 0) -> Iterator[np.ndarray]:
    """RGB uint8 frames [H, W, 3] at ``times``, one at a time (bounded memory)."""
    w, h = size
    rng = np.random.default_rng([seed, 11])
    bg = np.clip(smooth_noise(rng, h, w, 16) * 160 + 40, 0, 255).astype(np.uint8)
    obj = 64
    tex = np.clip(smooth_noise(rng, obj, obj, 8) * 200 + 30, 0, 255).astype(np.uint8)
    y = (h - obj) // 2
    for x in np.round(positions(times, actions, w, obj)).astype(int):
        img = bg.copy()
        img[y : y + obj, x : x + obj] = tex
        yield img


def write_untrimmed(
    path: Path | str,
    seconds: float,
    actions: list[Action],
    fps: float = 25,
    vfr: bool = False,
    size=(320, 240),
    seed: int = 0,
    gop: int = 12,
) -> np.ndarray:
    """Write a video of ``seconds`` with ``actions`` (MPEG-4 Part 2; AVI, or Matroska with
    ``vfr``), atomically; return its frame times (s)."""
    path = Path(path)
    times = frame_times(seconds, fps, vfr, seed)
    tb = Fraction(1, 1000) if vfr else Fraction(1, int(fps))
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="matroska" if vfr else "avi") as out:
        stream = out.add_stream("mpeg4", rate=int(fps))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 1_000_000
        if not vfr:
            stream.codec_tag = "XVID"
        stream.codec_context.time_base = tb
        stream.codec_context.thread_count = 1
        stream.codec_context.gop_size = gop
        for t, img in zip(times, render(times, actions, size, seed)):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = int(round(t / tb))
            frame.time_base = tb
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return times


def demo_actions(seconds: float, n: int, seed: int = 0, length: tuple[float, float] = (2.0, 6.0)) -> list[Action]:
    """``n`` actions at seeded, non-overlapping times of a video of ``seconds``, each
    ``length`` seconds long (a range), at least one second apart."""
    rng = np.random.default_rng([seed, 13])
    slots = np.linspace(0, seconds, n + 1)
    out = []
    for a, b in zip(slots[:-1], slots[1:]):
        d = min(rng.uniform(*length), (b - a) - 2.0)
        start = rng.uniform(a + 1.0, b - 1.0 - d)
        out.append(Action(round(float(start), 2), round(float(start + d), 2)))
    return out


def make_untrimmed_videos(
    root: Path | str, n_videos: int = 3, seconds: float = 60, actions: int = 4, seed: int = 0, vfr_every: int = 3
) -> list[tuple[str, list[Action]]]:
    """A folder run's dataset of long videos (``dataset.format: folder``): ``root``/
    ``long-<k>.avi`` (every ``vfr_every``-th ``.mkv``, variable frame rate), and beside the
    folder ``<root>-actions.csv`` (video, start, end, label): the ground truth no run reads."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(n_videos):
        vfr = vfr_every > 0 and k % vfr_every == vfr_every - 1
        name = f"long-{k}.{'mkv' if vfr else 'avi'}"
        acts = demo_actions(seconds, actions, seed=seed + k)
        write_untrimmed(root / name, seconds, acts, vfr=vfr, seed=seed + k)
        out.append((Path(name).stem, acts))
    with atomic_path(root.parent / f"{root.name}-actions.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "start", "end", "label"])
        for v, acts in out:
            w.writerows([v, a.start, a.end, a.label] for a in acts)
    return out
