"""UCF101 split lists -> one manifest row per video (labels, groups, splits, shards).

Labels come from ``classInd.txt`` (never from a sort of folder names) and the class
from the first path component (never from the file name): see the UCF101 traps in
the project docs. Every malformed entry is an error naming the list file and line.
"""

from __future__ import annotations

import csv
import logging
import random
import re
import zlib
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath

from moclip.io import write_tsv

log = logging.getLogger(__name__)

SPLITS = (1, 2, 3)
COLUMNS = ("video_id", "path", "class_name", "label", "group", "clip", "shard") + tuple(f"split{k}" for k in SPLITS)
_NAME = re.compile(r"^v_(?P<cls>.+)_g(?P<group>\d+)_c(?P<clip>\d+)$")


class ManifestError(ValueError):
    """A dataset or split list that cannot be parsed; the message names file and line."""


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


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    """Non-empty lines of a list file as (1-based line number, tokens); CRLF and BOM tolerated."""
    if not path.is_file():
        raise ManifestError(f"{path}: split list not found")
    text = path.read_bytes().decode("utf-8-sig")
    return [(i, line.split()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def read_class_index(path: Path) -> list[str]:
    """``classInd.txt`` -> class names, position = 0-based label."""
    names: dict[int, str] = {}
    for lineno, tok in _lines(path):
        if len(tok) != 2 or not tok[0].isdigit():
            raise ManifestError(f"{path}:{lineno}: expected '<index> <ClassName>', got {' '.join(tok)!r}")
        idx, name = int(tok[0]), tok[1]
        if idx in names or name in names.values():
            raise ManifestError(f"{path}:{lineno}: duplicated class entry {idx} {name}")
        names[idx] = name
    if not names:
        raise ManifestError(f"{path}: no classes")
    if sorted(names) != list(range(1, len(names) + 1)):
        raise ManifestError(f"{path}: class indices must run 1..{len(names)} without gaps")
    return [names[i] for i in range(1, len(names) + 1)]


def shard_of(video_id: str, num_shards: int) -> int:
    """Stable shard of a video: a hash of its id, so adding a video changes one shard only."""
    return zlib.crc32(video_id.encode("utf-8")) % num_shards


def val_groups_for(train_groups: set[int], n_val: int, seed: int, split: int) -> set[int]:
    """Whole groups held out of a split's training part for validation, fixed by the seed."""
    if n_val <= 0:
        return set()
    if n_val >= len(train_groups):
        raise ManifestError(
            f"split {split}: dataset.val_groups={n_val} would leave no training group "
            f"(training groups: {sorted(train_groups)})"
        )
    rng = random.Random(f"moclip-val-{seed}-split{split}")
    return set(rng.sample(sorted(train_groups), n_val))


@dataclass
class _Entry:
    rel: str
    class_name: str
    group: int
    clip: int
    where: str


def _list_rows(lists: Path, split: int, kind: str) -> tuple[Path, list[tuple[int, list[str]]]]:
    """A split list's path and its non-empty rows; an empty list is an error."""
    lf = lists / f"{kind}list0{split}.txt"
    rows = _lines(lf)
    if not rows:
        raise ManifestError(f"{lf}: split list is empty")
    return lf, rows


def _entry_path(where: str, rel: str, root: object) -> PurePosixPath:
    """A list entry as <ClassName>/<file>, never absolute nor climbing out of ``root``."""
    p = PurePosixPath(rel.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or len(p.parts) != 2:
        raise ManifestError(f"{where}: path {rel!r} must be <ClassName>/<file> inside {root}")
    return p


def _parse_entry(videos: Path, lists_file: Path, lineno: int, rel: str, classes: dict[str, int]) -> _Entry:
    where = f"{lists_file}:{lineno}"
    p = _entry_path(where, rel, videos)
    class_name, fname = p.parts
    if class_name not in classes:
        raise ManifestError(f"{where}: class folder {class_name!r} is not in classInd.txt")
    m = _NAME.match(PurePosixPath(fname).stem)
    if not m:
        raise ManifestError(f"{where}: file name {fname!r} is not v_<Class>_gGG_cCC.<ext>")
    full = videos / class_name / fname
    if not full.resolve().is_relative_to(videos.resolve()):
        raise ManifestError(f"{where}: path {rel!r} escapes {videos}")
    if not full.is_file():
        raise ManifestError(f"{where}: video {full} does not exist")
    return _Entry(str(p), class_name, int(m["group"]), int(m["clip"]), where)


def build_manifest(
    videos: Path | str,
    lists: Path | str,
    splits: list[int] | tuple[int, ...] = SPLITS,
    val_groups: int = 0,
    num_shards: int = 1,
    seed: int = 0,
) -> list[Video]:
    """Parse a UCF101 tree and its split lists into manifest rows sorted by (label, group, clip)."""
    videos, lists = Path(videos), Path(lists)
    if not videos.is_dir():
        raise ManifestError(f"{videos}: dataset.videos is not a directory")
    if not lists.is_dir():
        raise ManifestError(f"{lists}: dataset.lists is not a directory")
    if num_shards < 1:
        raise ManifestError(f"dataset.shards must be >= 1, got {num_shards}")
    class_names = read_class_index(lists / "classInd.txt")
    classes = {name: i for i, name in enumerate(class_names)}
    entries: dict[str, _Entry] = {}
    assign: dict[str, dict[int, str]] = {}

    for k in splits:
        if k not in SPLITS:
            raise ManifestError(f"dataset.splits: {k} is not one of {SPLITS}")
        seen: dict[str, str] = {}
        for kind in ("train", "test"):
            lf, rows = _list_rows(lists, k, kind)
            for lineno, tok in rows:
                e = _parse_entry(videos, lf, lineno, tok[0], classes)
                vid = PurePosixPath(e.rel).stem
                if vid in seen:
                    raise ManifestError(f"{e.where}: video {vid} is listed twice (first at {seen[vid]})")
                seen[vid] = e.where
                label_given = kind == "train" and len(tok) > 1
                if label_given and (not tok[1].isdigit() or int(tok[1]) != classes[e.class_name] + 1):
                    raise ManifestError(
                        f"{e.where}: label {tok[1]} disagrees with classInd.txt "
                        f"({e.class_name} is {classes[e.class_name] + 1})"
                    )
                old = entries.setdefault(vid, e)
                if old.rel != e.rel:
                    raise ManifestError(f"{e.where}: video id {vid} also names {old.rel} ({old.where})")
                assign.setdefault(vid, {})[k] = kind
        test_groups = {entries[v].group for v, a in assign.items() if a.get(k) == "test"}
        train_groups = {entries[v].group for v, a in assign.items() if a.get(k) == "train"}
        leaked = train_groups & test_groups
        if leaked:
            raise ManifestError(f"split {k}: groups {sorted(leaked)} appear in both train and test lists")
        held = val_groups_for(train_groups, val_groups, seed, k)
        for vid, a in assign.items():
            if a.get(k) == "train" and entries[vid].group in held:
                a[k] = "val"

    out = []
    for vid, e in entries.items():
        a = assign[vid]
        out.append(
            Video(
                video_id=vid,
                path=e.rel,
                class_name=e.class_name,
                label=classes[e.class_name],
                group=e.group,
                clip=e.clip,
                shard=shard_of(vid, num_shards),
                **{f"split{k}": a.get(k, "") for k in SPLITS},
            )
        )
    out.sort(key=lambda v: (v.label, v.group, v.clip, v.video_id))
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
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
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


def shard_members(rows: list[Video], shard: int) -> list[Video]:
    """Rows of one shard, in manifest order."""
    return [r for r in rows if r.shard == shard]


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


def count_listed_videos(lists: Path | str, splits) -> int:
    """Distinct videos the split lists of ``splits`` name (no walk over the videos): what
    ``dataset.shards: auto`` sizes the shards from."""
    lists = Path(lists)
    names = {tok[0] for k in splits for kind in ("train", "test") for _, tok in _list_rows(lists, k, kind)[1]}
    return len(names)


def shard_count(n_videos: int, videos_per_shard: int) -> int:
    """Shards for ``n_videos``: the nearest whole number of ``videos_per_shard`` (at least 1).

    It changes only when the count crosses a midpoint, (k + 1/2) x videos_per_shard, so a
    few videos added to a dataset leave it as it is, and each new video changes one shard.
    """
    return max(1, (n_videos + videos_per_shard // 2) // videos_per_shard)


# --------------------------------------------------------------------------- stage entry point


def manifest(
    *,
    videos: Path | str,
    lists: Path | str,
    splits: list[int],
    val_groups: int,
    shards: int,
    seed: int,
    out: Path | str,
) -> list[Video]:
    """Rule ``manifest``: the dataset's split lists -> the manifest TSV at ``out``."""
    rows = build_manifest(videos, lists, splits, val_groups, shards, seed)
    write_manifest(rows, out)
    log.info("%d videos, %d classes, %d shards, from %s", len(rows), len(class_names(rows)), shards, lists)
    for k in splits:
        parts = split_rows(rows, k)
        log.info("split %d: %s", k, ", ".join(f"{len(v)} {part}" for part, v in parts.items()))
    return rows
