"""The optional re-encode stage (config ``dataset.reencode``): each video of a shard
re-encoded by a recipe of :data:`moclip.codec.REENCODE` (CoViAR's: MPEG-4 Part 2, 340x256,
GOP 12, no B-frames) into ``<video_id>.avi``, and the shard an index (one status line a video).

A module of its own rather than part of :mod:`moclip.cache`: the cache rule's code digest
does not reach it, so a change here reruns the re-encodes (and through their files the
caches made from them) but never the caches of a run without re-encoding. A video that
cannot be re-encoded is listed in the index by name with the error, and has no file; the
cache stage records it as failed with that message.
"""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import av

from moclip.codec import REENCODE, DecodeError, EncodeSettings, reencode
from moclip.io import relative_to, write_tsv
from moclip.runtime import Progress, pool_context

log = logging.getLogger(__name__)
# The columns of moclip.cache's shard index less n_frames: moclip.cache.read_index reads it.
INDEX_COLUMNS = ("video_id", "path", "status", "error")


@dataclass(frozen=True)
class ReencodeRecord:
    """One line of a re-encode index; ``path`` is the source video."""

    video_id: str
    path: str
    status: str
    error: str


def reencoded_file(out_dir: Path | str, video_id: str) -> Path:
    """A video's re-encoded file in a shard's directory."""
    return Path(out_dir) / f"{video_id}.avi"


def reencode_video(src: Path | str, video_id: str, dst: Path | str, settings: EncodeSettings) -> ReencodeRecord:
    """Re-encode one video; a video that cannot be read becomes a failed record (no file)."""
    try:
        reencode(src, dst, settings)
    except (DecodeError, av.error.FFmpegError) as e:
        return ReencodeRecord(video_id, str(src), "failed", str(e) or type(e).__name__)
    except Exception as e:  # a bug, not a bad video: stop, naming the video
        raise RuntimeError(f"{video_id} ({src}): unexpected {type(e).__name__}: {e}") from e
    return ReencodeRecord(video_id, str(src), "ok", "")


def _reencode_one(args: tuple) -> ReencodeRecord:
    return reencode_video(*args)


def _one_line(text: str) -> str:
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def reencode_shard(
    *,
    videos: list[Path | str],
    videos_root: Path | str,
    recipe: str,
    out: Path | str,
    index: Path | str,
    threads: int = 1,
) -> list[ReencodeRecord]:
    """Rule ``reencode_shard``: re-encode every video of one shard by ``recipe`` (a key of
    :data:`moclip.codec.REENCODE`) into the directory ``out``, ``threads`` videos at a time,
    and write the shard's ``index`` last (paths relative to ``videos_root``)."""
    if recipe not in REENCODE:
        raise ValueError(f"unknown re-encode recipe {recipe!r} (one of {sorted(REENCODE)})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(v, Path(v).stem, reencoded_file(out, Path(v).stem), REENCODE[recipe]) for v in videos]
    records, failed, progress = [], 0, Progress("videos", len(jobs), log)
    pool = (
        ProcessPoolExecutor(min(threads, len(jobs)), mp_context=pool_context())
        if threads > 1 and len(jobs) > 1
        else None
    )
    with pool or contextlib.nullcontext():
        for rec in pool.map(_reencode_one, jobs, chunksize=1) if pool else map(_reencode_one, jobs):
            records.append(rec)
            if rec.status != "ok":
                failed += 1
                log.warning("video %s (%s) not re-encoded: %s", rec.video_id, rec.path, rec.error)
            progress.update(note=f"{failed} failed")
    progress.close()
    rows = [(r.video_id, relative_to(r.path, videos_root), r.status, _one_line(r.error)) for r in records]
    write_tsv(index, INDEX_COLUMNS, rows)
    return records


__all__ = ["INDEX_COLUMNS", "ReencodeRecord", "reencode_shard", "reencode_video", "reencoded_file"]
