"""Dataset formats -> the videos they list: UCF101's split lists, HMDB51's split files, a CSV
table of labelled videos, or a bare folder of videos (``dataset.format``).

Each reader returns a :class:`Listing`: class names in label order, one entry a video (its
path, class, group and clip) and each split's train/test assignment. :mod:`moclip.dataset.manifest`
turns a listing into manifest rows (validation groups, shards), the same columns for every
format. Every malformed entry is an error naming the file and line; no reader walks more than
its format needs (UCF101, HMDB51 and CSV read their lists; only ``folder`` walks the tree).
"""

from __future__ import annotations

import csv
import hashlib
import os
import random
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from moclip.dataset.videos import SPLITS, ManifestError

# What a folder run takes for a video (lower-case suffixes); anything else is left alone.
VIDEO_SUFFIXES = frozenset(
    (".avi", ".mp4", ".m4v", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".wmv", ".asf", ".flv", ".3gp")
    + (".ts", ".m2ts", ".mts", ".ogv", ".divx", ".vob")
)
# Datasets that name no groups: each video falls in one of this many seeded buckets, so
# dataset.val_groups holds out whole videos, about val_groups/25 of a split's training part.
PSEUDO_GROUPS = 25
CSV_TEST_SHARE = 0.3  # a CSV without split columns: one split testing on this share of its groups
_UCF_NAME = re.compile(r"^v_(?P<cls>.+)_g(?P<group>\d+)_c(?P<clip>\d+)$")
_HMDB_SPLIT = re.compile(r"^(?P<cls>.+)_test_split(?P<k>\d+)\.txt$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Entry:
    """One listed video: its path under the videos root (forward slashes), class ("" when
    unlabelled), group and clip numbers (0 when the format names none), and where it was listed."""

    rel: str
    class_name: str
    group: int
    clip: int
    where: str


@dataclass
class Listing:
    """A dataset as its format lists it, before validation groups and shards."""

    classes: list[str]  # label order; empty for an unlabelled folder
    entries: dict[str, Entry] = field(default_factory=dict)  # video id -> entry
    assign: dict[str, dict[int, str]] = field(default_factory=dict)  # video id -> {split: train | test}
    groups: str = "names"  # where groups come from: names, column, or none (seeded buckets of whole videos)
    separate_groups: bool = False  # a group in both parts of a split is an error (UCF101's guarantee)


@dataclass(frozen=True)
class Format:
    """A dataset format (``dataset.format``): what ``dataset.lists`` is (a ``directory``, a
    ``file`` or None: videos only, unlabelled) and its three readers: the listing, the files
    it reads (the manifest's inputs) and the count of videos it lists (at parse time, cheap);
    and the names of its videos folder and lists in the dataset's own download."""

    lists: str | None
    read: Callable[..., Listing]  # (videos, lists, splits, seed, classes file or None)
    files: Callable[[Path, list[int]], list[Path]]  # (lists, splits)
    count: Callable[[Path, Path | None, list[int]], int]  # (videos, lists, splits)
    names: tuple[str, str | None]  # the videos folder and the lists as the downloads name them (and the demo)

    @property
    def labelled(self) -> bool:
        """Whether its videos come with labels and splits (trained and tested)."""
        return self.lists is not None


def read_listing(
    format: str,
    videos: Path | str,
    lists: Path | str | None,
    splits: Iterable[int] = SPLITS,
    seed: int = 0,
    classes: Path | str | None = None,
) -> Listing:
    """The videos ``format`` lists under ``videos``; ``lists`` is the split-list folder
    (ucf101, hmdb51), the CSV file (csv) or unused (folder); ``classes`` a file of class
    names, one a line, that fixes a CSV's label order."""
    videos = Path(videos)
    if format not in FORMATS:
        raise ManifestError(f"dataset.format: {format!r} is not one of {', '.join(FORMATS)}")
    if not videos.is_dir():
        raise ManifestError(f"{videos}: dataset.videos is not a directory")
    splits = list(splits)
    for k in splits:
        if k not in SPLITS:
            raise ManifestError(f"dataset.splits: {k} is not one of {SPLITS}")
    fmt = FORMATS[format]
    if not fmt.labelled:
        return fmt.read(videos, None, splits, seed, None)
    if lists is None:
        raise ManifestError(f"dataset.lists is required with dataset.format: {format}")
    lists = Path(lists)
    if not (lists.is_file() if fmt.lists == "file" else lists.is_dir()):
        raise ManifestError(f"{lists}: dataset.lists is not a {fmt.lists} ({format})")
    return fmt.read(videos, lists, splits, seed, Path(classes) if classes else None)


def list_files(format: str, lists: Path | str | None, splits: Iterable[int]) -> list[Path]:
    """The files a format's listing reads (the manifest's inputs); cheap: no walk of the videos."""
    fmt = FORMATS[format]
    return [] if not fmt.labelled or lists is None else fmt.files(Path(lists), list(splits))


def count_videos(format: str, videos: Path | str, lists: Path | str | None, splits: Iterable[int]) -> int:
    """Distinct videos a dataset lists, for sizing shards at parse time: the lists' entries
    (no file is opened but the lists), or the folder's video files."""
    return FORMATS[format].count(Path(videos), None if lists is None else Path(lists), list(splits))


def split_sizes(format: str, lists: Path | str | None, splits: Iterable[int]) -> tuple[int, int] | None:
    """The most videos one of ``splits`` lists for training (its validation part included)
    and for testing, from the lists alone (cheap, at parse time: the resource estimates);
    None where the lists do not say without reading the videos (csv, folder)."""
    if lists is None or format not in ("ucf101", "hmdb51"):
        return None
    lists, sizes = Path(lists), []
    for k in splits:
        if format == "ucf101":
            sizes.append(tuple(len(_ucf_list(lists, k, kind)[1]) for kind in ("train", "test")))
        else:
            flags = [tok[1] for f in _hmdb51_files(lists, [k]) for _, tok in _lines(f) if len(tok) == 2]
            sizes.append((flags.count("1"), flags.count("2")))
    return (max(s[0] for s in sizes), max(s[1] for s in sizes)) if sizes else None


def safe_ids(rels: list[str], whole_path: bool) -> dict[str, str]:
    """Video ids for paths: the file's stem (or with ``whole_path`` the path less its
    suffix, folders joined by ``__``), every run of characters other than letters, digits,
    ``.``, ``_`` and ``-`` as ``_``; where two paths would share an id, each gets a short
    hash of its path. Ids are safe as file names and the same whatever the order."""

    def base(rel: str) -> str:
        p = PurePosixPath(rel)
        name = str(p.with_suffix("")).replace("/", "__") if whole_path else p.stem
        return _UNSAFE.sub("_", name).lstrip(".") or "video"

    bases = {rel: base(rel) for rel in rels}
    count: dict[str, int] = {}
    for b in bases.values():
        count[b] = count.get(b, 0) + 1
    return {
        rel: b if count[b] == 1 else f"{b}-{hashlib.sha256(rel.encode()).hexdigest()[:8]}" for rel, b in bases.items()
    }


def pseudo_group(video_id: str) -> int:
    """A video's bucket (1..PSEUDO_GROUPS) where the dataset names no groups."""
    return zlib.crc32(video_id.encode("utf-8")) % PSEUDO_GROUPS + 1


# --------------------------------------------------------------------------- shared checks


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    """Non-empty lines of a list file as (1-based line number, tokens); CRLF and BOM tolerated."""
    if not path.is_file():
        raise ManifestError(f"{path}: split list not found")
    text = path.read_bytes().decode("utf-8-sig")
    return [(i, line.split()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def _video_path(videos: Path, where: str, rel: str, parts: int | None = None) -> str:
    """A listed path, relative to ``videos`` with forward slashes: never absolute, never
    climbing out of the root (symbolic links included), and an existing file."""
    p = PurePosixPath(rel.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or not p.parts or (parts and len(p.parts) != parts):
        shape = "<ClassName>/<file>" if parts == 2 else "a relative path"
        raise ManifestError(f"{where}: path {rel!r} must be {shape} inside {videos}")
    full = videos.joinpath(*p.parts)
    if not full.resolve().is_relative_to(videos.resolve()):
        raise ManifestError(f"{where}: path {rel!r} escapes {videos}")
    if not full.is_file():
        raise ManifestError(f"{where}: video {full} does not exist")
    return str(p)


def _add(listing: Listing, vid: str, entry: Entry, split: int | None, kind: str | None, seen: dict) -> None:
    """Record ``entry`` as video ``vid`` (in ``kind`` of ``split``), refusing a video listed
    twice in one split or an id that names two files."""
    if split is not None:
        if vid in seen:
            raise ManifestError(f"{entry.where}: video {vid} is listed twice (first at {seen[vid]})")
        seen[vid] = entry.where
    old = listing.entries.setdefault(vid, entry)
    if old.rel != entry.rel:
        raise ManifestError(f"{entry.where}: video id {vid} also names {old.rel} ({old.where})")
    assign = listing.assign.setdefault(vid, {})
    if split is not None and kind:
        assign[split] = kind


# --------------------------------------------------------------------------- UCF101


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


def _ucf_list(lists: Path, split: int, kind: str) -> tuple[Path, list[tuple[int, list[str]]]]:
    """A split list's path and its non-empty rows; an empty list is an error."""
    lf = lists / f"{kind}list0{split}.txt"
    rows = _lines(lf)
    if not rows:
        raise ManifestError(f"{lf}: split list is empty")
    return lf, rows


def _ucf101(videos: Path, lists: Path, splits: list[int], *_) -> Listing:
    """UCF101: labels from ``classInd.txt`` (never a sort of folder names), the class from the
    folder (never the file name), group and clip from ``v_<Class>_gGG_cCC``."""
    listing = Listing(read_class_index(lists / "classInd.txt"), separate_groups=True)
    classes = {name: i for i, name in enumerate(listing.classes)}
    for k in splits:
        seen: dict[str, str] = {}
        for kind in ("train", "test"):
            lf, rows = _ucf_list(lists, k, kind)
            for lineno, tok in rows:
                where = f"{lf}:{lineno}"
                rel = _ucf_entry(videos, where, tok[0], classes)
                class_name = rel.split("/")[0]
                label = tok[1] if kind == "train" and len(tok) > 1 else None
                if label is not None and (not label.isdigit() or int(label) != classes[class_name] + 1):
                    raise ManifestError(
                        f"{where}: label {tok[1]} disagrees with classInd.txt "
                        f"({class_name} is {classes[class_name] + 1})"
                    )
                m = _UCF_NAME.match(PurePosixPath(rel).stem)
                entry = Entry(rel, class_name, int(m["group"]), int(m["clip"]), where)
                _add(listing, PurePosixPath(rel).stem, entry, k, kind, seen)
    return listing


def _ucf_entry(videos: Path, where: str, rel: str, classes: dict[str, int]) -> str:
    p = PurePosixPath(rel.replace("\\", "/"))
    if len(p.parts) == 2 and p.parts[0] not in classes and not p.is_absolute():
        raise ManifestError(f"{where}: class folder {p.parts[0]!r} is not in classInd.txt")
    if len(p.parts) == 2 and not _UCF_NAME.match(PurePosixPath(p.parts[1]).stem):
        raise ManifestError(f"{where}: file name {p.parts[1]!r} is not v_<Class>_gGG_cCC.<ext>")
    return _video_path(videos, where, rel, parts=2)


# --------------------------------------------------------------------------- HMDB51


def _hmdb51(videos: Path, lists: Path, splits: list[int], *_) -> Listing:
    """HMDB51: a folder a class, and a split file a class and split,
    ``<class>_test_split<K>.txt``, each line ``<video> <0|1|2>`` (1 train, 2 test, 0 unused).
    Classes in sorted order (HMDB51 has no class index); a video's group is the source part
    of its name, ``<source>_<class>_...``: clips of one film or channel stay together."""
    files: dict[str, dict[int, Path]] = {}
    for f in list_files("hmdb51", lists, splits):
        m = _HMDB_SPLIT.match(f.name)
        files.setdefault(m["cls"], {})[int(m["k"])] = f
    if not files:
        raise ManifestError(f"{lists}: no <class>_test_split<K>.txt files (HMDB51's split layout)")
    listing = Listing(sorted(files))
    sources: dict[str, str] = {}  # video id -> source part of its name
    clips: dict[str, int] = {}
    for k in splits:
        seen: dict[str, str] = {}
        for cls in listing.classes:
            f = files[cls].get(k)
            if f is None:
                raise ManifestError(f"{lists}: {cls}_test_split{k}.txt is missing (split {k} of class {cls})")
            rels = {}
            for lineno, tok in _lines(f):
                where = f"{f}:{lineno}"
                if len(tok) != 2 or tok[1] not in ("0", "1", "2"):
                    raise ManifestError(f"{where}: expected '<video file> <0|1|2>', got {' '.join(tok)!r}")
                rels[_video_path(videos, where, f"{cls}/{tok[0]}", parts=2)] = (where, tok[1])
            ids = safe_ids(list(rels), whole_path=False)
            for rel, (where, flag) in rels.items():
                vid, stem = ids[rel], PurePosixPath(rel).stem
                src = re.match(rf"^(?P<src>.+?)_{re.escape(cls)}_", stem)
                clip = re.search(r"_(\d+)$", stem)
                sources[vid] = src["src"] if src else ""
                clips[vid] = int(clip.group(1)) if clip else 0
                kind = {"1": "train", "2": "test", "0": None}[flag]
                _add(listing, vid, Entry(rel, cls, 0, clips[vid], where), k, kind, seen)
    numbers = {s: i for i, s in enumerate(sorted({s for s in sources.values() if s}), 1)}
    for vid, e in listing.entries.items():
        e.group = numbers[sources[vid]] if sources[vid] else pseudo_group(vid)
    if not all(sources.values()):
        listing.groups = "mixed"
    return listing


# --------------------------------------------------------------------------- CSV


def _csv(videos: Path, table: Path, splits: list[int], seed: int, classes_file: Path | None) -> Listing:
    """A CSV table, header ``path,label[,split1,split2,split3][,group]``: paths relative to
    the videos root, labels as names (label order sorted, or ``classes_file``'s), splitK
    ``train``, ``test`` or empty (not in that split), groups any text. Without split columns,
    split 1 tests on a seeded CSV_TEST_SHARE of the groups."""
    with open(table, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        known = {"path", "label", "group", *(f"split{k}" for k in SPLITS)}
        if not {"path", "label"} <= set(header) or set(header) - known:
            raise ManifestError(
                f"{table}:1: header must be path,label[,split1,split2,split3][,group], got {','.join(header)!r}"
            )
        split_cols = [int(c[5:]) for c in header if c.startswith("split")]
        missing = [k for k in splits if split_cols and k not in split_cols]
        if missing or (not split_cols and splits != [1]):
            raise ManifestError(
                f"{table}:1: dataset.splits {splits} needs columns "
                f"{', '.join(f'split{k}' for k in (missing or splits))} "
                "(a table without split columns has split 1 only)"
            )
        rows, first = [], {}
        for row in reader:
            where = f"{table}:{reader.line_num}"
            if None in row or any(v is None for v in row.values()):
                raise ManifestError(f"{where}: expected {len(header)} fields")
            if not row["label"].strip():
                raise ManifestError(f"{where}: empty label")
            for k in split_cols:
                if row[f"split{k}"] not in ("train", "test", ""):
                    raise ManifestError(f"{where}: split{k} must be train, test or empty, got {row[f'split{k}']!r}")
            if "group" in header and not row["group"].strip():
                raise ManifestError(f"{where}: empty group (the group column names one for every video)")
            rel = _video_path(videos, where, row["path"])
            if rel in first:
                raise ManifestError(f"{where}: video {rel} is listed twice (first at {first[rel]})")
            first[rel] = where
            rows.append((where, rel, row))
    if not rows:
        raise ManifestError(f"{table}: no videos")
    names = sorted({row["label"].strip() for _, _, row in rows})
    if classes_file:
        order = [line.strip() for line in classes_file.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        known_names = set(order)
        for where, _, row in rows:
            if row["label"].strip() not in known_names:
                raise ManifestError(f"{where}: label {row['label'].strip()!r} is not in {classes_file}")
        names = order
    listing = Listing(names, groups="column" if "group" in header else "none")
    ids = safe_ids([rel for _, rel, _ in rows], whole_path=True)
    named = sorted({r["group"].strip() for _, _, r in rows}) if "group" in header else []
    group_numbers = {g: i for i, g in enumerate(named, 1)}
    seen: dict[int, dict[str, str]] = {k: {} for k in splits}
    for where, rel, row in rows:
        vid = ids[rel]
        group = group_numbers[row["group"].strip()] if group_numbers else pseudo_group(vid)
        entry = Entry(rel, row["label"].strip(), group, 0, where)
        if not split_cols:
            _add(listing, vid, entry, None, None, {})
        for k in splits if split_cols else []:
            _add(listing, vid, entry, k, row[f"split{k}"] or None, seen[k])
    if not split_cols:
        groups = sorted({e.group for e in listing.entries.values()})
        rng = random.Random(f"moclip-test-{seed}")
        test = set(rng.sample(groups, max(1, round(CSV_TEST_SHARE * len(groups)))))
        for vid, e in listing.entries.items():
            listing.assign[vid][1] = "test" if e.group in test else "train"
    return listing


# --------------------------------------------------------------------------- a folder


def folder_videos(videos: Path | str) -> list[str]:
    """Video files under ``videos`` (relative, forward slashes), sorted; hidden entries skipped."""
    return list(_walk_videos(Path(videos)))


def _walk_videos(videos: Path):
    for root, dirs, files in os.walk(videos, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in VIDEO_SUFFIXES:
                yield Path(root, name).relative_to(videos).as_posix()


def _folder(videos: Path, *_) -> Listing:
    """Every video file under ``videos`` (nested folders, any name), unlabelled: for feature
    extraction only. Ids come from the whole path, so one file name in two folders is two videos."""
    rels = folder_videos(videos)
    if not rels:
        raise ManifestError(f"{videos}: no video files ({', '.join(sorted(VIDEO_SUFFIXES))})")
    listing = Listing([], groups="none")
    ids = safe_ids(rels, whole_path=True)
    for rel in rels:
        _add(listing, ids[rel], Entry(rel, "", pseudo_group(ids[rel]), 0, rel), None, None, {})
    return listing


# --------------------------------------------------------------------------- the registry
# A new format is one entry here (its readers above, its names), one in moclip.dataset.demo.LAYOUTS (its demo,
# so every test and the scale benchmark can make one) and its tests.


def _ucf101_files(lists: Path, splits: list[int]) -> list[Path]:
    return [lists / "classInd.txt"] + [lists / f"{kind}list0{k}.txt" for k in splits for kind in ("train", "test")]


def _ucf101_count(videos: Path, lists: Path, splits: list[int]) -> int:
    return len({tok[0] for k in splits for kind in ("train", "test") for _, tok in _ucf_list(lists, k, kind)[1]})


def _hmdb51_files(lists: Path, splits: list[int]) -> list[Path]:
    wanted = {str(k) for k in splits}
    found = (_HMDB_SPLIT.match(n) for n in sorted(os.listdir(lists)) if lists.is_dir())
    return [lists / m.group(0) for m in found if m and m["k"] in wanted]


def _hmdb51_count(videos: Path, lists: Path, splits: list[int]) -> int:
    files = _hmdb51_files(lists, splits)
    return len({(_HMDB_SPLIT.match(f.name)["cls"], tok[0]) for f in files for _, tok in _lines(f)})


def _csv_count(videos: Path, table: Path, splits: list[int]) -> int:
    with open(table, newline="", encoding="utf-8-sig") as f:
        return len({row.get("path") for row in csv.DictReader(f)})


def _folder_count(videos: Path, *_) -> int:
    return len(folder_videos(videos))


FORMATS: dict[str, Format] = {
    "ucf101": Format("directory", _ucf101, _ucf101_files, _ucf101_count, ("UCF-101", "ucfTrainTestlist")),
    "hmdb51": Format("directory", _hmdb51, _hmdb51_files, _hmdb51_count, ("hmdb51_org", "testTrainMulti_7030_splits")),
    "csv": Format("file", _csv, lambda table, splits: [table], _csv_count, ("videos", "labels.csv")),
    "folder": Format(None, _folder, lambda *_: [], _folder_count, ("videos", None)),
}
