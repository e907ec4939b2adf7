"""The optional re-encode stage, before the cache: each video of a shard re-encoded into
``<video_id>.avi``, and the shard an index (one status line a video). Two modes, one rule:

- config ``dataset.reencode``: every video, by a recipe of :data:`moclip.video.encode.REENCODE`
  (CoViAR's: MPEG-4 Part 2, 340x256, GOP 12, no B-frames);
- config ``decode.reencode_unsupported`` (without ``dataset.reencode``): only the videos
  whose decode exports no motion vectors (:func:`moclip.video.codec.exports_motion_vectors`:
  MJPEG, VP9, AV1, intra-only streams...), to MPEG-4 Part 2 at their own size, GOP 12, no
  B-frames (:class:`moclip.video.encode.EncodeSettings`); the others are cached as they are.

The index's status says which: ``reencoded`` (the cache decodes the re-encoded file),
``original`` (it decodes the video itself) or ``failed`` (the video could not be
re-encoded: no file; the cache stage records it as failed with this message).

A module of its own rather than part of :mod:`moclip.video.cache`: the cache rule's code digest
does not reach it, so a change here reruns the re-encodes (and through their files the
caches made from them) but never the caches of a run without re-encoding.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import av

from moclip.io import listed_ids, one_line, relative_to, write_tsv
from moclip.runtime import Progress, map_videos
from moclip.video.codec import DecodeError, DecodeSettings, exports_motion_vectors, reencoded_file
from moclip.video.encode import REENCODE, EncodeSettings, reencode

log = logging.getLogger(__name__)
# The columns of moclip.video.cache's shard index less n_frames: moclip.video.cache.read_index reads it.
INDEX_COLUMNS = ("video_id", "path", "status", "error")
REENCODED, ORIGINAL, FAILED = "reencoded", "original", "failed"  # a video's status in the index


@dataclass(frozen=True)
class ReencodeRecord:
    """One line of a re-encode index; ``path`` is the source video."""

    video_id: str
    path: str
    status: str  # REENCODED, ORIGINAL or FAILED
    error: str


def reencode_plan(recipe: str | None, probe_frames: int) -> tuple[EncodeSettings, int]:
    """How a video is re-encoded: by ``recipe`` (a key of :data:`moclip.video.encode.REENCODE`)
    every video, no probe; with None only a video without motion vectors in its first
    ``probe_frames`` frames, by the default :class:`EncodeSettings`. The settings and the
    probe length :func:`reencode_video` takes (rule ``reencode_shard`` and ``moclip predict``)."""
    if recipe is None:
        return EncodeSettings(), probe_frames
    if recipe not in REENCODE:
        raise ValueError(f"unknown re-encode recipe {recipe!r} (one of {sorted(REENCODE)})")
    return REENCODE[recipe], 0


def _lacks_vectors(src: Path | str, probe_frames: int) -> bool:
    """The probe: whether the decode of ``src`` exports no motion vectors in its first
    ``probe_frames`` frames (False for a file that cannot be read: the cache names why)."""
    try:
        return not exports_motion_vectors(src, probe_frames)
    except (DecodeError, av.error.FFmpegError):
        return False


def reencode_video(
    src: Path | str, video_id: str, dst: Path | str, settings: EncodeSettings, probe_frames: int = 0
) -> ReencodeRecord:
    """Re-encode one video; a video that cannot be read becomes a failed record (no file).

    With ``probe_frames``, only a video whose first ``probe_frames`` frames carry no motion
    vector (as :func:`moclip.video.codec.decode_video` decides) is re-encoded; one that has
    vectors, or that cannot be read at all, is left ``original`` (the cache stage decodes
    it, and names its error).
    """
    try:
        if probe_frames and not _lacks_vectors(src, probe_frames):
            return ReencodeRecord(video_id, str(src), ORIGINAL, "")
        reencode(src, dst, settings)
    except (DecodeError, av.error.FFmpegError) as e:
        return ReencodeRecord(video_id, str(src), FAILED, str(e) or type(e).__name__)
    except Exception as e:  # a bug, not a bad video: stop, naming the video
        raise RuntimeError(f"{video_id} ({src}): unexpected {type(e).__name__}: {e}") from e
    return ReencodeRecord(video_id, str(src), REENCODED, "")


def _reencode_one(args: tuple) -> ReencodeRecord:
    return reencode_video(*args)


def reencode_shard(
    *,
    videos: list[Path | str],
    videos_root: Path | str,
    recipe: str | None,
    out: Path | str,
    index: Path | str,
    probe_frames: int = DecodeSettings.max_frames,
    threads: int = 1,
    manifest: Path | str | None = None,
) -> list[ReencodeRecord]:
    """Rule ``reencode_shard``: re-encode the videos of one shard into the directory ``out``,
    ``threads`` videos at a time, and write the shard's ``index`` last (paths relative to
    ``videos_root``).

    ``recipe`` (a key of :data:`moclip.video.encode.REENCODE`): every video by that recipe. None:
    only the videos without motion vectors in their first ``probe_frames`` frames (config
    ``decode.max_frames``, what the cache reads), by the default :class:`EncodeSettings`.
    A video's id (its file ``<id>.avi``) is the ``manifest``'s, or without one its file's stem.
    """
    settings, probe = reencode_plan(recipe, probe_frames)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = listed_ids(manifest, videos, videos_root) if manifest else [Path(v).stem for v in videos]
    jobs = [(v, i, reencoded_file(out, i), settings, probe) for v, i in zip(videos, ids)]
    records, done, failed, progress = [], 0, 0, Progress("videos", len(jobs), log)
    with map_videos(_reencode_one, jobs, threads) as results:
        for rec in results:
            records.append(rec)
            if rec.status == FAILED:
                failed += 1
                log.warning("video %s (%s) not re-encoded: %s", rec.video_id, rec.path, rec.error)
            elif rec.status == REENCODED:
                done += 1
                if probe:
                    log.info("video %s (%s) has no motion vectors: re-encoded", rec.video_id, rec.path)
            progress.update(note=f"{done} re-encoded, {failed} failed")
    progress.close()
    rows = [(r.video_id, relative_to(r.path, videos_root), r.status, one_line(r.error)) for r in records]
    write_tsv(index, INDEX_COLUMNS, rows)
    return records


__all__ = [
    "FAILED",
    "INDEX_COLUMNS",
    "ORIGINAL",
    "REENCODED",
    "ReencodeRecord",
    "reencode_plan",
    "reencode_shard",
    "reencode_video",
]
