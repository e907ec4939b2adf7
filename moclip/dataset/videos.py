"""The manifest table: one :class:`Video` a row (label, group, clip, shard, each split's
part), written by the manifest stage and read by every stage after it.

Apart from building the manifest (:mod:`moclip.dataset.manifest`, :mod:`moclip.dataset.formats`), so that
the stages that only read it never depend on the dataset formats' code.
"""

from __future__ import annotations

import csv
import functools
import os
import zlib
from dataclasses import dataclass, fields
from pathlib import Path

from moclip.io import braced, reading, whole_lines, wildcard_in, write_tsv

SPLITS = (1, 2, 3)
COLUMNS = ("video_id", "path", "class_name", "label", "group", "clip", "shard") + tuple(f"split{k}" for k in SPLITS)


class ManifestError(ValueError):
    """A dataset, split list or manifest that cannot be parsed; the message names file and line."""


@dataclass(frozen=True)
class Video:
    """One manifest row."""

    video_id: str
    path: str
    class_name: str
    label: int
    group: int
    clip: int
    shard: int
    split1: str = ""
    split2: str = ""
    split3: str = ""

    def split(self, k: int) -> str:
        return getattr(self, f"split{k}")


def shard_of(video_id: str, num_shards: int) -> int:
    """Stable shard of a video: a hash of its id, so adding a video changes one shard only."""
    return zlib.crc32(video_id.encode("utf-8")) % num_shards


def name_problems(videos: Path | str, paths, where: dict[str, str] | None = None) -> list[str]:
    """One line a video path (relative to ``videos``) holding a tab or a line break (the
    manifest, the indexes and the failure lists are tab-separated lines, so such a name
    cannot be written) or a Snakemake wildcard (``{name}``: the file is a job's input, so
    such a name stops the run), every such file named at once, before any job, after the
    list's file and line that names it where ``where`` (path -> ``file:line``) says."""
    where = where or {}
    out = []
    for p in paths:
        at = f"{where[p]}: " if p in where else ""
        if any(c in p for c in "\t\r\n"):
            out.append(
                f"{at}{str(Path(videos) / p)!r}: a tab or line break in the file's name "
                "(the manifest is tab-separated lines): rename it"
            )
        elif found := wildcard_in(p):
            out.append(f"{at}{str(Path(videos) / p)!r}: {braced('the name', found)}")
    return out


def write_manifest(rows: list[Video], path: Path | str) -> None:
    """Write the manifest TSV atomically (a killed job never leaves a half file)."""
    for r in rows:
        if any(c in r.path for c in "\t\r\n"):
            raise ManifestError(f"{r.path!r}: tabs and line breaks are not allowed in video paths")
    write_tsv(path, COLUMNS, ([getattr(r, c) for c in COLUMNS] for r in rows))


def read_manifest(path: Path | str) -> list[Video]:
    """Read a manifest TSV written by :func:`write_manifest`."""
    path = Path(path)
    with reading(path):
        reader = csv.reader(whole_lines(path), delimiter="\t")
        header = next(reader, None)
        if header is None or tuple(header) != COLUMNS:
            raise ManifestError(f"{path}:1: header must be {' '.join(COLUMNS)}")
        types = {f.name: f.type for f in fields(Video)}
        rows = []
        for lineno, rec in enumerate(reader, 2):
            if len(rec) != len(COLUMNS):
                raise ManifestError(f"{path}:{lineno}: expected {len(COLUMNS)} columns, got {len(rec)}")
            try:
                rows.append(Video(**{c: int(v) if types[c] == "int" else v for c, v in zip(COLUMNS, rec)}))
            except ValueError as e:
                raise ManifestError(f"{path}:{lineno}: {e}") from None
    return rows


def class_names(rows: list[Video]) -> list[str]:
    """Class names in label order; the labels must run 0..C-1 with one name each."""
    pairs = sorted({(r.label, r.class_name) for r in rows})
    if [label for label, _ in pairs] != list(range(len(pairs))):
        raise ManifestError("manifest labels must run 0..C-1 with one class name each")
    return [name for _, name in pairs]


def split_rows(rows: list[Video], split: int) -> dict[str, list[Video]]:
    """A split's rows by part: ``train``, ``val`` and ``test`` (manifest order)."""
    parts: dict[str, list[Video]] = {"train": [], "val": [], "test": []}
    for r in rows:
        part = r.split(split)
        if part:
            parts[part].append(r)
    return parts


def shard_rows(path: Path | str, shard: int) -> list[Video]:
    """The manifest's rows of one shard, the manifest read once while it is unchanged (a
    workflow asks for every shard's rows in turn)."""
    return _by_shard(str(path), os.stat(path).st_mtime_ns).get(shard, [])


@functools.cache
def _by_shard(path: str, mtime_ns: int) -> dict[int, list[Video]]:
    shards: dict[int, list[Video]] = {}
    for row in read_manifest(path):
        shards.setdefault(row.shard, []).append(row)
    return shards
