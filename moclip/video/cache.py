"""Per-video HDF5 caches of motion vectors and frames, written shard by shard.

A shard's videos get one file each in an MV directory and a frame directory
(``<video_id>.h5``: :func:`video_file`), and the shard an index table (one status line a
video). Every file is written to a temp name and renamed, so a killed job never leaves a
file that looks complete. A video that
cannot be decoded gets files with ``status=failed`` and the decoder's message; it is
listed by name, never replaced by zeros.

A frame cache holds its K RGB frames as :class:`FrameStorage` says (config ``frames``):
JPEG, all frames' bytes in one uint8 dataset ``frames_jpeg`` cut where ``frame_ends``
int64 [K] say (frame k: bytes ``frame_ends[k-1]``, 0 for the first, to ``frame_ends[k]``),
or raw, ``frames`` uint8 [K, H, W, 3]; its attrs ``encoding``,
``frame_height`` and ``frame_width`` say which and at what size (a file without
``encoding``, written before JPEG, is raw). :mod:`moclip.video.frames` reads either back.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import av
import h5py
import hdf5plugin  # registers the LZ4 and Zstd HDF5 filters: import this module before reading a cache
import numpy as np
import PIL.Image
from h5py import h5a, h5s, h5t

from moclip.io import atomic_path, listed_ids, one_line, read_tsv, reading, rebuild, relative_to, write_tsv
from moclip.runtime import Progress, map_videos
from moclip.settings import FromConfig, check_bound, default, did_you_mean
from moclip.video.codec import DecodedVideo, DecodeError, DecodeSettings, decode_video, ffmpeg_message, reencoded_file

log = logging.getLogger(__name__)
INDEX_COLUMNS = ("video_id", "path", "status", "n_frames", "error", "reencoded", "frames_left_out")
FAILURE_COLUMNS = ("video_id", "path", "error")
REENCODED_COLUMNS = ("video_id", "path", "status", "error")
CUT_COLUMNS = ("video_id", "path", "n_frames", "frames_left_out")  # read only up to decode.max_frames
_CHUNK_BYTES = 512 * 1024  # HDF5 chunk of the MV maps: a few hundred KB reads and compresses well
_HOLD_BYTES = 64 << 20  # MV maps of one video held in memory before streaming to the file
# HDF5 filter of the MV maps (config cache.compression). The maps are mostly zeros and
# repeated values: LZ4 makes them 5-6x smaller on camera footage (~15x on the demo) at
# about the cost of writing them raw, the same size as lzf, and a cache file reads ~2.7x
# faster than with lzf (benchmarks/bench_cache.py).
COMPRESSION: dict[str, dict] = {
    "lz4": dict(hdf5plugin.LZ4()),
    "zstd": dict(hdf5plugin.Zstd(clevel=1)),  # about half the size of lz4, a little slower
    "lzf": {"compression": "lzf"},
    "gzip": {"compression": "gzip"},
    "none": {},
}
_STR = h5py.string_dtype()
ENCODINGS = ("jpeg", "raw")  # config frames.encoding
# JPEG frames: one dataset of every frame's bytes and one of where each ends, not a variable-length
# dataset of one element a frame: of 300 files of 8 camera frames (456 KB), the first reads
# in 0.23-0.24 ms against 0.29 and writes in 0.39-0.46 ms against 0.79-0.90 (h5py 3, one core).
JPEG_DATASET, ENDS_DATASET = "frames_jpeg", "frame_ends"
# Every array of a cache carries HDF5's Fletcher-32 checksum (as the shards do), checked by
# HDF5 on every read: a flipped byte is a read error naming the file, never a silently
# wrong frame (libjpeg decodes a damaged JPEG with a warning on stderr only).
CHECKED = {"fletcher32": True}


@dataclass(frozen=True)
class FrameStorage(FromConfig):
    """How a frame cache stores its frames (config.yaml's ``frames.encoding`` and
    ``frames.jpeg_quality``): ``jpeg`` at ``jpeg_quality`` (1-100), or ``raw`` uint8."""

    encoding: str = default("frames", "encoding")
    jpeg_quality: int = default("frames", "jpeg_quality")

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(
                f"frames.encoding: unknown {self.encoding!r}{did_you_mean(self.encoding, ENCODINGS)} "
                f"(one of {', '.join(ENCODINGS)})"
            )
        check_bound("frames.jpeg_quality", self.jpeg_quality)


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    """One uint8 RGB frame [H, W, 3] as JPEG (4:2:0, libjpeg-turbo through Pillow: the same
    bytes as ``torchvision.io.encode_jpeg``, measured, without importing torch into every
    cache job). Deterministic."""
    out = io.BytesIO()
    PIL.Image.fromarray(frame).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def write_frames(f: h5py.File, frames: np.ndarray, storage: FrameStorage) -> dict:
    """Frames uint8 [K, H, W, 3] into open frame cache ``f`` as ``storage`` says; returns
    the attrs that say how (``encoding``, ``frame_height``, ``frame_width``, ``jpeg_quality``: 0 if raw)."""
    _, h, w, _ = frames.shape
    if storage.encoding == "raw":
        f.create_dataset(
            "frames", data=frames, **_checked(frames)
        )  # LZ4 would shrink camera frames 1.5x at 5x the time
        return dict(encoding="raw", frame_height=h, frame_width=w, jpeg_quality=0)
    jpegs = [encode_jpeg(x, storage.jpeg_quality) for x in frames]
    payload = np.frombuffer(b"".join(jpegs), np.uint8)
    f.create_dataset(JPEG_DATASET, data=payload, **_checked(payload))
    ends = np.cumsum([len(x) for x in jpegs], dtype=np.int64)
    f.create_dataset(ENDS_DATASET, data=ends, **_checked(ends))
    return dict(encoding="jpeg", frame_height=h, frame_width=w, jpeg_quality=storage.jpeg_quality)


def _checked(data: np.ndarray, chunk: tuple[int, ...] | None = None) -> dict:
    """The checksum filter for an array, in one chunk (or ``chunk``): h5py's guessed chunks
    of a 100 KB JPEG payload made its read 3x slower. HDF5 cannot chunk, so cannot check,
    an empty array."""
    return {**CHECKED, "chunks": chunk or data.shape} if data.size and CHECKED else {}


def video_file(cache_dir: Path | str, video_id: str) -> Path:
    """A video's cache file in a shard's MV or frame directory."""
    return Path(cache_dir) / f"{video_id}.h5"


@dataclass(frozen=True)
class CacheRecord:
    """One line of a shard index."""

    video_id: str
    path: str
    status: str
    n_frames: int
    error: str
    reencoded: bool = False  # the cache was made from the video's re-encode (rule reencode_shard)
    frames_left_out: int = 0  # frames after decode.max_frames, not read (n_frames were)


def _common_attrs(video_id: str, dec: DecodedVideo | None, cell: int, error: str) -> dict:
    if dec is None:
        return dict(
            video_id=video_id,
            status="failed",
            error=error,
            width=0,
            height=0,
            fps=0.0,
            measured_fps=0.0,
            codec="",
            n_frames=0,
            mv_cell=cell,
            truncated=False,
            frames_left_out=0,
            notes="",
        )
    return dict(
        video_id=video_id,
        status="ok",
        error="",
        width=dec.width,
        height=dec.height,
        fps=dec.fps,  # the container's nominal rate
        measured_fps=dec.measured_fps,  # from the frames' timestamps (the MV cache's ``timestamps``)
        codec=dec.codec,
        n_frames=dec.n_frames,
        mv_cell=cell,
        truncated=dec.truncated,
        frames_left_out=dec.frames_left_out,
        notes="; ".join(dec.notes),
    )


def _set_attrs(obj: h5py.HLObject, values: dict) -> None:
    """Scalar attributes through h5py's low-level API: what a reader gets is what
    ``obj.attrs.update`` writes (UTF-8 strings, int64, float64, bool), at half the cost."""
    scalar = h5s.create(h5s.SCALAR)
    for name, v in values.items():
        arr = np.array(v, dtype=_STR) if isinstance(v, str) else np.asarray(v)
        h5a.create(obj.id, name.encode(), h5t.py_create(arr.dtype, logical=True), scalar).write(arr)


def _write_failed(mv_out: Path, frames_out: Path, video_id: str, cell: int, error: str, storage: FrameStorage) -> None:
    attrs = _common_attrs(video_id, None, cell, error)
    with atomic_path(mv_out) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("mv", shape=(0, 0, 0, 2), dtype=np.float16)
        f.create_dataset("frame_type", shape=(0,), dtype=np.uint8)
        f.create_dataset("ref_distance", shape=(0,), dtype=np.int16)
        f.create_dataset("timestamps", shape=(0,), dtype=np.float64)
        _set_attrs(f, attrs)
    with atomic_path(frames_out) as tmp, h5py.File(tmp, "w") as f:
        stored = write_frames(f, np.zeros((0, 0, 0, 3), np.uint8), storage)
        f.create_dataset("frame_index", shape=(0,), dtype=np.int32)
        _set_attrs(f, {**attrs, **stored})


class _MVWriter:
    """The ``mv`` dataset of a cache file, fed the decoder's maps chunk by chunk: short videos
    (nearly all) are held and written in one go as a fixed-size dataset; a long one, once
    its maps pass _HOLD_BYTES, streams into a growing dataset."""

    def __init__(self, f: h5py.File, filters: dict):
        self.f, self.filters = f, filters
        self.held: list[np.ndarray] = []
        self.ds: h5py.Dataset | None = None

    def append(self, maps: np.ndarray) -> None:
        self.held.append(maps)
        if self.ds is not None or sum(m.nbytes for m in self.held) > _HOLD_BYTES:
            self._write(self._take())

    def close(self) -> None:
        """Write what is held (every map of a short video)."""
        if self.held:
            self._write(self._take(), last=True)

    def _take(self) -> np.ndarray:
        maps = self.held[0] if len(self.held) == 1 else np.concatenate(self.held)
        self.held.clear()
        return maps

    def _write(self, maps: np.ndarray, last: bool = False) -> None:
        _, hc, wc, _ = maps.shape
        chunks = (max(1, min(64, len(maps), _CHUNK_BYTES // (hc * wc * 4))), hc, wc, 2)
        if self.ds is None and last:  # the whole video at once: a fixed-size dataset
            self.f.create_dataset("mv", data=maps, chunks=chunks, **self.filters, **CHECKED)
            return
        if self.ds is None:
            shape, grow = (0, hc, wc, 2), (None, hc, wc, 2)
            self.ds = self.f.create_dataset(
                "mv", shape, np.float16, maxshape=grow, chunks=chunks, **self.filters, **CHECKED
            )
        n0 = self.ds.shape[0]
        self.ds.resize(n0 + len(maps), axis=0)
        self.ds[n0:] = maps


def cache_video(
    video: Path | str,
    video_id: str,
    mv_out: Path | str,
    frames_out: Path | str,
    settings: DecodeSettings,
    compression: str = "lz4",
    storage: FrameStorage = FrameStorage(),
) -> CacheRecord:
    """Decode ``video`` once and write its MV and frame caches; failures become failed records.

    ``compression`` names the HDF5 filter of the MV maps (a key of :data:`COMPRESSION`),
    ``storage`` how the frames are stored.
    """
    if compression not in COMPRESSION:
        raise ValueError(f"unknown cache compression {compression!r} (one of {sorted(COMPRESSION)})")
    filters = COMPRESSION[compression]
    mv_out, frames_out = Path(mv_out), Path(frames_out)
    try:
        with atomic_path(mv_out) as tmp, h5py.File(tmp, "w") as f:
            maps = _MVWriter(f, filters)
            dec = decode_video(video, settings, maps.append)
            maps.close()
            f.create_dataset("frame_type", data=dec.frame_type, **_checked(dec.frame_type))
            f.create_dataset("ref_distance", data=dec.ref_distance, **_checked(dec.ref_distance))
            f.create_dataset("timestamps", data=dec.timestamps, **_checked(dec.timestamps))
            attrs = _common_attrs(video_id, dec, settings.mv_cell, "")
            _set_attrs(f, {**attrs, "n_mv_frames": dec.n_mv_frames})
        with atomic_path(frames_out) as tmp, h5py.File(tmp, "w") as f:
            stored = write_frames(f, dec.frames, storage)
            f.create_dataset("frame_index", data=dec.frame_index, **_checked(dec.frame_index))
            _set_attrs(f, {**attrs, **stored, "second_pass": dec.second_pass})
    except (DecodeError, av.error.FFmpegError) as e:
        msg = ffmpeg_message(e) if isinstance(e, av.error.FFmpegError) else str(e) or type(e).__name__
        _write_failed(mv_out, frames_out, video_id, settings.mv_cell, msg, storage)
        return CacheRecord(video_id, str(video), "failed", 0, msg)
    except Exception as e:  # a bug, not a bad video: stop, naming the video
        raise RuntimeError(f"{video_id} ({video}): unexpected {type(e).__name__}: {e}") from e
    return CacheRecord(video_id, str(video), "ok", dec.n_frames, "", frames_left_out=dec.frames_left_out)


def _cache_one(args: tuple) -> CacheRecord:
    *args, failed = args
    if failed is None:
        return cache_video(*args)
    video, video_id, mv_out, frames_out, settings, _, storage = args
    _write_failed(mv_out, frames_out, video_id, settings.mv_cell, failed, storage)
    return CacheRecord(video_id, str(video), "failed", 0, failed)


def write_index(records: list[CacheRecord], path: Path | str, columns: tuple[str, ...] = INDEX_COLUMNS) -> None:
    write_tsv(path, columns, ([one_line(str(getattr(r, c))) for c in columns] for r in records))


def read_index(path: Path | str) -> list[CacheRecord]:
    """Records of a shard index, of failures.tsv (whose rows are all failed) or of cut.tsv;
    a row with more or fewer fields than the header is an error. An index written before
    ``frames_left_out`` reads as 0 there: such a cache was cut only if its attrs say
    ``truncated``."""
    with reading(path):
        rows = read_tsv(path)
        if any(None in r or None in r.values() for r in rows):
            raise ValueError("a row with more or fewer fields than the header")
        return [
            CacheRecord(
                r["video_id"],
                r["path"],
                r.get("status", "failed" if "error" in r else "ok"),
                int(r.get("n_frames", 0)),
                r.get("error", ""),
                r.get("reencoded") == "True",
                int(r.get("frames_left_out", 0)),
            )
            for r in rows
        ]


@contextlib.contextmanager
def open_cache(path: Path | str) -> Iterator[h5py.File]:
    """One MV or frame cache, open for reading: a failure in the block is a BrokenFileError
    naming the file and the rebuild of its shard (its directory, an output of rule cache_shard)."""
    with reading(path, rebuild(Path(path).parent)), h5py.File(path, "r") as f:
        yield f


def read_mv(path: Path | str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(mv float16 [T,Hc,Wc,2], frame_type uint8 [T], ref_distance int16 [T], attrs) of one cache."""
    with open_cache(path) as f:
        return f["mv"][()], f["frame_type"][()], f["ref_distance"][()], dict(f.attrs)


# --------------------------------------------------------------------------- stage entry points


def cache_shard(
    *,
    videos: list[Path | str],
    videos_root: Path | str,
    settings: DecodeSettings,
    compression: str,
    storage: FrameStorage = FrameStorage(),
    mv: Path | str,
    frames: Path | str,
    index: Path | str,
    threads: int = 1,
    reencoded: Path | str | None = None,
    reencode_index: Path | str | None = None,
    manifest: Path | str | None = None,
) -> list[CacheRecord]:
    """Rule ``cache_shard``: cache every video of one shard into the ``mv`` and ``frames``
    directories (maps filtered by ``compression``, frames stored as ``storage`` says),
    ``threads`` videos at a time, and write the shard's ``index`` last.

    A video's id is the ``manifest``'s (or without one its file's stem); the index names it
    by its path under ``videos_root``.
    With ``reencoded`` (rule ``reencode_shard``'s directory, ``<video_id>.avi``), a video that
    ``reencode_index`` lists as ``reencoded`` is decoded from its re-encoded file instead (and
    its index line says so), one listed as ``original`` from itself, and one listed as
    failed is recorded failed with the re-encode's message.
    """
    mv, frames = Path(mv), Path(frames)
    ids = listed_ids(manifest, videos, videos_root) if manifest else [Path(v).stem for v in videos]
    sources, failed, redone = list(videos), [None] * len(ids), [False] * len(ids)
    if reencoded is not None:
        status = {r.video_id: r for r in read_index(reencode_index)}
        missing = [i for i in ids if i not in status]
        if missing:
            raise ValueError(f"{reencode_index}: no re-encode of {', '.join(missing)}")
        for k, i in enumerate(ids):  # the statuses of moclip.video.reencode's index
            if status[i].status == "reencoded":
                sources[k], redone[k] = reencoded_file(reencoded, i), True
            elif status[i].status != "original":
                failed[k] = f"re-encode failed: {status[i].error}"
    jobs = [
        (src, i, video_file(mv, i), video_file(frames, i), settings, compression, storage, err)
        for src, i, err in zip(sources, ids, failed)
    ]
    mv.mkdir(parents=True, exist_ok=True)
    frames.mkdir(parents=True, exist_ok=True)
    records, n_frames, progress = [], 0, Progress("videos", len(jobs), log)
    with map_videos(_cache_one, jobs, threads) as results:
        for video, rec, again in zip(videos, results, redone):
            rec = replace(rec, path=relative_to(video, videos_root), reencoded=again)  # the original's path
            records.append(rec)
            if rec.status != "ok":
                log.warning("failed video %s (%s): %s", rec.video_id, rec.path, rec.error)
            if rec.frames_left_out:
                log.warning("cut video %s (%s): %s", rec.video_id, rec.path, cut_note(rec))
            n_frames += rec.n_frames
            progress.update(note=f"{n_frames} frames decoded")
    progress.close()
    write_index(records, index)
    return records


def cut_note(rec: CacheRecord) -> str:
    """What a cut video's cache leaves out, in words (the logs and the reports)."""
    return (
        f"read up to decode.max_frames: its first {rec.n_frames} frames cached, "
        f"{rec.frames_left_out} left out of {rec.n_frames + rec.frames_left_out}"
    )


def cache_failures(
    *,
    indexes: Iterable[Path | str],
    out: Path | str,
    reencoded: Path | str | None = None,
    cut: Path | str | None = None,
) -> list[CacheRecord]:
    """Rule ``cache_failures``: the failed videos of every shard index in one table ``out``,
    the videos cached from a re-encode in another, ``reencoded``, and the videos read only
    up to ``decode.max_frames`` in a third, ``cut``, with the frames each leaves out (each
    header only when there are none)."""
    records = [r for p in indexes for r in read_index(p)]
    failed = [r for r in records if r.status != "ok"]
    for r in failed:
        log.warning("failed video %s (%s): %s", r.video_id, r.path, r.error)
    write_index(failed, out, FAILURE_COLUMNS)
    if cut is not None:
        short = [r for r in records if r.frames_left_out]
        for r in short:
            log.warning("cut video %s (%s): %s", r.video_id, r.path, cut_note(r))
        write_index(short, cut, CUT_COLUMNS)
    if reencoded is not None:
        redone = [r for r in records if r.reencoded]
        log.info("%d videos cached from their re-encode", len(redone))
        write_index(redone, reencoded, REENCODED_COLUMNS)
    return failed


__all__ = [
    "COMPRESSION",
    "CUT_COLUMNS",
    "ENCODINGS",
    "CacheRecord",
    "FrameStorage",
    "cache_failures",
    "cache_shard",
    "cache_video",
    "cut_note",
    "open_cache",
    "read_index",
    "read_mv",
    "video_file",
    "write_frames",
]
