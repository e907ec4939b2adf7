"""An embedded demo dataset in UCF101's exact layout, where only appearance + motion together name the class.

The same clips can also be written in HMDB51's layout, as one CSV file of labels and splits,
or as bare folders without labels (``LAYOUTS``); a clip's bytes do not depend on the layout.

Every class is a pair (appearance, motion pattern): each appearance is shared by several
classes and each motion by several, so a frame alone (CLIP) or the motion alone (MV
network) leaves the class ambiguous, and only their fusion separates all of them.
Nuisance variation: position, size, speed, amplitude, per-group background texture and
object shade (UCF101's groups are one recording each), per-frame noise.
Motion patterns are chosen invariant under horizontal flips (rise, fall, shake), so the
MV network's flip augmentation never turns one class into another.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from moclip.dataset.formats import FORMATS
from moclip.runtime import Progress, map_videos
from moclip.settings import FromConfig, check_bound, default

log = logging.getLogger(__name__)

APPEARANCES = {  # name -> RGB colour of the object, and the tint of its scenes
    "Ball": (220, 40, 40),
    "Box": (40, 200, 60),
    "Kite": (50, 80, 230),
    "Ring": (230, 200, 40),
}
MOTIONS = ("Rise", "Fall", "Shake", "Orbit")
WIDTH, HEIGHT, FPS = 320, 240, 25


@dataclass(frozen=True)
class DemoSpec(FromConfig):
    """What shapes the demo dataset; every field is a workflow param (defaults: config.yaml's ``demo``)."""

    appearances: tuple[str, ...] = default("demo", "appearances")
    motions: tuple[str, ...] = default("demo", "motions")
    groups: int = default("demo", "groups")
    clips: int = default("demo", "clips")
    frames: int = default("demo", "frames")
    seed: int = 0

    def classes(self) -> list[str]:
        """Class names in classInd order (case-insensitive, as UCF101 orders them)."""
        return sorted((a + m for a in self.appearances for m in self.motions), key=str.lower)

    def n_videos(self) -> int:
        return len(self.classes()) * self.groups * self.clips

    def test_groups(self, split: int) -> range:
        """Groups tested in ``split``: consecutive blocks, as UCF101's 1-7, 8-14, 15-21 of 25."""
        b = max(1, self.groups * 7 // 25)
        return range((split - 1) * b + 1, split * b + 1)

    def validate(self) -> None:
        for a in self.appearances:
            if a not in APPEARANCES:
                raise ValueError(f"demo.appearances: unknown {a!r} (choose from {sorted(APPEARANCES)})")
        for m in self.motions:
            if m not in MOTIONS:
                raise ValueError(f"demo.motions: unknown {m!r} (choose from {list(MOTIONS)})")
        if max(self.test_groups(3)) >= self.groups:
            need = next(g for g in range(2, 100) if max(replace(self, groups=g).test_groups(3)) < g)
            raise ValueError(
                f"demo.groups={self.groups}: the 3 splits' test blocks take {max(self.test_groups(3))} groups "
                f"and at least one must be left to train on: need {need} or more"
            )
        check_bound("demo.frames", self.frames)
        check_bound("demo.clips", self.clips)


def smooth_noise(rng: np.random.Generator, height: int, width: int, scale: int) -> np.ndarray:
    """Bilinearly upsampled noise in [0, 1): a texture encoders' motion search can track."""
    n = rng.random((height // scale + 2, width // scale + 2, 3))
    yi, xi = np.arange(height) / scale, np.arange(width) / scale
    y0, x0 = yi.astype(int), xi.astype(int)
    fy, fx = (yi - y0)[:, None, None], (xi - x0)[None, :, None]
    a, b = n[y0][:, x0], n[y0][:, x0 + 1]
    c, d = n[y0 + 1][:, x0], n[y0 + 1][:, x0 + 1]
    return a * (1 - fy) * (1 - fx) + b * (1 - fy) * fx + c * fy * (1 - fx) + d * fy * fx


def _silhouette(size: int) -> np.ndarray:
    """The one shape every appearance moves (a disc): a moving region's outline names no class."""
    r = (np.arange(size) - (size - 1) / 2) / (size / 2)
    y, x = np.meshgrid(r, r, indexing="ij")
    return x**2 + y**2 <= 1


def _trajectory(motion: str, n: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """Top-left corner per frame [n, 2] (x, y), kept inside the central square that CLIP's
    centre crop sees (x in 40..280), so every frame shows the object to both streams."""
    t = np.arange(n, dtype=np.float64)
    speed = rng.uniform(1.5, 4.0)
    x_lo = (WIDTH - HEIGHT) // 2
    mx, my = HEIGHT - size, HEIGHT - size  # offsets inside the central square
    if motion in ("Rise", "Fall"):
        travel = min(speed * (n - 1), my)
        speed = travel / max(n - 1, 1)
        x = np.full(n, rng.uniform(0, mx))
        y0 = rng.uniform(travel, my) if motion == "Rise" else rng.uniform(0, my - travel)
        y = y0 - speed * t if motion == "Rise" else y0 + speed * t
    elif motion == "Shake":
        amp, period = rng.uniform(15, 35), rng.uniform(10, 18)
        xc, y = rng.uniform(amp, mx - amp), np.full(n, rng.uniform(0, my))
        x = xc + amp * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    elif motion == "Orbit":
        rad, period = rng.uniform(20, 45), rng.uniform(25, 40)
        xc, yc = rng.uniform(rad, mx - rad), rng.uniform(rad, my - rad)
        ph = 2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)
        x, y = xc + rad * np.cos(ph), yc + rad * np.sin(ph)
    else:
        raise ValueError(motion)
    return np.stack([x_lo + np.clip(x, 0, mx), np.clip(y, 0, my)], 1)


def render_clip(spec: DemoSpec, appearance: str, motion: str, group: int, clip: int) -> np.ndarray:
    """RGB uint8 frames [T, 240, 320, 3] of one clip, fixed by (seed, class, group, clip)."""
    colour = APPEARANCES[appearance]
    key = [spec.seed, zlib.crc32((appearance + motion).encode()), group]
    grng = np.random.default_rng(key)  # shared by the clips of a group: one "recording"
    # A textured scene tinted like its object (as UCF101's scenes go with their actions:
    # pools, fields, gyms), with per-group jitter: appearance is object and scene together.
    lum = smooth_noise(grng, HEIGHT, WIDTH, int(grng.integers(12, 40)))[..., :1]
    tint = np.array(colour, float) - np.mean(colour)
    bg = lum * 100 + grng.uniform(50, 90) + tint * 0.45 + grng.normal(0, 6, 3)
    shade = np.clip(np.array(colour) * grng.uniform(0.8, 1.1) + grng.normal(0, 12, 3), 0, 255)
    # The motion's draws (size, texture pattern, trajectory, noise) depend on the motion,
    # group and clip only: every appearance of them moves alike.
    rng = np.random.default_rng([spec.seed, zlib.crc32(motion.encode()), group, clip])
    size = int(rng.integers(48, 72))
    mask = _silhouette(size)
    tex = shade * (0.75 + 0.5 * smooth_noise(rng, size, size, 8))
    pos = np.round(_trajectory(motion, spec.frames, rng, size)).astype(int)
    out = np.empty((spec.frames, HEIGHT, WIDTH, 3), np.uint8)
    for i, (x, y) in enumerate(pos):
        img = bg.copy()
        region = img[y : y + size, x : x + size]
        region[mask] = tex[mask]
        img += rng.normal(0, 1, img.shape[:2])[..., None]
        out[i] = np.clip(img, 0, 255)
    return out


def _write_clip(args: tuple) -> str:
    spec, appearance, motion, group, clip, path = args
    from moclip.video.encode import encode_video  # PyAV, imported here: the workflow's parse reads DemoSpec

    encode_video(path, render_clip(spec, appearance, motion, group, clip), fps=FPS, codec="mpeg4", gop=12)
    return str(path)


# --------------------------------------------------------------------------- layouts

HMDB51_ATTRS = "u_nm_np1_fr_med"  # visible body part, camera motion, people, viewpoint, quality
CSV_HEADER = ("path", "label", "split1", "split2", "split3", "group")

ClipKey = tuple[str, int, int]  # (class, group, clip), group and clip 1-based


def ucf101_path(name: str, group: int, clip: int) -> str:
    """``<Class>/v_<Class>_gGG_cCC.avi``, relative to the videos folder."""
    return f"{name}/v_{name}_g{group:02d}_c{clip:02d}.avi"


def hmdb51_class(name: str) -> str:
    """HMDB51's class spelling of a demo class: ``BallRise`` -> ``ball_rise``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def hmdb51_file(name: str, group: int, clip: int) -> str:
    """HMDB51's ``<Source>_<class>_<attrs>_<n>.avi``: source ``GroupGG``, n the 0-based clip."""
    return f"Group{group:02d}_{hmdb51_class(name)}_{HMDB51_ATTRS}_{clip - 1}.avi"


def hmdb51_path(name: str, group: int, clip: int) -> str:
    """``<class>/<file>``, relative to the videos folder."""
    return f"{hmdb51_class(name)}/{hmdb51_file(name, group, clip)}"


def folder_path(name: str, group: int, clip: int) -> str:
    """``group GG/<Class>/clip CC.avi``: spaces, and one file name in many folders."""
    return f"group {group:02d}/{name}/clip {clip:02d}.avi"


def make_demo_dataset(
    videos: Path | str,
    lists: Path | str | None = None,
    spec: DemoSpec = DemoSpec(),
    threads: int = 1,
    format: str = "ucf101",
) -> None:
    """Write the demo's videos under ``videos`` and its labels and splits at ``lists`` in one
    of the :data:`LAYOUTS` (``lists`` None for ``folder``, which has none)."""
    spec.validate()
    _check_format(format, lists)
    videos = Path(videos)
    clips = _clips(spec)
    layout = LAYOUTS[format]
    rel = {k: layout.path(*k) for k in clips}
    for d in sorted({(videos / r).parent for r in rel.values()}):
        d.mkdir(parents=True, exist_ok=True)
    _render([(spec, *_appearance_motion(spec, k[0]), *k[1:], videos / rel[k]) for k in clips], threads)
    if layout.write_lists:
        layout.write_lists(Path(lists), spec, rel)


def _check_format(format: str, lists: Path | str | None) -> None:
    if format not in LAYOUTS:
        raise ValueError(f"demo format {format!r}: choose from {list(LAYOUTS)}")
    if (lists is None) != (FORMATS[format].lists is None):
        need = "takes no lists (videos only)" if lists is not None else "needs a lists path"
        raise ValueError(f"demo format {format!r} {need}")


def _clips(spec: DemoSpec) -> list[ClipKey]:
    """Every (class, group, clip) in (class, group, clip) order, classes in classInd order."""
    return [(name, g, c) for name in spec.classes() for g, c in _group_clips(spec)]


def _appearance_motion(spec: DemoSpec, name: str) -> tuple[str, str]:
    a = next(x for x in spec.appearances if name.startswith(x) and name[len(x) :] in spec.motions)
    return a, name[len(a) :]


def _group_clips(spec: DemoSpec) -> list[tuple[int, int]]:
    return [(g, c) for g in range(1, spec.groups + 1) for c in range(1, spec.clips + 1)]


def _render(jobs: list[tuple], threads: int) -> None:
    """Render and encode every clip job (see ``_write_clip``), ``threads`` at a time, a
    progress line in the job's log every few seconds."""
    progress = Progress("videos", len(jobs), log)
    with map_videos(_write_clip, jobs, threads, chunksize=4) as written:
        for _ in written:
            progress.update()


def write_split_lists(lists: Path, classes: list[str], entries: list[tuple[str, int, int]], test_groups) -> None:
    """UCF101's split files: ``classInd.txt`` and each split's train and test lists, with
    Windows line ends as the official ones. ``entries`` are (path, 1-based label, group) in
    list order; ``test_groups(k)`` gives the groups split k tests on."""
    lists.mkdir(parents=True, exist_ok=True)
    crlf = "\r\n"
    (lists / "classInd.txt").write_bytes("".join(f"{i} {n}{crlf}" for i, n in enumerate(classes, 1)).encode())
    for k in (1, 2, 3):
        test = set(test_groups(k))
        train_lines = [f"{r} {label}{crlf}" for r, label, g in entries if g not in test]
        test_lines = [f"{r}{crlf}" for r, _, g in entries if g in test]
        (lists / f"trainlist0{k}.txt").write_bytes("".join(train_lines).encode())
        (lists / f"testlist0{k}.txt").write_bytes("".join(test_lines).encode())


def hmdb51_tags(group_clips: list[tuple[int, int]], test: set[int]) -> list[int]:
    """HMDB51's split tag of each (group, clip) of a class: 2 test (groups in ``test``), 1 train,
    0 unused: the last train clip, when the class has more than 2 (so every split has one)."""
    tags = [2 if g in test else 1 for g, _ in group_clips]
    if tags.count(1) > 2:
        tags[len(tags) - 1 - tags[::-1].index(1)] = 0
    return tags


def write_hmdb51_splits(lists: Path, spec: DemoSpec) -> None:
    """HMDB51's split files: ``<class>_test_split<K>.txt`` a class and split, one line a video,
    ``<file> <tag> `` (a trailing space, as the official files), in (group, clip) order."""
    lists.mkdir(parents=True, exist_ok=True)
    group_clips = _group_clips(spec)
    for name in spec.classes():
        for k in (1, 2, 3):
            tags = hmdb51_tags(group_clips, set(spec.test_groups(k)))
            lines = [f"{hmdb51_file(name, g, c)} {t} \n" for (g, c), t in zip(group_clips, tags)]
            (lists / f"{hmdb51_class(name)}_test_split{k}.txt").write_bytes("".join(lines).encode())


def write_csv_labels(path: Path, spec: DemoSpec, rel: dict[ClipKey, str]) -> None:
    """One CSV file (UTF-8, ``\\n`` line ends): ``CSV_HEADER``, then one row a video in (class,
    group, clip) order: path relative to the videos folder, class, each split's train/test, group."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for name, g, c in _clips(spec):
        splits = ["test" if g in spec.test_groups(k) else "train" for k in (1, 2, 3)]
        w.writerow([rel[(name, g, c)], name, *splits, g])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue().encode("utf-8"))


def _ucf101_lists(lists: Path, spec: DemoSpec, rel: dict[ClipKey, str]) -> None:
    classes = spec.classes()
    entries = [(rel[(name, g, c)], i, g) for i, name in enumerate(classes, 1) for g, c in _group_clips(spec)]
    write_split_lists(lists, classes, entries, spec.test_groups)


def _hmdb51_lists(lists: Path, spec: DemoSpec, rel: dict[ClipKey, str]) -> None:
    write_hmdb51_splits(lists, spec)


@dataclass(frozen=True)
class Layout:
    """A dataset format's demo (moclip.dataset.formats.FORMATS names the same formats, and the
    folders of their downloads): a clip's path under the videos, and the lists' writer
    (None: videos only)."""

    path: Callable[[str, int, int], str]
    write_lists: Callable[[Path, DemoSpec, dict[ClipKey, str]], None] | None = None


LAYOUTS: dict[str, Layout] = {
    "ucf101": Layout(ucf101_path, _ucf101_lists),
    "hmdb51": Layout(hmdb51_path, lambda d, s, _: write_hmdb51_splits(d, s)),
    "csv": Layout(ucf101_path, write_csv_labels),
    "folder": Layout(folder_path),
}


# --------------------------------------------------------------------------- UCF101-shaped sets for scale measurements

UCF101_VIDEOS, UCF101_CLASSES, UCF101_GROUPS = 13_320, 101, 25
UCF101_FRAMES = (29, 1776)  # shortest and longest clip in frames (25 fps; the mean is ~186)


def ucf101_shaped_lengths(n: int, rng: np.random.Generator) -> np.ndarray:
    """Clip lengths in frames shaped like UCF101's: log-normal (median 160, sd 0.55 in log
    space, mean ~186), bounded to 29..1776."""
    lo, hi = UCF101_FRAMES
    return np.clip(np.round(rng.lognormal(np.log(160), 0.55, n)), lo, hi).astype(int)


def _clips_a_group(n: int, n_groups: int, rng: np.random.Generator) -> np.ndarray:
    """4-7 clips a group (as UCF101's), adjusted at random groups until they sum to ``n``."""
    c = rng.integers(4, 8, n_groups)
    while (d := n - int(c.sum())) != 0:
        room = np.flatnonzero(c < 7) if d > 0 else np.flatnonzero(c > 4)
        c[rng.choice(room)] += 1 if d > 0 else -1
    return c


def make_scale_dataset(
    videos: Path | str, lists: Path | str, n_videos: int, seed: int = 0, pool: int = 48, threads: int = 1
) -> dict:
    """A UCF101-shaped dataset of ``n_videos`` in UCF101's layout, fast enough for 13,320.

    101 classes at UCF101's size (proportionally fewer below it, at least 3), 25 groups a
    class, 4-7 clips a group, lengths drawn from UCF101's distribution, 320x240 MPEG-4 Part 2
    AVI at 25 fps. Only ``pool`` clips are rendered, at the drawn lengths' quantiles; each
    video is a hard link to the pool clip nearest its length (decoding costs what a clip of
    that length costs; the classes are not learnable). Returns the counts.
    """
    n_classes = max(3, round(UCF101_CLASSES * n_videos / UCF101_VIDEOS))
    if n_videos < n_classes * UCF101_GROUPS * 4 or n_videos > n_classes * UCF101_GROUPS * 7:
        raise ValueError(f"{n_videos} videos do not fit {n_classes} classes x 25 groups x 4-7 clips")
    videos, lists = Path(videos), Path(lists)
    rng = np.random.default_rng(seed)
    lengths = ucf101_shaped_lengths(n_videos, rng)
    quantiles = np.quantile(lengths, (np.arange(pool) + 0.5) / pool)  # plus both extremes: the longest
    pool_len = np.unique(np.r_[quantiles.round(), lengths.min(), lengths.max()].astype(int))  # bounds memory
    spec = DemoSpec(appearances=tuple(APPEARANCES), motions=MOTIONS, seed=seed)
    kinds = [(a, m) for a in spec.appearances for m in spec.motions]
    pool_dir = videos.parent / f"{videos.name}.pool"
    pool_dir.mkdir(parents=True, exist_ok=True)
    jobs = [
        (replace(spec, frames=int(n)), *kinds[j % len(kinds)], 1, j + 1, pool_dir / f"pool_{j:03d}_{n}.avi")
        for j, n in enumerate(pool_len)
    ]
    _render(sorted(jobs, key=lambda j: -j[0].frames), threads)  # the longest first: no straggler at the end
    classes = [f"Action{i:03d}" for i in range(1, n_classes + 1)]
    per_group = _clips_a_group(n_videos, n_classes * UCF101_GROUPS, rng)
    entries, frames = [], []
    for ci, name in enumerate(classes):
        (videos / name).mkdir(parents=True, exist_ok=True)
        for g in range(1, UCF101_GROUPS + 1):
            for c in range(1, per_group[ci * UCF101_GROUPS + g - 1] + 1):
                rel = ucf101_path(name, g, c)
                j = int(np.abs(pool_len - lengths[len(entries)]).argmin())
                (videos / rel).unlink(missing_ok=True)
                (videos / rel).hardlink_to(jobs[j][-1])
                frames.append(int(pool_len[j]))
                entries.append((rel, ci + 1, g))
    write_split_lists(lists, classes, entries, DemoSpec(groups=UCF101_GROUPS).test_groups)  # 1-7, 8-14, 15-21
    return {"videos": n_videos, "classes": n_classes, "frames": int(sum(frames)), "pool": len(pool_len)}


# --------------------------------------------------------------------------- stage entry point


def demo_data(
    *, spec: DemoSpec, videos: Path | str, lists: Path | str | None = None, threads: int = 1, format: str = "ucf101"
) -> None:
    """Rule ``demo_data``: the demo dataset's ``videos`` and split ``lists`` in ``format``'s
    layout (``LAYOUTS``; ``lists`` None for ``folder``)."""
    make_demo_dataset(videos, lists, spec, threads=threads, format=format)
