"""A run's outputs checked against its indexes (``moclip verify``), and the broken ones cleared
so that the next ``snakemake`` rebuilds exactly their jobs and the jobs made from them.

Each file is opened with the reader its stage uses (a failure is that reader's
:class:`~moclip.io.BrokenFileError`) and compared with the index that names it: a shard
index with the manifest, a cache with its index line (video id, status, frames, frames left out), an
embedding shard with its cache index (ids in order, valid rows, NaN rows), predictions with
the split's test videos, checkpoints by their zip checksums and a load, plots by their ends.
Clearing deletes the outputs of the broken files' jobs and of every job that reads them
(:mod:`moclip.outputs`: Snakemake never rebuilds a missing file that no job to run needs).
"""

from __future__ import annotations

import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from moclip.dataset.videos import read_manifest
from moclip.heads import load_head
from moclip.io import BrokenFileError, read_json, read_tsv, reading
from moclip.mv.train import load_checkpoint
from moclip.outputs import REPORT_FILES, Run, Trained, read_run
from moclip.runtime import map_videos
from moclip.shards import DRAWS, read_shard
from moclip.video.cache import ENDS_DATASET, CacheRecord, open_cache, read_index, video_file
from moclip.video.codec import reencoded_file

PNG_START, PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


@dataclass(frozen=True)
class Broken:
    """A file that is missing, cannot be read or disagrees with its index, and the key of the
    job that makes it (None: the job that holds the file's path)."""

    path: Path
    problem: str
    job: Path | None = None


@dataclass
class Checks:
    """The files checked and those found broken, with the time each kind of file took."""

    checked: list[Path] = field(default_factory=list)
    broken: list[Broken] = field(default_factory=list)
    seconds: dict[str, list[float]] = field(default_factory=dict)  # kind -> [files, seconds]
    run: Run | None = None

    def read(self, path: Path, reader: Callable, job: Path | None = None):
        """``reader(path)``, or None with the file recorded broken."""
        self.checked.append(path)
        try:
            return reader(path)
        except BrokenFileError as e:
            self.broken.append(Broken(path, e.problem, job))
            return None

    def fail(self, path: Path, problem: str | None, job: Path | None = None) -> None:
        if problem:
            self.broken.append(Broken(path, problem, job))

    def add(self, other: Checks) -> None:
        self.checked += other.checked
        self.broken += other.broken
        for kind, (files, seconds) in other.seconds.items():
            self.count(kind, files, seconds)

    def count(self, kind: str, files: int, seconds: float) -> None:
        t = self.seconds.setdefault(kind, [0, 0.0])
        t[0] += files
        t[1] += seconds

    def clears(self, broken: Broken) -> list[Path]:
        """What clearing ``broken`` deletes: the outputs, where they exist, of its job and of
        every job that reads them."""
        key = broken.job or self.run.job_of(broken.path)
        if key is None:
            return [broken.path] if broken.path.exists() else []
        return [p for k in self.run.made_from([key]) for p in self.run.jobs[k].outputs if p.exists()]


def _differs(what: str, got: list, want: list, against: object) -> str | None:
    """A one-line disagreement of two lists, or None."""
    if got == want:
        return None
    first = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
    return f"{what} differ from {against} ({len(got)} against {len(want)}; first at row {first})"


# --------------------------------------------------------------------------- caches


def _cache_problem(path: Path, rec: CacheRecord, arrays: tuple[str, ...]) -> str | None:
    """What is wrong with one MV or frame cache given its index line, or None."""
    with open_cache(path) as f:
        a = f.attrs
        got = (str(a["video_id"]), str(a["status"]), int(a["n_frames"]), int(a.get("frames_left_out", 0)))
        if a.get("encoding") == "jpeg":  # a frame cache of JPEG frames: one end a frame
            arrays = tuple(ENDS_DATASET if k == "frames" else k for k in arrays)
        shapes = {k: f[k].shape for k in arrays}
        for k in f:  # every byte read: HDF5 checks each array's checksum (a mismatch: BrokenFileError)
            f[k][()]
    said = (rec.video_id, rec.status, rec.n_frames, rec.frames_left_out)
    if got != said:
        return f"holds {got} (video id, status, frames, frames left out) where its index says {said}"
    lengths = {s[0] for s in shapes.values()}
    if len(lengths) > 1 or ("mv" in shapes and lengths != {rec.n_frames}):
        return f"array lengths {shapes} disagree with each other or with its {rec.n_frames} frames"
    return None


def check_cache_shard(
    outputs: tuple[Path, Path, Path], ids: list[str] | None
) -> tuple[Checks, list[CacheRecord] | None]:
    """One cache shard (rule cache_shard's ``outputs``): its index against the manifest's
    ``ids`` (when known) and every cache it names; the index's records, None when broken."""
    c, (mv, frames, index), start = Checks(), outputs, time.perf_counter()
    records = c.read(index, read_index, mv)
    if records is not None and ids is not None:
        c.fail(index, _differs("video ids", sorted(r.video_id for r in records), sorted(ids), "the manifest"), mv)
    c.count("cache indexes", 1, time.perf_counter() - start)
    if records is None:
        return c, None
    start = time.perf_counter()
    for folder, arrays in (
        (mv, ("mv", "frame_type", "ref_distance", "timestamps")),
        (frames, ("frames", "frame_index")),
    ):
        for rec in records:
            path = video_file(folder, rec.video_id)
            c.fail(path, c.read(path, lambda p: _cache_problem(p, rec, arrays), mv), mv)  # noqa: B023
    c.count("caches", 2 * len(records), time.perf_counter() - start)
    return c, None if c.broken else records


def _check_cache_shard(args: tuple) -> tuple[Checks, list[CacheRecord] | None]:
    return check_cache_shard(*args)


def _reencode_shard(c: Checks, outputs: tuple[Path, Path], ids: list[str] | None) -> None:
    """Rule reencode_shard's outputs: its index against the manifest, a file for each video it re-encoded."""
    folder, index = outputs
    records = c.read(index, read_index, folder)
    if records is None:
        return
    if ids is not None:
        c.fail(index, _differs("video ids", sorted(r.video_id for r in records), sorted(ids), "the manifest"), folder)
    for r in records:
        if r.status == "reencoded":
            f = reencoded_file(folder, r.video_id)
            c.checked.append(f)
            if not f.is_file() or f.stat().st_size == 0:
                c.fail(f, "missing or empty, though the index says re-encoded", folder)


# --------------------------------------------------------------------------- features, models, reports


def _shard_problem(path: Path, records: list[CacheRecord] | None) -> str | None:
    """What is wrong with an embedding or feature shard given its shard's index, or None.
    Reading it whole checks its checksums."""
    ids, feats, valid, _ = read_shard(path)
    if records is None:
        return None
    if problem := _differs("video ids", ids, [r.video_id for r in records], "the cache index"):
        return problem
    if len(feats) != len(ids) or list(valid) != [r.status == "ok" for r in records]:
        return f"{len(feats)} rows and a valid mask that disagree with the cache index's {len(ids)} videos"
    rows = feats.reshape(len(feats), -1)
    if not np.isfinite(rows[valid]).all() or not np.isnan(rows[~valid]).all():
        return "valid rows with non-finite numbers, or failed videos' rows that are not NaN"
    with reading(path), h5py.File(path, "r") as h:  # the fusion head's MV draws, when written
        if DRAWS in h and len(h[DRAWS][()]) != len(ids):  # read whole: its checksums
            return f"{len(h[DRAWS])} rows of {DRAWS} for {len(ids)} videos"
    return None


def _zip_intact(path: Path) -> None:
    """A checkpoint's zip members against their CRC-32s (torch.load does not check them)."""
    with reading(path):
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
        except zipfile.BadZipFile as e:
            raise ValueError(f"not a checkpoint archive: {e}") from e
        if bad:
            raise ValueError(f"checksum mismatch in {bad}: the file is corrupt")


def mv_checkpoint(path: Path) -> dict:
    """An MV network checkpoint checked (its zip CRC-32s, then a load); its metadata."""
    _zip_intact(path)
    return load_checkpoint(path)[2]


def head_checkpoint(path: Path) -> dict:
    """A head checkpoint checked (its zip CRC-32s, then a load); its metadata."""
    _zip_intact(path)
    return load_head(path)[1]


def _text(path: Path) -> str:
    with reading(path):
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            raise ValueError("empty")
        return text


def _png(path: Path) -> None:
    with reading(path):
        data = path.read_bytes()
        if not (data.startswith(PNG_START) and data.endswith(PNG_END)):
            raise ValueError("not a whole PNG image (cut short?)")


def _split_of(meta: dict | None, split: int) -> str | None:
    if meta is not None and meta.get("split") != split:
        return f"made for split {meta.get('split')}, found under split{split}"
    return None


def _trained(c: Checks, t: Trained, test_ids: list[str] | None) -> None:
    """One train_mvnet, train_head or zeroshot job's outputs."""
    if t.method != "zeroshot":
        model = t.folder / "model.pt"
        c.fail(model, _split_of(c.read(model, mv_checkpoint if t.method == "mv_only" else head_checkpoint), t.split))
        c.read(t.folder / "training.json", read_json)
    if t.method != "mv_only":
        rows = c.read(t.folder / "predictions.tsv", read_tsv)
        if rows is not None and test_ids is not None:
            got = [r.get("video_id") for r in rows]
            c.fail(t.folder / "predictions.tsv", _differs("video ids", got, test_ids, "the split's test videos"))
    c.fail(t.folder / "metrics.json", _split_of(c.read(t.folder / "metrics.json", read_json), t.split))


def _report(c: Checks, folder: Path) -> None:
    rep = c.read(folder / REPORT_FILES[0], read_json)
    for name in REPORT_FILES[1:]:
        c.read(folder / name, _png if name.endswith(".png") else _text)
    named = {b.path.resolve() for b in c.broken}
    for name, rel in (rep or {}).get("artefacts", {}).items():
        if not (folder / rel).is_file() and (folder / rel).resolve() not in named:  # not already named missing
            c.fail(folder / rel, f"missing ({name} of {folder / REPORT_FILES[0]})")


# --------------------------------------------------------------------------- the run


def verify(results: Path | str, threads: int = 1) -> Checks:
    """Check every output of the run in ``results`` that its manifest, shard indexes and
    folders imply; ``threads`` processes read the caches."""
    results, c, start = Path(results), Checks(), time.perf_counter()
    rows = c.read(results / "manifest.tsv", read_manifest)
    c.read(results / "dataset.json", read_json)
    run = c.run = read_run(results, rows)
    c.count("manifest", 2, time.perf_counter() - start)

    jobs = [(run.cache_shard(n), run.shard_ids(n)) for n in run.shards]
    records: dict[int, list[CacheRecord] | None] = {}
    with map_videos(_check_cache_shard, jobs, threads) as checked:
        for n, (shard_checks, recs) in zip(run.shards, checked):
            c.add(shard_checks)
            records[n] = recs

    def timed(kind: str, check: Callable[[], None]) -> None:
        start, n = time.perf_counter(), len(c.checked)
        check()
        c.count(kind, len(c.checked) - n, time.perf_counter() - start)

    def failures() -> None:
        if (results / "reencoded").is_dir():
            for n in run.shards:
                _reencode_shard(c, run.reencode_shard(n), run.shard_ids(n))
        if not any(p.exists() for p in run.failures):
            return
        every = None if None in records.values() else [r for n in run.shards for r in records[n]]
        chosen_by = (lambda r: r.status != "ok", lambda r: r.reencoded, lambda r: r.frames_left_out > 0)
        for path, chosen in zip(run.failures, chosen_by):
            listed = c.read(path, read_index)
            if listed is not None and every is not None:
                want = sorted(r.video_id for r in every if chosen(r))
                c.fail(path, _differs("video ids", sorted(r.video_id for r in listed), want, "the cache indexes"))

    def features() -> None:
        for path, n in run.features:
            c.fail(path, c.read(path, lambda p: _shard_problem(p, records.get(n))))  # noqa: B023

    def trained() -> None:
        for t in run.trained:
            _trained(c, t, run.test_ids(t.split))

    def reports() -> None:
        for folder in run.reports.values():
            _report(c, folder)
        if any(p.exists() for p in run.summary):
            c.read(run.summary[0], read_json)
            for path in run.summary[1:]:
                c.read(path, _text)

    timed("failures and re-encodes", failures)
    timed("embedding and feature shards", features)
    timed("models and their metrics", trained)
    timed("reports", reports)
    return c


def clear(checks: Checks) -> list[Path]:
    """Delete what clearing every broken file takes (each path once); the paths deleted."""
    done = []
    for p in dict.fromkeys(p for b in checks.broken for p in checks.clears(b)):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
        else:
            continue
        done.append(p)
    return done


def table(checks: Checks) -> list[str]:
    """The broken files as aligned lines: file, what is wrong, what clearing deletes."""
    rows = [("file", "problem", "--clear deletes")]
    for b in checks.broken:
        gone = checks.clears(b)
        job = b.job or checks.run.job_of(b.path)
        own = [p for p in gone if job and p in checks.run.jobs[job].outputs]
        more = f" and {len(gone) - len(own)} outputs made from them" if len(gone) > len(own) else ""
        rows.append((str(b.path), b.problem, (", ".join(map(str, own)) or "nothing of its job") + more))
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    return [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {d}" for a, b, d in rows]
