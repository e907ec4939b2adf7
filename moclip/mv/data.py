"""The motion stream's data: its settings, TSN segments sampled from the MV caches, motion
maps (per frame or traced back to the I-frame, as CoViAR), and the loader that reads them.

Everything reads the MV caches; nothing decodes video again.
"""

from __future__ import annotations

import functools
import logging
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from moclip.dataset.videos import Video
from moclip.mv.budgets import KEPT_CARD_SHARE, KEPT_HOST_MB
from moclip.settings import FromConfig, default
from moclip.video.cache import open_cache, read_index, video_file

log = logging.getLogger(__name__)
P, I = ord("P"), ord("I")


OPTIMIZERS = ("adam", "adamw", "sgd")  # mvnet.optimizer
AUGMENT_UNITS = ("segment", "video")  # mvnet.augment_unit: a crop and flip a segment, or one a video
EVAL_CROPS = (1, 10)  # mvnet.eval_crops: the whole map, or 4 corners + centre and their mirrors


@dataclass(frozen=True)
class MVSettings(FromConfig):
    """Everything that shapes the MV network and its features (each a workflow param;
    defaults: config.yaml's ``mvnet``)."""

    arch: str = default("mvnet", "arch")
    pretrained: bool | str = default("mvnet", "pretrained")
    input_bn: bool = default("mvnet", "input_bn")
    input_size: int = default("mvnet", "input_size")
    segments: int = default("mvnet", "segments")
    eval_segments: int = default("mvnet", "eval_segments")
    eval_crops: int = default("mvnet", "eval_crops")
    max_displacement: float = default("mvnet", "max_displacement")
    input_range: float = default("mvnet", "input_range")
    per_frame: bool = default("mvnet", "per_frame")
    accumulate: bool = default("mvnet", "accumulate")
    optimizer: str = default("mvnet", "optimizer")
    lr: float = default("mvnet", "lr")
    stem_lr_mult: float = default("mvnet", "stem_lr_mult")
    backbone_lr_mult: float = default("mvnet", "backbone_lr_mult")
    eps: float = default("mvnet", "eps")
    weight_decay: float = default("mvnet", "weight_decay")
    epochs: int = default("mvnet", "epochs")
    milestones: tuple[int, ...] = default("mvnet", "milestones")
    gamma: float = default("mvnet", "gamma")
    batch_size: int = default("mvnet", "batch_size")
    cpu_threads: int = default("mvnet", "cpu_threads")
    augment: bool = default("mvnet", "augment")
    augment_scales: tuple[float, ...] | None = default("mvnet", "augment_scales")
    augment_unit: str = default("mvnet", "augment_unit")
    seed: int = 0
    precision: str = default("mvnet", "precision")
    compile: bool = default("mvnet", "compile")
    deterministic: bool = default("mvnet", "deterministic")

    @property
    def eval_views(self) -> int:
        """Network inputs a video at test and feature time: segments x crops."""
        return self.eval_segments * self.eval_crops


def candidate_frames(frame_type: np.ndarray) -> np.ndarray:
    """Frames whose vectors are usable: P-frames (I-frames have none; FFmpeg exports zeros
    for MPEG-4 Part 2 B-frames). Videos without any P-frame fall back to every frame."""
    c = np.flatnonzero(frame_type == P)
    return c if len(c) else np.arange(len(frame_type))


def sample_segments(frame_type: np.ndarray, n_segments: int, rng: np.random.Generator | None) -> np.ndarray:
    """One candidate frame in each of ``n_segments`` equal segments of the video.

    Training (``rng`` given): a random candidate of the segment; evaluation (``rng`` None):
    the candidate nearest the segment's centre. A segment without a candidate takes the
    candidate nearest its centre.
    """
    n = len(frame_type)
    cand = candidate_frames(frame_type)
    edges = np.linspace(0, n, n_segments + 1)
    out = np.empty(n_segments, np.int64)
    for s in range(n_segments):
        inside = cand[(cand >= edges[s]) & (cand < edges[s + 1])]
        centre = (edges[s] + edges[s + 1]) / 2
        if rng is not None and len(inside):
            out[s] = inside[rng.integers(len(inside))]
        else:
            pool = inside if len(inside) else cand
            out[s] = pool[np.argmin(np.abs(pool + 0.5 - centre))]
    return out


def motion_map(
    mv: np.ndarray,
    frame_type: np.ndarray,
    ref_distance: np.ndarray,
    t: int,
    s: MVSettings,
    cell: int = 8,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """float32 [2, Hc, Wc] for frame ``t``: per-frame displacement on the cell grid; or
    [2, H, W] accumulated back to the GOP's I-frame a pixel (CoViAR's trace, frame size
    ``size``); clipped to +-max_displacement px and scaled to +-input_range."""
    if s.accumulate:
        d = accumulate(mv, frame_type, t, cell, size)
    else:
        d = mv[t].astype(np.float32)
        if s.per_frame and ref_distance[t] > 0:
            d = d / float(ref_distance[t])
    m = s.max_displacement
    return np.clip(d, -m, m).transpose(2, 0, 1) / m * np.float32(s.input_range)


def accumulate(mv: np.ndarray, frame_type: np.ndarray, t: int, cell: int, size: tuple[int, int] | None = None):
    """Displacement of each pixel of frame ``t`` since the GOP's I-frame, traced as CoViAR
    does (``coviar_data_loader.c``): a pixel steps back through each P-frame by the
    whole-pixel vector of the block it sits in (the cached vector truncated toward zero,
    as FFmpeg's integer ``src_x``), and stays put where that step would leave the frame.
    float32 [H, W, 2] for the frame size ``size`` (default: the cell grid's). Vectorised
    over the pixels: ~2.6 ms for 11 P-frames at 340x256 on one core; for a whole batch on
    the training device see :func:`accumulate_batch`."""
    hc, wc = mv.shape[1:3]
    h, w = size or (hc * cell, wc * cell)
    y0 = np.repeat(np.arange(h, dtype=np.int32), w)
    x0 = np.tile(np.arange(w, dtype=np.int32), h)
    qy, qx = y0, x0
    for j in range(t, -1, -1):
        if frame_type[j] == I:
            break
        step = np.trunc(mv[j].astype(np.float32)).astype(np.int32).reshape(-1, 2)
        if frame_type[j] != P or not step.any():
            continue
        at = (qy // cell) * wc + qx // cell  # the cell each pixel's trace sits in
        ny, nx = qy - np.take(step[:, 1], at), qx - np.take(step[:, 0], at)
        out = (ny < 0) | (ny >= h) | (nx < 0) | (nx >= w)
        if out.any():
            ny[out], nx[out] = qy[out], qx[out]
        qy, qx = ny, nx
    return np.stack([x0 - qx, y0 - qy], -1).reshape(h, w, 2).astype(np.float32)


def p_frames_back(frame_type: np.ndarray, t: int) -> np.ndarray:
    """The P-frames from ``t`` back to (not including) the GOP's I-frame, latest first: the
    frames a pixel's trace steps back through."""
    j = np.arange(t, -1, -1)
    stop = np.flatnonzero(frame_type[j] == I)
    j = j[: stop[0]] if len(stop) else j
    return j[frame_type[j] == P]


def accumulate_batch(steps: torch.Tensor, cell: int, size: tuple[int, int]) -> torch.Tensor:
    """:func:`accumulate` for a batch on any device, from the cell-grid vectors: ``steps``
    int [N, T, Hc, Wc, 2], the whole-pixel vectors of each segment's P-frames latest first
    (zeros past its last: a zero step moves nothing) -> float32 [N, 2, H, W] (dx, dy). The
    same integer arithmetic as the NumPy trace, so the same numbers on a CPU and a GPU."""
    n, t, hc, wc, _ = steps.shape
    h, w = size
    dev = steps.device
    steps = steps.to(torch.int64)
    y = (torch.arange(hc, device=dev)[:, None] * cell + torch.arange(cell, device=dev)).view(1, hc, cell, 1, 1)
    x = (torch.arange(wc, device=dev)[:, None] * cell + torch.arange(cell, device=dev)).view(1, 1, 1, wc, cell)
    here = (y * w + x).expand(n, hc, cell, wc, cell).reshape(n, hc * cell, wc * cell)[:, :h, :w].reshape(n, -1)
    q = here
    for j in range(t):
        st = steps[:, j]
        ny = y - st[:, :, None, :, None, 1]  # [N, Hc, cell, Wc, 1]
        nx = x - st[:, :, None, :, None, 0]  # [N, Hc, 1, Wc, cell]
        ok = ((ny >= 0) & (ny < h)) & ((nx >= 0) & (nx < w))
        nxt = torch.where(ok, ny * w + nx, y * w + x).reshape(n, hc * cell, wc * cell)[:, :h, :w].reshape(n, -1)
        q = torch.gather(nxt, 1, q)
    qy, qx = torch.div(q, w, rounding_mode="floor"), q % w
    hy, hx = torch.div(here, w, rounding_mode="floor"), here % w
    # (dx, dy) innermost in memory, as the NumPy maps the loader stacks (the same layout: the same kernels after)
    return torch.stack([hx - qx, hy - qy], -1).view(n, h, w, 2).permute(0, 3, 1, 2).float()


def gop_steps(mv: np.ndarray, frame_type: np.ndarray, t: int, length: int) -> np.ndarray:
    """int16 [length, Hc, Wc, 2]: the whole-pixel vectors of the P-frames frame ``t`` traces
    back through, latest first, padded with zeros (see :func:`accumulate_batch`)."""
    frames = p_frames_back(frame_type, t)
    if len(frames) > length:
        raise ValueError(f"{len(frames)} P-frames back to the I-frame, more than {length}")
    out = np.zeros((length, *mv.shape[1:3], 2), np.int16)
    out[: len(frames)] = np.trunc(mv[frames].astype(np.float32))
    return out


def gop_start(frame_type: np.ndarray, t: int) -> int:
    """Index of the I-frame that opens frame ``t``'s GOP (0 when there is none before it)."""
    before = np.flatnonzero(frame_type[: t + 1] == I)
    return int(before[-1]) if len(before) else 0


def read_segments(path: Path | str, n_segments: int, s: MVSettings, rng: np.random.Generator | None) -> np.ndarray:
    """float32 [S, 2, Hc, Wc]: the motion maps of one video's segments (see
    :func:`sample_segments`), reading from its MV cache only the frames they need: one frame
    a segment, or with ``accumulate`` the frames back to the segment's I-frame ([S, 2, H, W]:
    a pixel each). Memory is bounded by the segments, whatever the video's length."""
    with open_cache(path) as f:
        frame_type, ref_distance = f["frame_type"][()], f["ref_distance"][()]
        cell, mv = int(f.attrs["mv_cell"]), f["mv"]
        idx = [int(t) for t in sample_segments(frame_type, n_segments, rng)]
        if s.accumulate:
            size = (int(f.attrs["height"]), int(f.attrs["width"]))
            maps = []
            for t in idx:
                a = gop_start(frame_type, t)
                d = slice(a, t + 1)
                maps.append(motion_map(mv[d], frame_type[d], ref_distance[d], t - a, s, cell, size))
            return np.stack(maps)
        frames = sorted(set(idx))
        held = mv[frames]  # h5py reads just these frames (their chunks)
        at = {t: j for j, t in enumerate(frames)}
        return np.stack([motion_map(held, frame_type[frames], ref_distance[frames], at[t], s, cell) for t in idx])


def read_traces(path: Path | str, n_segments: int, rng: np.random.Generator | None) -> tuple[np.ndarray, int, tuple]:
    """What :func:`read_segments` reads with ``accumulate``, before the trace: each segment's
    whole-pixel vectors back to its I-frame (int16 [S, T, Hc, Wc, 2], T the longest trace
    of the video's segments, :func:`gop_steps`), the cell and the frame size (H, W). The
    same segments for the same ``rng``; :class:`Traces` turns them into the same maps."""
    with open_cache(path) as f:
        frame_type, cell, mv = f["frame_type"][()], int(f.attrs["mv_cell"]), f["mv"]
        size = (int(f.attrs["height"]), int(f.attrs["width"]))
        idx = [int(t) for t in sample_segments(frame_type, n_segments, rng)]
        length = max([1, *(len(p_frames_back(frame_type, t)) for t in idx)])
        out = []
        for t in idx:
            a = gop_start(frame_type, t)
            out.append(gop_steps(mv[a : t + 1], frame_type[a : t + 1], t - a, length))
        return np.stack(out), cell, size


def scale_maps(d: torch.Tensor, s_max: float, s_range: float) -> torch.Tensor:
    """:func:`motion_map`'s clip and scale on any device, in the same float32 arithmetic (a
    true division by a tensor: CUDA divides by a Python scalar as a product with its
    reciprocal, an ulp off)."""
    return d.clamp(-s_max, s_max) / torch.full((), s_max, dtype=torch.float32, device=d.device) * s_range


TRACE_CHUNK = 256  # segments traced at once on the device (a draw batch holds 999)


@dataclass(frozen=True)
class Traces:
    """A batch's accumulated motion as the loader ships it to a GPU (:func:`trace_on_device`):
    each segment's whole-pixel vectors back to its I-frame, ``steps`` int16 [B, S, T, Hc, Wc,
    2] (60 KB a segment at 340x256, GOP 12, against 700 KB of maps), traced on the device by
    ``to``."""

    steps: torch.Tensor
    cell: int
    size: tuple[int, int]  # frame (H, W)
    max_displacement: float
    input_range: float

    def to(self, device: torch.device | str, non_blocking: bool = False) -> torch.Tensor:
        """The maps float32 [B, S, 2, H, W] on ``device``, traced there (:func:`accumulate_batch`):
        the numbers :func:`read_segments` gives. No host sync: on a GPU it only queues work."""
        st = self.steps.to(device, non_blocking=non_blocking)
        parts = st.flatten(0, 1).split(TRACE_CHUNK)  # bounded temporaries: ~40 B a pixel a segment of a chunk
        d = torch.cat([accumulate_batch(c, self.cell, self.size) for c in parts])
        return scale_maps(d, self.max_displacement, self.input_range).view(*st.shape[:2], 2, *self.size)

    def pin_memory(self) -> Traces:  # the DataLoader's pin_memory calls it
        return replace(self, steps=self.steps.pin_memory())

    def on(self, device: torch.device | str) -> Traces:
        """The same batch with its steps on ``device``, still untraced (to keep it there)."""
        return replace(self, steps=self.steps.to(device))

    @property
    def nbytes(self) -> int:
        return self.steps.nbytes


def trace_on_device(s: MVSettings, device: torch.device | str) -> bool:
    """Whether the loader ships :class:`Traces` (traced in the training process on
    ``device``) rather than maps traced per pixel in its workers: with ``accumulate`` on a
    GPU. On a CPU the batched trace is slower a segment than the workers' NumPy one
    (benchmarks/bench_accumulate.py: 12-58 against 1-7 ms), so a CPU job keeps the latter."""
    return s.accumulate and torch.device(device).type != "cpu"


@dataclass(frozen=True)
class MVItem:
    """One video for the motion stream: its MV cache file and label (-1 when unknown)."""

    video_id: str
    path: Path
    label: int = -1


class MVClips(torch.utils.data.Dataset):
    """Videos as TSN samples [S, 2, Hc, Wc], read from their caches by DataLoader workers;
    with ``traces`` (:func:`trace_on_device`), accumulated motion as :class:`Traces`.

    With a ``seed``, each item's segments are drawn from a generator seeded by (seed, epoch,
    index), so a batch is the same whatever the number of workers; without, the segment
    centres (evaluation and features).
    """

    def __init__(
        self,
        items: list[MVItem],
        s: MVSettings,
        segments: int,
        seed: int | None = None,
        by_id: bool = False,
        traces: bool = False,
    ):
        if traces and not s.accumulate:
            raise ValueError("MVClips: traces are of accumulated motion (mvnet.accumulate)")
        self.items, self.s, self.segments, self.seed, self.by_id = items, s, segments, seed, by_id
        self.traces = traces

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor | Traces, int]:
        """Item ``key``: (epoch, index) from :class:`EpochOrder`, or an index (epoch 0). With
        ``by_id`` the draws are keyed by the video's id instead of its index, so that they do
        not depend on which other videos share the dataset (feature draws)."""
        epoch, i = key if isinstance(key, tuple) else (0, key)
        it = self.items[i]
        at = video_key(it.video_id) if self.by_id else i
        rng = None if self.seed is None else np.random.default_rng([self.seed, epoch, at])
        if self.traces:
            steps, cell, size = read_traces(it.path, self.segments, rng)
            s = self.s
            return Traces(torch.from_numpy(steps)[None], cell, size, s.max_displacement, s.input_range), it.label
        return torch.from_numpy(read_segments(it.path, self.segments, self.s, rng)), it.label


def video_key(video_id: str) -> int:
    """A video's stable number for seeding its own draws."""
    return zlib.crc32(video_id.encode("utf-8"))


def resize_maps(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of maps [N, 2, h, w] to [N, 2, size, size]."""
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def _collate(batch: list[tuple[torch.Tensor | Traces, int]], size: int) -> tuple[torch.Tensor | Traces, torch.Tensor]:
    """Stack a batch's maps [B, S, 2, Hc, Wc], or its :class:`Traces` (shorter traces padded
    with zero steps, which move nothing); videos of different grids are resized to the
    network input first (on the CPU: the rare mixed-resolution batch, traced here)."""
    maps = [m for m, _ in batch]
    labels = torch.tensor([y for _, y in batch])
    if isinstance(maps[0], Traces):
        first = maps[0]
        if len({(t.cell, t.size, t.steps.shape[1], t.steps.shape[3:]) for t in maps}) == 1:
            steps = torch.zeros(
                len(maps),
                first.steps.shape[1],
                max(t.steps.shape[2] for t in maps),
                *first.steps.shape[3:],
                dtype=torch.int16,
            )
            for k, t in enumerate(maps):
                steps[k, :, : t.steps.shape[2]] = t.steps[0]
            return replace(first, steps=steps), labels
        maps = [t.to("cpu")[0] for t in maps]
    if len({m.shape for m in maps}) > 1:
        maps = [resize_maps(m, size) for m in maps]
    return torch.stack(maps), labels


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers read and compute maps; the main process owns the cores for the model


class EpochOrder(torch.utils.data.Sampler):
    """A seeded permutation a training epoch, as (epoch, index) keys: set ``epoch`` before each
    pass, and one loader (and its worker processes) serves every epoch."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def __len__(self) -> int:
        return self.n

    def order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch, self.n]).permutation(self.n)

    def __iter__(self):
        return iter([(self.epoch, int(i)) for i in self.order()])


def mv_loader(
    ds: MVClips, batch_size: int, workers: int, order: EpochOrder | None = None, pin: bool = False, batches=None
):
    """A DataLoader over ``ds`` in ``order`` (None: as listed), or in the given ``batches``
    of keys; its workers live as long as it does."""
    sampling = {"batch_sampler": batches} if batches is not None else {"batch_size": batch_size, "sampler": order}
    return torch.utils.data.DataLoader(
        ds,
        **sampling,
        num_workers=workers,
        collate_fn=functools.partial(_collate, size=ds.s.input_size),
        pin_memory=pin,
        worker_init_fn=_worker_init if workers else None,
        persistent_workers=workers > 0,
    )


def kept_budget(device: torch.device | str) -> int:
    """Bytes of inputs :class:`Kept` may hold on ``device``: KEPT_CARD_SHARE of a GPU's
    memory, KEPT_HOST_MB of a CPU job's (its resource estimate counts them)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return int(KEPT_CARD_SHARE * torch.cuda.get_device_properties(dev).total_memory)
    return KEPT_HOST_MB * 2**20


class Kept:
    """A loader's batches read once and kept on ``device`` as the loader gives them (maps, or
    :class:`Traces` with their steps there), for a pass that reads the same inputs every
    time (validation: the segment centres). The first pass reads through the loader; if its
    batches would take more than ``budget`` bytes (default :func:`kept_budget`), every pass
    reads them again, as without it. A kept set lets the loader (and its workers) go."""

    def __init__(self, loader, device: torch.device | str, budget: int | None = None):
        self.loader, self.device = loader, torch.device(device)
        self.budget = kept_budget(self.device) if budget is None else budget
        self.batches: list | None = None
        self.over = False  # the batches did not fit: read every pass

    def __len__(self) -> int:
        return len(self.batches) if self.batches is not None else len(self.loader)

    def __iter__(self):
        if self.batches is not None:
            yield from self.batches
            return
        keeping, kept, size = not self.over, [], 0
        for x, y in self.loader:
            if keeping:
                x = x.on(self.device) if isinstance(x, Traces) else x.to(self.device)
                size += x.nbytes
                kept.append((x, y))
                if size > self.budget:
                    keeping, kept, self.over = False, [], True
                    log.info("validation inputs over %.0f MB on %s: read every epoch", self.budget / 2**20, self.device)
            yield x, y
        if keeping:
            self.batches, self.loader = kept, None
            log.info("validation inputs kept on %s: %.1f MB", self.device, size / 2**20)


def video_status(indexes: list[Path | str]) -> dict[str, str]:
    """video_id -> cache status (``ok`` or ``failed``) from shard indexes: no cache file opened."""
    return {r.video_id: r.status for p in indexes for r in read_index(p)}


def mv_items(rows: list[Video], mv_dirs: list[Path | str]) -> list[MVItem]:
    """Manifest rows as MV items; ``mv_dirs[k]`` is shard k's cache directory."""
    return [MVItem(r.video_id, video_file(mv_dirs[r.shard], r.video_id), r.label) for r in rows]
