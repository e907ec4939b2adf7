"""One PyAV decode pass: motion vectors rasterised on a cell grid, and K RGB frames.

Motion vectors come from FFmpeg's ``flags2=+export_mvs``. For a block whose content came
from a past reference, FFmpeg gives ``src = dst + motion / motion_scale``, so the content
moved by ``dst - src = -motion / scale`` from the reference to this frame. Vectors that
point to a future reference (B-frames) are negated, so every stored vector is the
displacement *forward in time*: an object moving right gives ``dx > 0`` in every frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from moclip.settings import FromConfig, default

# Whether a video has motion vectors is decided by what its decode exports (decode_video,
# exports_motion_vectors), never by the codec's name: FFmpeg's decoder names are not its
# codec ids (MS-MPEG-4 v3 decodes as "msmpeg4"), and a codec that usually has vectors can be
# coded intra-only. What names do hold is semantics: codecs (FFmpeg codec ids, the
# ``canonical_name``) whose P-frames always predict from the previous anchor (I or P) in
# display order, so the reference distance is certain. Any other (H.264 may use any of
# several references and does not export which; a name not listed) records it as unknown (0).
SINGLE_REF_CODECS = frozenset(
    {
        "mpeg4",
        "mpeg1video",
        "mpeg2video",
        "h261",
        "h263",
        "h263p",
        "h263i",
        "flv1",
        "msmpeg4v1",
        "msmpeg4v2",
        "msmpeg4v3",
        "wmv1",
        "wmv2",
    }
)
FRAME_TYPES = {"I": ord("I"), "P": ord("P"), "B": ord("B")}
UNKNOWN_TYPE = ord("?")


class DecodeError(RuntimeError):
    """A video that cannot be decoded into motion vectors and frames."""


def ffmpeg_message(e: av.error.FFmpegError) -> str:
    """FFmpeg's words for an error, without PyAV's raw error number ("[Errno 1094995529]")
    or the path (the caller names the video), plus FFmpeg's last log line where it kept one."""
    msg = e.strerror or type(e).__name__
    log = getattr(e, "log", None)  # (level, component, message)
    if log and str(log[-1]).strip():
        msg += f" ({str(log[-1]).strip()})"
    return msg


@dataclass(frozen=True)
class DecodeSettings(FromConfig):
    """Everything that shapes a cache: each field reaches the workflow as a param (defaults:
    config.yaml's ``decode``, and its ``frames`` for the frames' fields)."""

    mv_cell: int = default("decode", "mv_cell")
    frame_count: int = default("frames", "count")
    short_side: int = default("frames", "short_side")
    max_frames: int = default("decode", "max_frames")
    chunk: int = 256  # frames rasterised and handed on at a time (fewer on large frames): bounds memory


@dataclass
class DecodedVideo:
    """What one pass yields besides the motion maps (which are streamed to a callback)."""

    width: int
    height: int
    fps: float
    codec: str
    n_frames: int
    truncated: bool
    frame_type: np.ndarray  # uint8 [T], ASCII of I/P/B or '?'
    ref_distance: np.ndarray  # int16 [T], frames back to the reference of the vectors; 0 = none/unknown
    frames: np.ndarray  # uint8 [K, h, w, 3]
    frame_index: np.ndarray  # int32 [K]
    n_mv_frames: int  # frames that carried at least one vector
    second_pass: bool = False  # True when the container's frame count was wrong and frames were re-read
    notes: list[str] = field(default_factory=list)
    # float64 [T]: each decoded frame's presentation time, seconds from the first (NaN: no pts)
    timestamps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    measured_fps: float = 0.0  # (T - 1) / the span of the timestamps: the real rate of a VFR video
    frames_left_out: int = 0  # frames after the first max_frames, not read (truncated): the stream's packets


def measured_rate(timestamps: np.ndarray, nominal: float) -> float:
    """Frames a second over the decoded frames' timestamps ((n - 1) / span of the valid
    ones); ``nominal`` where fewer than two frames carry a time or they span none."""
    t = timestamps[np.isfinite(timestamps)]
    span = float(t.max() - t.min()) if len(t) > 1 else 0.0
    return (len(t) - 1) / span if span > 0 else nominal


def segment_centres(n_frames: int, k: int) -> np.ndarray:
    """Indices of the centres of ``k`` equal segments of ``n_frames`` (repeats when n < k)."""
    if n_frames <= 0:
        return np.zeros(0, dtype=np.int32)
    return np.minimum(((np.arange(k) + 0.5) * n_frames / k).astype(np.int64), n_frames - 1).astype(np.int32)


def grid_shape(height: int, width: int, cell: int) -> tuple[int, int]:
    return -(-height // cell), -(-width // cell)


def output_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(h, w) with the aspect kept and the shorter side at most ``short_side``."""
    scale = min(1.0, short_side / min(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


_FIELDS = ("source", "w", "h", "dst_x", "dst_y", "motion_x", "motion_y", "motion_scale")


def block_columns(raw: bytes | bytearray, dtype: np.dtype) -> dict[str, np.ndarray]:
    """Numeric columns (strided views, no copy) of FFmpeg's MV records packed in ``raw``.

    Field access on FFmpeg's aligned 40-byte records through a structured array is slow;
    viewing the same bytes as integer columns is not.
    """
    rows = np.frombuffer(raw, np.uint8).reshape(-1, dtype.itemsize)
    out = {}
    for name in _FIELDS:
        fdt, off = dtype.fields[name][:2]
        if off % fdt.itemsize:  # unaligned field: copy it out
            out[name] = np.ascontiguousarray(rows[:, off : off + fdt.itemsize]).view(fdt).ravel()
        else:
            out[name] = rows.view(fdt)[:, off // fdt.itemsize]
    return out


def _aligned_unit(w: np.ndarray, h: np.ndarray, x0: np.ndarray, y0: np.ndarray, cell: int) -> int:
    """The coarsest of ``2 * cell`` and ``cell`` that every block's size and corner are
    multiples of (0 when neither): on such a unit each block covers whole units."""
    for unit in (2 * cell, cell):
        if unit & (unit - 1) == 0:  # a power of two: one test on the low bits of all four
            misaligned = ((w | h | x0 | y0) & (unit - 1)).any()
        else:
            misaligned = ((w % unit) | (h % unit) | (x0 % unit) | (y0 % unit)).any()
        if not misaligned:
            return unit
    return 0


def rasterize(blocks, frame_of_block: np.ndarray, n: int, height: int, width: int, cell: int) -> np.ndarray:
    """Average forward displacements of MV blocks onto a ``cell``-pixel grid: float16 [n, Hc, Wc, 2].

    ``blocks`` maps FFmpeg's field names (``w, h, dst_x, dst_y, motion_x, motion_y,
    motion_scale, source``) to arrays: a structured array or :func:`block_columns`.
    Vectorised over all blocks of ``n`` frames. A block covers the cells its pixels touch;
    where several blocks share a cell their vectors are averaged, weighted by the overlap.
    Cells without any vector (intra blocks, I-frames) are 0. When every block is aligned
    to twice the cell (MPEG-4's 16x16 macroblocks on 8-pixel cells), the work is done on
    that coarser grid and repeated: the same numbers, a quarter of the work.
    """
    hc, wc = grid_shape(height, width, cell)
    w = blocks["w"].astype(np.int32)
    h = blocks["h"].astype(np.int32)
    x0 = blocks["dst_x"].astype(np.int32) - w // 2
    y0 = blocks["dst_y"].astype(np.int32) - h // 2
    unit = _aligned_unit(w, h, x0, y0, cell)
    exact = unit > 0  # every block covers whole units, so all weights are equal
    unit = unit or cell
    hu, wu = grid_shape(height, width, unit)
    size = n * hu * wu
    ux0, uy0 = x0 // unit, y0 // unit
    base = frame_of_block.astype(np.int64) * (hu * wu)
    # Each (block, unit it covers) pair: its flat unit index, its block (k; None: the
    # identity) and, where blocks cover units partly, the pixels it covers there (area).
    if exact and not ((w ^ unit) | (h ^ unit)).any():  # one unit a block: the common case
        inside = (ux0 >= 0) & (ux0 < wu) & (uy0 >= 0) & (uy0 < hu)
        k = None if inside.all() else np.flatnonzero(inside)
        flat = base + uy0 * wu + ux0
        if k is not None:
            flat = flat[k]
        area = None
    else:
        flat, k, area = _block_units(w, h, x0, y0, ux0, uy0, base, unit, hu, wu, exact)
    counts = np.bincount(flat, weights=area, minlength=size)
    # Only moving blocks add to the sums (most blocks are static).
    mx, my = blocks["motion_x"], blocks["motion_y"]
    moving = (mx != 0) | (my != 0)
    sel = np.flatnonzero(moving if k is None else moving[k])
    blk = sel if k is None else k[sel]
    # Past reference: moved by -motion/scale; future reference: negated to point forward in time.
    scale = np.where(blocks["source"][blk] > 0, 1.0, -1.0).astype(np.float32) / np.maximum(
        blocks["motion_scale"][blk], 1
    )
    dx, dy = scale * mx[blk], scale * my[blk]
    if area is not None:
        dx, dy = area[sel] * dx, area[sel] * dy
    out = np.empty((size, 2), np.float32)
    out[:, 0] = np.bincount(flat[sel], weights=dx, minlength=size)
    out[:, 1] = np.bincount(flat[sel], weights=dy, minlength=size)
    out *= (1.0 / np.maximum(counts, 1e-9)).astype(np.float32)[:, None]  # empty cells stay 0
    # To float16 on the unit grid, then each unit copied onto its r x r cells: converting
    # after the copy would convert r*r times as many values.
    out = out.reshape(n, hu, wu, 2).astype(np.float16)
    if unit == cell:
        return out
    r = unit // cell
    pairs = out.view(np.uint32)[..., 0]  # each (dx, dy) pair moved as one 4-byte word: ~10x faster
    full = np.repeat(np.repeat(pairs, r, axis=2), r, axis=1).view(np.float16).reshape(n, hu * r, wu * r, 2)
    return full if (hu * r, wu * r) == (hc, wc) else np.ascontiguousarray(full[:, :hc, :wc])


def _block_units(w, h, x0, y0, ux0, uy0, base, unit: int, hu: int, wu: int, exact: bool):
    """(flat unit index, block, area or None) of every unit each block covers, inside the grid."""
    nx, ny = (x0 + w - 1) // unit - ux0 + 1, (y0 + h - 1) // unit - uy0 + 1
    idx, sel, area = [], [], []
    for oy in range(int(ny.max(initial=0))):
        for ox in range(int(nx.max(initial=0))):
            cx, cy = ux0 + ox, uy0 + oy
            k = np.flatnonzero((ox < nx) & (oy < ny) & (cx >= 0) & (cx < wu) & (cy >= 0) & (cy < hu))
            cx, cy = cx[k], cy[k]
            idx.append(base[k] + cy * wu + cx)
            sel.append(k)
            if not exact:  # pixels of the block inside this unit
                ovx = np.minimum(x0[k] + w[k], (cx + 1) * unit) - np.maximum(x0[k], cx * unit)
                ovy = np.minimum(y0[k] + h[k], (cy + 1) * unit) - np.maximum(y0[k], cy * unit)
                area.append((ovx * ovy).astype(np.float32))
    if not idx:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), None
    return np.concatenate(idx), np.concatenate(sel), (np.concatenate(area) if area else None)


_PICT = {int(t): FRAME_TYPES.get(t.name, UNKNOWN_TYPE) for t in av.video.frame.PictureType}
_CELL_BUDGET = 1 << 20  # grid cells rasterised at once: bounds memory whatever the frame size


def reference_distance(types: np.ndarray, single_ref: bool) -> np.ndarray:
    """Frames from each P-frame back to its reference, where the codec makes it certain (else 0).

    For single-reference codecs a P-frame predicts from the previous I or P frame in display
    order, so B-frames in between lengthen the distance.
    """
    out = np.zeros(len(types), np.int16)
    if not single_ref:
        return out
    anchors = np.flatnonzero((types == FRAME_TYPES["I"]) | (types == FRAME_TYPES["P"]))
    p = np.flatnonzero(types == FRAME_TYPES["P"])
    j = np.searchsorted(anchors, p) - 1
    ok = j >= 0
    out[p[ok]] = p[ok] - anchors[j[ok]]
    return out


def open_video(path: Path):
    """The container of a video file, or :class:`DecodeError` saying why it cannot be read."""
    try:
        size = path.stat().st_size
    except OSError as e:  # missing, unreadable: a bad input named by the caller, not a crash
        raise DecodeError(f"cannot read: {e.strerror or e}") from None
    if not path.is_file():
        raise DecodeError("not a file")
    if size == 0:
        raise DecodeError("empty file (0 bytes)")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise DecodeError(f"cannot open: {ffmpeg_message(e)}") from None
    if not container.streams.video:
        container.close()
        raise DecodeError("no video stream")
    return container


def declared_frames(stream) -> int:
    if stream.frames:
        return int(stream.frames)
    if stream.duration and stream.time_base and stream.average_rate:
        return int(round(float(stream.duration * stream.time_base * stream.average_rate)))
    return 0


def is_truncated(n_frames: int, declared: int) -> bool:
    """Fewer frames decoded than the container declares, by more than 2% (and one frame)."""
    return bool(declared) and n_frames < declared - max(1, declared // 50)


def _to_rgb(reformatter, frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    return reformatter.reformat(frame, width=w, height=h, format="rgb24", interpolation="AREA").to_ndarray()


def _read_frames(path: Path, wanted: set[int]) -> dict[int, av.VideoFrame]:
    """Second pass: the decoded frames at ``wanted`` display indices (no vectors)."""
    out: dict[int, av.VideoFrame] = {}
    with open_video(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        last = max(wanted)
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                out[i] = frame
            if i >= last:
                break
    return out


def count_packets(path: Path) -> int:
    """The video stream's packets that carry data, demuxed and not decoded (one a frame, in
    AVI, MP4 and Matroska alike): the frames of a video read only in part, at a fraction of a decode."""
    with open_video(path) as container:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size)


def _codec_id(stream) -> str:
    """FFmpeg's name of the stream's codec (``msmpeg4v3``), not its decoder's (``msmpeg4``)."""
    return stream.codec_context.codec.canonical_name


def _export_mvs(stream) -> None:
    """Ask the decoder for motion vectors, one thread (frame threads lose B-frames' vectors)."""
    stream.codec_context.options = {"flags2": "+export_mvs"}
    stream.codec_context.thread_count = 1


def _no_vectors(codec: str, codec_id: str, frame_type: np.ndarray) -> str:
    """Why a video of more than one frame decoded without a single motion vector."""
    name = repr(codec_id) + ("" if codec == codec_id else f" (decoder {codec!r})")
    n = len(frame_type)
    intra = int((frame_type == FRAME_TYPES["I"]).sum())
    why = (
        f"all {n} frames are intra-coded (an intra-only stream)"
        if intra == n
        else f"{n - intra} of its {n} frames are not intra-coded, but FFmpeg exports no vectors for this codec"
    )
    return (
        f"codec {name} exported no motion vectors: {why}; "
        "set decode.reencode_unsupported: true to re-encode such videos to MPEG-4 Part 2"
    )


def exports_motion_vectors(path: Path | str, max_frames: int = DecodeSettings.max_frames) -> bool:
    """Whether :func:`decode_video` finds motion vectors in ``path`` (reading ``max_frames``
    frames at most), decided as it decides: by the frames' side data, whatever the codec.

    Cheap for a video that has them: it stops at the first frame that carries any (the
    first P-frame), however many intra frames come before it. A video of one frame counts
    as having them (it has no motion to carry, and decodes). Raises :class:`DecodeError`
    for a file that cannot be read.
    """
    mv_type = av.sidedata.sidedata.Type.MOTION_VECTORS
    n = 0
    with open_video(Path(path)) as container:
        stream = container.streams.video[0]
        _export_mvs(stream)
        try:
            for frame in container.decode(stream):
                sd = frame.side_data.get(mv_type)
                if sd is not None and sd.buffer_size:
                    return True
                n += 1
                if n >= max_frames:
                    break
        except av.error.FFmpegError as e:
            raise DecodeError(f"decoding failed after {n} frames: {ffmpeg_message(e)}") from None
    return n <= 1


def decode_video(path: Path | str, settings: DecodeSettings, on_mv: Callable[[np.ndarray], None]) -> DecodedVideo:
    """Decode ``path`` once; stream float16 MV maps to ``on_mv`` in chunks; return the rest.

    Raises :class:`DecodeError` with the decoder's message for anything that cannot be read,
    and with the reason for a video of more than one frame none of which carried a motion
    vector (an intra-only stream, or a codec whose vectors FFmpeg does not export: MJPEG,
    VP8/VP9, AV1, HEVC): never maps of zeros in place of motion.
    """
    path = Path(path)
    with open_video(path) as container:
        stream = container.streams.video[0]
        codec, codec_id = stream.codec_context.name, _codec_id(stream)
        _export_mvs(stream)
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise DecodeError("video stream has no frame size")
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        declared = declared_frames(stream)
        cell, limit = settings.mv_cell, settings.max_frames
        size = output_size(height, width, settings.short_side)
        guess = set(segment_centres(min(declared, limit), settings.frame_count).tolist()) if declared else set()
        hc, wc = grid_shape(height, width, cell)
        batch = max(1, min(settings.chunk, _CELL_BUDGET // (hc * wc)))
        # Frames to keep, converted to RGB after the loop: converting inside it evicts the
        # decoder's working set from the CPU caches (~5% of the decode, measured).
        kept: dict[int, av.VideoFrame] = {}
        types: list[int] = []
        pending: list[bytes] = []  # raw MV records of each frame not yet rasterised (joined once a chunk)
        pending_at: list[int] = []  # frame of each record batch
        pending_n: list[int] = []
        mv_dtype = None
        chunk_start, n_mv, truncated = 0, 0, False
        pts: list[float] = []  # each frame's presentation time in the stream's time base (NaN: none)
        mv_type = av.sidedata.sidedata.Type.MOTION_VECTORS
        pict = _PICT

        def flush(end: int) -> None:
            nonlocal chunk_start, pending, pending_at, pending_n
            n = end - chunk_start
            if pending:
                at = np.repeat(np.asarray(pending_at) - chunk_start, pending_n)
                on_mv(rasterize(block_columns(b"".join(pending), mv_dtype), at, n, height, width, cell))
            else:
                on_mv(np.zeros((n, hc, wc, 2), np.float16))
            chunk_start, pending, pending_at, pending_n = end, [], [], []

        try:
            for i, frame in enumerate(container.decode(stream)):
                if i >= limit:
                    truncated = True
                    break
                if frame.width != width or frame.height != height:
                    raise DecodeError(f"frame {i} is {frame.width}x{frame.height}, stream is {width}x{height}")
                types.append(pict.get(frame.pict_type, UNKNOWN_TYPE))
                pts.append(np.nan if frame.pts is None else frame.pts)
                sd = frame.side_data.get(mv_type)
                if sd is not None and sd.buffer_size:
                    if mv_dtype is None:
                        mv_dtype = sd.to_ndarray().dtype
                    n_mv += 1
                    pending.append(bytes(sd))  # a growing bytearray would be copied again at each resize
                    pending_at.append(i)
                    pending_n.append(sd.buffer_size // mv_dtype.itemsize)
                if i in guess:
                    kept[i] = frame
                if i + 1 - chunk_start >= batch:
                    flush(i + 1)
        except av.error.FFmpegError as e:
            raise DecodeError(f"decoding failed after {len(types)} frames: {ffmpeg_message(e)}") from None
        n_frames = len(types)
        if n_frames == 0:
            raise DecodeError("no frame could be decoded")
        if chunk_start < n_frames:
            flush(n_frames)
    if not truncated and is_truncated(n_frames, declared):
        raise DecodeError(f"truncated or corrupt: decoded {n_frames} of the {declared} frames the container declares")
    frame_type = np.asarray(types, np.uint8)
    if n_mv == 0 and n_frames > 1:
        raise DecodeError(_no_vectors(codec, codec_id, frame_type))

    tb = float(stream.time_base) if stream.time_base else 0.0
    stamps = (
        (np.asarray(pts, np.float64) - np.nanmin(pts)) * tb
        if tb and np.isfinite(pts).any()
        else np.full(n_frames, np.nan)
    )
    measured = measured_rate(stamps, fps)
    notes, left_out = [], 0
    if fps and abs(measured - fps) > 0.05 * fps:
        notes.append(f"variable or mislabelled frame rate: {measured:.2f} fps measured, {fps:g} nominal")
    if truncated:  # at least the frame past the limit, decoded and dropped
        left_out = max(1, count_packets(path) - n_frames)
        notes.append(f"read the first {limit} frames only (decode.max_frames): {left_out} frames left out")
    index = segment_centres(n_frames, settings.frame_count)
    missing = set(index.tolist()) - kept.keys()
    second = bool(missing)
    if second:
        notes.append(f"container declared {declared} frames, decoded {n_frames}: frames re-read in a second pass")
        kept.update(_read_frames(path, missing))
    reformatter = av.video.reformatter.VideoReformatter()
    frames = np.stack([_to_rgb(reformatter, kept[i], size) for i in index.tolist()])
    return DecodedVideo(
        width=width,
        height=height,
        fps=fps,
        codec=codec,
        n_frames=n_frames,
        truncated=truncated,
        frame_type=frame_type,
        ref_distance=reference_distance(frame_type, codec_id in SINGLE_REF_CODECS),
        frames=frames,
        frame_index=index,
        n_mv_frames=n_mv,
        second_pass=second,
        notes=notes,
        timestamps=stamps,
        measured_fps=measured,
        frames_left_out=left_out,
    )


def reencoded_file(out_dir: Path | str, video_id: str) -> Path:
    """A video's re-encoded file in a shard's directory (rule reencode_shard's, read by the cache)."""
    return Path(out_dir) / f"{video_id}.avi"
