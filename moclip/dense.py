"""Dense features of whole videos: windows at a fixed rate in seconds, each with the CLIP
embedding of its centre frame and the MV network's feature over its motion (rule ``dense``).

One decode pass a video streams the frames (:func:`stream_windows`): it keeps only the
motion maps of the windows still open and the frame on screen at each open window's
centre, so memory does not grow with the video's length. Times come from the stream's own
timestamps (``pts * time_base``, seconds from the first frame), never from frame counts, so
a variable frame rate gives the windows of its real times. Window ``k`` spans
``[k * every_s, k * every_s + window_s)``, its end clipped to the video's; its centre frame
is the one on screen at ``start + window_s / 2`` (the last frame shown at or before it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import h5py
import numpy as np
import torch

from moclip.clip.stream import encode_videos
from moclip.io import atomic_path, listed_ids, reading
from moclip.mv.data import motion_map, sample_segments
from moclip.mv.train import load_checkpoint, view_features
from moclip.runtime import Progress, autocast_dtype, log_startup, precision_name, resolve_device, use_threads
from moclip.settings import FromConfig, check_bound, default
from moclip.video.codec import (
    _PICT,
    FRAME_TYPES,
    SINGLE_REF_CODECS,
    UNKNOWN_TYPE,
    DecodeError,
    _codec_id,
    _export_mvs,
    _no_vectors,
    _to_rgb,
    block_columns,
    ffmpeg_message,
    grid_shape,
    open_video,
    output_size,
    rasterize,
)

log = logging.getLogger(__name__)
I, P = FRAME_TYPES["I"], FRAME_TYPES["P"]


@dataclass(frozen=True)
class DenseSettings(FromConfig):
    """Everything that shapes the windows (each a workflow param; defaults: config.yaml's
    ``dense``, the grid of ``decode.mv_cell`` and the frames' size of ``frames.short_side``,
    as the caches the CLIP and MV stages read)."""

    every_s: float = 1.0
    window_s: float = default("dense", "window_s")
    mv_cell: int = default("decode", "mv_cell")
    short_side: int = default("frames", "short_side")
    batch: int = 64  # windows a forward pass (CLIP and MV): changes no number beyond rounding


@dataclass
class Window:
    """One window as the decode pass hands it on. ``mv`` float16 [n, Hc, Wc, 2] with
    ``frame_type`` and ``ref_distance`` [n] are the motion of the frames from ``first`` on
    (those before: back to their GOP's I-frame, for ``mvnet.accumulate``); ``frame`` the
    centre frame, uint8 [h, w, 3] as the frame caches store it."""

    start: float
    end: float
    centre_time: float  # the centre frame's own time
    centre_index: int  # its index in display order
    frame: np.ndarray
    mv: np.ndarray
    frame_type: np.ndarray
    ref_distance: np.ndarray
    first: int
    size: tuple[int, int]  # the video's frame (H, W): the pixel grid of accumulated motion
    cell: int  # pixels a cell of ``mv``


@dataclass
class _Open:
    start: float
    end: float
    centre: float
    shown: tuple | None  # (index, time, av.VideoFrame) on screen at the centre so far


def stream_windows(path: Path | str, settings: DenseSettings, keep_gop: bool = False) -> Iterator[Window]:
    """The windows of ``path`` in order, from one decode pass (see the module docstring).
    ``keep_gop``: each window's motion also holds the frames back to its GOP's I-frame.
    Raises :class:`DecodeError` for a video that cannot be read, has frames without
    timestamps or going back in time, or carries no motion vector (as the caches)."""
    path, s = Path(path), settings
    check_bound("dense.every_s", s.every_s)
    check_bound("dense.window_s", s.window_s)
    with open_video(path) as container:
        stream = container.streams.video[0]
        codec, codec_id = stream.codec_context.name, _codec_id(stream)
        _export_mvs(stream)
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height or not stream.time_base:
            raise DecodeError("video stream has no frame size or time base")
        tb, cell = float(stream.time_base), s.mv_cell
        size = output_size(height, width, s.short_side)
        hc, wc = grid_shape(height, width, cell)
        single_ref = codec_id in SINGLE_REF_CODECS
        reformatter = av.video.reformatter.VideoReformatter()
        mv_type = av.sidedata.sidedata.Type.MOTION_VECTORS
        buf: list[tuple] = []  # (index, time, type, ref distance, map) of the frames open windows may need
        opened: list[_Open] = []
        k_next, pts0, last_t, last_dur, anchor, n_mv = 0, None, -np.inf, 0.0, -1, 0
        types: list[int] = []

        def emit(w: _Open, end: float) -> Window:
            # the window's frames; none (a gap of a variable rate): the one on screen
            inside = [k for k, e in enumerate(buf) if w.start <= e[1] < end] or [len(buf) - 1]
            lo = first = inside[0]
            if keep_gop:
                while lo > 0 and buf[lo][2] != I:
                    lo -= 1
            part = buf[lo : inside[-1] + 1]
            idx, t, frame = w.shown
            return Window(
                start=w.start,
                end=end,
                centre_time=t,
                centre_index=idx,
                frame=_to_rgb(reformatter, frame, size),
                mv=np.stack([e[4] for e in part]),
                frame_type=np.array([e[2] for e in part], np.uint8),
                ref_distance=np.array([e[3] for e in part], np.int16),
                first=first - lo,
                size=(height, width),
                cell=cell,
            )

        def trim() -> None:
            cut = min([w.start for w in opened] or [k_next * s.every_s])
            keep = next((i for i, e in enumerate(buf) if e[1] >= cut), len(buf) - 1)  # the one on screen stays
            if keep_gop:
                while keep > 0 and buf[keep][2] != I:
                    keep -= 1
            del buf[:keep]

        def open_until(t: float) -> None:
            nonlocal k_next
            while k_next * s.every_s <= t:
                start = k_next * s.every_s
                shown = (buf[-1][0], buf[-1][1], prev_frame) if buf else None
                opened.append(_Open(start, start + s.window_s, start + s.window_s / 2, shown))
                k_next += 1

        prev_frame = None
        try:
            for i, frame in enumerate(container.decode(stream)):
                if frame.pts is None:
                    raise DecodeError(f"frame {i} has no timestamp")
                if pts0 is None:
                    pts0 = frame.pts
                t = (frame.pts - pts0) * tb
                if t <= last_t:
                    raise DecodeError(f"frame {i}'s timestamp {t:.6f} s is not after the previous one's")
                if frame.width != width or frame.height != height:
                    raise DecodeError(f"frame {i} is {frame.width}x{frame.height}, stream is {width}x{height}")
                # windows that start by now close when this frame passes their end
                for w in [w for w in opened if w.end <= t]:
                    opened.remove(w)
                    yield emit(w, w.end)
                open_until(t)
                ft = _PICT.get(frame.pict_type, UNKNOWN_TYPE)
                ref = 0
                if ft == P and single_ref and anchor >= 0:
                    ref = i - anchor
                if ft in (I, P):
                    anchor = i
                sd = frame.side_data.get(mv_type)
                if sd is not None and sd.buffer_size:
                    n_mv += 1
                    dtype = sd.to_ndarray().dtype
                    blocks = block_columns(bytes(sd), dtype)
                    at = np.zeros(len(blocks["w"]), np.int64)
                    mv = rasterize(blocks, at, 1, height, width, cell)[0]
                else:
                    mv = np.zeros((hc, wc, 2), np.float16)
                types.append(ft)
                buf.append((i, t, ft, ref, mv))
                for w in opened:
                    if t <= w.centre or w.shown is None:
                        w.shown = (i, t, frame)
                prev_frame = frame
                if frame.duration:
                    last_dur = frame.duration * tb
                elif last_t > -np.inf:
                    last_dur = t - last_t
                last_t = t
                trim()
        except av.error.FFmpegError as e:
            raise DecodeError(f"decoding failed after {len(types)} frames: {ffmpeg_message(e)}") from None
        if not types:
            raise DecodeError("no frame could be decoded")
        if n_mv == 0 and len(types) > 1:
            raise DecodeError(_no_vectors(codec, codec_id, np.asarray(types, np.uint8)))
        end = last_t + (last_dur or 0.0)
        while k_next * s.every_s < end:  # windows starting in the last frame's time on screen
            open_until(k_next * s.every_s)
        for w in opened:
            yield emit(w, min(w.end, end) if end > w.start else w.end)


@dataclass
class DenseVideo:
    """One video's dense features: one row a window."""

    video_id: str
    start: np.ndarray  # float64 [W], seconds from the first frame
    end: np.ndarray  # float64 [W]
    centre_time: np.ndarray  # float64 [W]: the time of the frame CLIP embedded
    centre_index: np.ndarray  # int64 [W]: its index in display order
    clip: np.ndarray  # [W, D_clip], unnormalised (the CLIP stage's dtype)
    mv: np.ndarray  # float32 [W, D_mv]: mean over the window's segments and crops
    motion: np.ndarray  # float32 [W]: mean motion magnitude of the window's P-frames, px a frame


def window_motion(w: Window) -> float:
    """Mean length of the displacement a frame (px) over the window's P-frames' cells (0
    where it has none): a plain reading of how much moves, beside the network's feature."""
    ft, mv, ref = w.frame_type[w.first :], w.mv[w.first :].astype(np.float32), w.ref_distance[w.first :]
    p = np.flatnonzero(ft == P)
    if not len(p):
        return 0.0
    per = np.maximum(ref[p], 1).astype(np.float32)[:, None, None]
    return float((np.linalg.norm(mv[p], axis=-1) / per).mean())


def mv_input(w: Window, s) -> np.ndarray:
    """float32 [S, 2, h, w]: the window's motion as the MV network's input at its evaluation
    segments (``s``: the network's MVSettings), the window read as a video of its own."""
    idx = sample_segments(w.frame_type[w.first :], s.eval_segments, None) + w.first
    maps = [motion_map(w.mv, w.frame_type, w.ref_distance, int(t), s, w.cell, w.size) for t in idx]
    return np.stack(maps)


def dense_video(
    video_id: str, path: Path | str, settings: DenseSettings, clip, net, mv_settings, device, precision: str = "auto"
) -> DenseVideo:
    """:class:`DenseVideo` of ``path``: its windows' centre frames through ``clip`` (a loaded
    :class:`moclip.clip.stream.Clip`, preprocessed as the CLIP stage does) and their motion
    through the frozen ``net`` (``mv_settings``: its checkpoint's), on ``device``, in batches
    of ``settings.batch`` windows; CLIP under ``precision`` (clip.precision's autocast)."""
    amp = autocast_dtype(device, precision)
    rows = {k: [] for k in ("start", "end", "centre_time", "centre_index", "clip", "mv", "motion")}
    pending: list[Window] = []

    def flush() -> None:
        frames = torch.from_numpy(np.stack([w.frame for w in pending]))[:, None]
        with torch.no_grad():
            z = encode_videos(clip, frames, device, amp)[:, 0].cpu().numpy()
            x = torch.from_numpy(np.stack([mv_input(w, mv_settings) for w in pending])).to(device)
            f = view_features(net, x, mv_settings, mv_settings.eval_crops).mean((1, 2)).cpu().numpy()
        rows["clip"].append(z)
        rows["mv"].append(f)
        for w in pending:
            rows["start"].append(w.start)
            rows["end"].append(w.end)
            rows["centre_time"].append(w.centre_time)
            rows["centre_index"].append(w.centre_index)
            rows["motion"].append(window_motion(w))
        pending.clear()

    for w in stream_windows(path, settings, keep_gop=mv_settings.accumulate):
        pending.append(w)
        if len(pending) >= settings.batch:
            flush()
    if pending:
        flush()
    return DenseVideo(
        video_id=video_id,
        start=np.asarray(rows["start"], np.float64),
        end=np.asarray(rows["end"], np.float64),
        centre_time=np.asarray(rows["centre_time"], np.float64),
        centre_index=np.asarray(rows["centre_index"], np.int64),
        clip=np.concatenate(rows["clip"]).astype(np.float32),
        mv=np.concatenate(rows["mv"]).astype(np.float32),
        motion=np.asarray(rows["motion"], np.float32),
    )


# --------------------------------------------------------------------------- shard files

ROWS = ("start", "end", "centre_time", "centre_index", "clip", "mv", "motion")  # one row a window


def write_dense(out: Path | str, videos: list[tuple[str, DenseVideo | str]], clip_dim: int, mv_dim: int, **attrs):
    """One shard file, atomically: ``video_id`` [N], ``error`` [N] ('' for a video that
    worked, else why it failed: it has no rows, never zeros), ``offset`` [N + 1] (video i's
    windows are rows ``offset[i]:offset[i + 1]``) and the rows' datasets (:data:`ROWS`),
    the numbers with Fletcher-32 checksums; ``attrs`` name what made them."""
    ok = [v for _, v in videos if isinstance(v, DenseVideo)]
    counts = [len(v.start) if isinstance(v, DenseVideo) else 0 for _, v in videos]
    empty = {
        "start": np.zeros(0),
        "end": np.zeros(0),
        "centre_time": np.zeros(0),
        "centre_index": np.zeros(0, np.int64),
        "clip": np.zeros((0, clip_dim), np.float32),
        "mv": np.zeros((0, mv_dim), np.float32),
        "motion": np.zeros(0, np.float32),
    }
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h:
        text = h5py.string_dtype()
        h.create_dataset("video_id", data=np.array([i for i, _ in videos], dtype=object), dtype=text)
        errors = [v if isinstance(v, str) else "" for _, v in videos]
        h.create_dataset("error", data=np.array(errors, dtype=object), dtype=text)
        h.create_dataset("offset", data=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
        for k in ROWS:
            data = np.concatenate([getattr(v, k) for v in ok]) if ok else empty[k]
            h.create_dataset(k, data=data, fletcher32=True)
        h.attrs.update(attrs)


@dataclass
class DenseShard:
    """One dense shard file: the videos that worked, in its order, and why the others failed."""

    videos: list[DenseVideo]
    failed: dict[str, str]  # video_id -> error


def read_dense(path: Path | str) -> DenseShard:
    """One dense shard file, opened once: each video that worked with its windows' rows
    (:class:`DenseVideo`: ``video_id, start, end, centre_time, centre_index, clip, mv,
    motion``), and the others named with their errors."""
    with reading(path), h5py.File(path, "r") as h:
        ids = [v.decode() if isinstance(v, bytes) else v for v in h["video_id"][()]]
        errors = [v.decode() if isinstance(v, bytes) else v for v in h["error"][()]]
        off = h["offset"][()]
        rows = {k: h[k][()] for k in ROWS}
    videos = [
        DenseVideo(i, **{k: rows[k][off[n] : off[n + 1]] for k in ROWS})
        for n, (i, err) in enumerate(zip(ids, errors))
        if not err
    ]
    return DenseShard(videos, {i: e for i, e in zip(ids, errors) if e})


# --------------------------------------------------------------------------- the stage


def dense(
    *,
    videos: list[Path | str],
    manifest: Path | str,
    model: Path | str,
    out: Path | str,
    videos_root: Path | str,
    settings: DenseSettings,
    clip,
    device: str = "auto",
    threads: int = 1,
) -> dict[str, str]:
    """Rule ``dense``: every video of one shard (``videos``, ids from the ``manifest``) into
    the shard file ``out``, its CLIP rows from ``clip`` (a :class:`moclip.clip.stream
    .ClipSettings`, the CLIP stage's) and its motion from the frozen MV network ``model``
    (a checkpoint of train_mvnet), both on ``device``; torch computes with clip.cpu_threads
    threads on the CPU. A video that cannot be read is named in the file and the log, with
    no rows. Returns the failures."""
    use_threads(clip.cpu_threads, "clip.cpu_threads", threads)
    dev = resolve_device(device)
    model_clip = clip.load()
    model_clip.model.to(dev)
    net, mv_settings, meta = load_checkpoint(model)
    net.to(dev)
    ids = listed_ids(manifest, videos, videos_root)
    done: list[tuple[str, DenseVideo | str]] = []
    progress = Progress("videos", len(ids), log)
    windows = 0
    for video, vid in zip(videos, ids):
        try:
            d = dense_video(vid, video, settings, model_clip, net, mv_settings, dev, clip.precision)
            done.append((vid, d))
            windows += len(d.start)
        except DecodeError as e:
            log.warning("failed video %s (%s): %s", vid, video, e)
            done.append((vid, str(e)))
        log_startup(log)
        progress.update(note=f"{windows} windows")
    progress.close()
    write_dense(
        out,
        done,
        model_clip.model.visual.output_dim,
        net.backbone.num_features,
        settings=json.dumps(asdict(settings)),
        clip_settings=json.dumps(asdict(clip)),
        clip_model=model_clip.name,
        clip_weights_digest=model_clip.weights_digest,
        mv_arch=mv_settings.arch,
        mv_model=str(model),
        mv_split=int(meta.get("split", -1) or -1),
        device=dev.type,
        precision=precision_name(autocast_dtype(dev, clip.precision)),
    )
    return {i: v for i, v in done if isinstance(v, str)}
