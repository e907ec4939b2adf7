"""A run's jobs, read back from its results folder: each job's outputs, named as rules/*.smk
names them, and the jobs that read them (``moclip verify`` checks the one and clears along
the other).

Snakemake rebuilds a missing file only for a job that has to run: a deleted intermediate
file whose readers are up to date is never made again. So clearing a broken file deletes
its job's outputs and those of every job that reads them, down to the run's targets; the
next run then rebuilds exactly those jobs. Only inputs that are not ``ancient()`` count as
reads (the manifest is ancient to the caches: a rebuilt manifest never reruns them).
``tests/test_verify.py`` holds this layout to Snakemake's own list of a run's outputs, and
the jobs a clear reruns to those of ``snakemake --forcerun``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from moclip.dataset.videos import SPLITS, Video
from moclip.io import BrokenFileError, read_json
from moclip.methods import CONFUSION_PLOT, HEADS, PRODUCT_MODEL, STREAMS, head_inputs, lives_in

REPORT_FILES = ("metrics.json", "table.html", CONFUSION_PLOT, "per_class_top1.png", "training_curves.png")
SUMMARY_FILES = ("summary.json", "summary.md", "summary.html")
COMPARISON_FILES = ("json", "md", "html", "png")  # experiments.<ext>: rule compare_experiments
TRAINED_FILES = {  # a trained job's outputs, by method
    "mv_only": ("model.pt", "training.json", "metrics.json"),
    **{head: ("model.pt", "predictions.tsv", "training.json", "metrics.json") for head in HEADS},
    "zeroshot": ("predictions.tsv", "metrics.json"),
}


def shard_name(n: int) -> str:
    return f"shard-{n:05d}"  # rules/common.smk: SHARD_DIGITS


@dataclass
class Job:
    """One job's outputs and the jobs that read them (by their keys, their first outputs)."""

    outputs: tuple[Path, ...]
    readers: set[Path] = field(default_factory=set)


@dataclass(frozen=True)
class Trained:
    """A train_mvnet, train_head or zeroshot job: its folder, split and method."""

    folder: Path
    split: int
    method: str


@dataclass
class Run:
    """A run's jobs, from its manifest (None when unreadable) and the folders in ``results``."""

    results: Path
    rows: list[Video] | None
    shards: list[int] = field(default_factory=list)
    splits: set[int] = field(default_factory=set)
    jobs: dict[Path, Job] = field(default_factory=dict)
    features: list[tuple[Path, int]] = field(default_factory=list)  # CLIP and MV shard files, with their shard
    trained: list[Trained] = field(default_factory=list)
    reports: dict[int, Path] = field(default_factory=dict)

    @property
    def manifest(self) -> tuple[Path, Path]:
        return self.results / "manifest.tsv", self.results / "dataset.json"

    @property
    def failures(self) -> tuple[Path, Path, Path]:
        """Rule cache_failures' outputs: the failed, the re-encoded and the cut videos."""
        c = self.results / "cache"
        return c / "failures.tsv", c / "reencoded.tsv", c / "cut.tsv"

    @property
    def summary(self) -> tuple[Path, ...]:
        return tuple(self.results / name for name in SUMMARY_FILES)

    def cache_shard(self, n: int) -> tuple[Path, Path, Path]:
        """Rule cache_shard's outputs: the MV and frame directories, the index."""
        c = self.results / "cache"
        return c / "mv" / shard_name(n), c / "frames" / shard_name(n), c / "index" / f"{shard_name(n)}.tsv"

    def reencode_shard(self, n: int) -> tuple[Path, Path]:
        """Rule reencode_shard's outputs: the re-encodes' directory, the index."""
        r = self.results / "reencoded"
        return r / shard_name(n), r / "index" / f"{shard_name(n)}.tsv"

    def test_ids(self, split: int) -> list[str] | None:
        return None if self.rows is None else [r.video_id for r in self.rows if r.split(split) == "test"]

    def shard_ids(self, n: int) -> list[str] | None:
        return None if self.rows is None else [r.video_id for r in self.rows if r.shard == n]

    def job_of(self, path: Path) -> Path | None:
        """The key of the job whose output holds ``path`` (a cache file: its shard's directory)."""
        for p in (path, path.parent):
            for key, job in self.jobs.items():
                if p in job.outputs:
                    return key
        return None

    def made_from(self, keys: Iterable[Path]) -> list[Path]:
        """Jobs ``keys`` and every job that reads their outputs, directly or not."""
        todo, seen = list(keys), {}
        while todo:
            key = todo.pop()
            if key not in seen:
                seen[key] = None
                todo += sorted(self.jobs[key].readers)
        return list(seen)


def _dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _numbers(paths: Iterable[Path], pattern: str) -> set[int]:
    return {int(m.group(1)) for p in paths if (m := re.fullmatch(pattern, p.name))}


def _splits(folder: Path, known: set[int]) -> list[int]:
    """The run's splits, and any other split folder found in ``folder``."""
    return sorted(known | _numbers(_dirs(folder), r"split(\d+)"))


def current_tags(reports: dict[int, Path], results: Path) -> tuple[str | None, str | None]:
    """The CLIP and MV tags the reports were made from (their artefacts: the product head,
    ``heads/<clip>/<mv>/...``), or None where no report says."""
    for folder in reports.values():
        try:
            product = read_json(folder / "metrics.json")["artefacts"][PRODUCT_MODEL]
        except (BrokenFileError, KeyError, TypeError):
            continue
        parts = (folder / product).resolve().relative_to(results.resolve()).parts
        if len(parts) > 3 and parts[0] == "heads":
            return parts[1], parts[2]
    return None, None


def read_run(results: Path | str, rows: list[Video] | None) -> Run:
    """The jobs of the run in ``results`` with manifest ``rows``: the shards it names or the
    folders hold, the splits it assigns, and every model, head and report folder found.

    Outputs of another configuration (a CLIP or MV tag the reports were not made from) read
    the caches and the manifest as well, but Snakemake would not rebuild them now: a file
    shared with this configuration does not count them as its readers, so clearing it
    leaves them be (going back to that configuration reruns them by their inputs' times)."""
    results = Path(results)
    run = Run(results, rows)
    cache = results / "cache"
    shards = set() if rows is None else {r.shard for r in rows}
    shards |= _numbers((cache / "index").glob("shard-*.tsv"), r"shard-(\d+)\.tsv")
    shards |= _numbers(_dirs(cache / "mv") + _dirs(cache / "frames"), r"shard-(\d+)")
    run.shards = sorted(shards)
    run.splits = set() if rows is None else {k for k in SPLITS if any(r.split(k) for r in rows)}
    if (results / "reports").is_dir():
        run.reports = {k: results / "reports" / f"split{k}" for k in _splits(results / "reports", run.splits)}
    now_clip, now_mv = current_tags(run.reports, results)
    jobs = run.jobs

    def job(*outputs: Path) -> Path:
        jobs.setdefault(outputs[0], Job(tuple(outputs)))
        return outputs[0]

    def reads(reader: Path, sources: Iterable[Path], clip_tag: str | None = None, mv_tag: str | None = None) -> None:
        """``reader`` reads ``sources``; shared ones (no tag of their own) only for this configuration's tags."""
        here = (now_clip is None or clip_tag in (None, now_clip)) and (now_mv is None or mv_tag in (None, now_mv))
        for key in sources:
            if here or key not in shared_jobs:
                jobs[key].readers.add(reader)

    manifest, failures = job(*run.manifest), job(*run.failures)
    caches = {n: job(*run.cache_shard(n)) for n in run.shards}
    shared_jobs = {manifest, failures, *caches.values()}
    reads(failures, caches.values())
    if (results / "reencoded").is_dir():
        for n in run.shards:
            reads(caches[n], [job(*run.reencode_shard(n))])

    def tag_dirs(folder: Path, now: str | None) -> list[Path]:
        """The tag folders in ``folder``, and the reports' tag there even when Snakemake, which
        removes the folders a failed job's deleted outputs leave empty, has taken it away."""
        return sorted({*_dirs(folder), *([folder / now] if now else [])})

    mvnets = {}
    for tag in tag_dirs(results / "mvnet", now_mv):
        for k in _splits(tag, run.splits):
            run.trained.append(Trained(tag / f"split{k}", k, "mv_only"))
            mvnets[tag.name, k] = job(*(tag / f"split{k}" / f for f in TRAINED_FILES["mv_only"]))
            reads(mvnets[tag.name, k], [manifest, *caches.values()], mv_tag=tag.name)
    clip: dict[str, list[Path]] = {}
    for tag in tag_dirs(results / "embeddings" / "clip", now_clip):
        for n in run.shards:
            run.features.append((tag / f"{shard_name(n)}.h5", n))
            clip.setdefault(tag.name, []).append(job(run.features[-1][0]))
            reads(clip[tag.name][-1], [caches[n]], clip_tag=tag.name)
    mv: dict[tuple[str, int | None], list[Path]] = {}
    for tag in tag_dirs(results / "embeddings" / "mv", now_mv):
        for k in _splits(tag, run.splits) if run.splits or _dirs(tag) else [None]:  # None: a folder run's
            for n in run.shards:
                run.features.append(((tag if k is None else tag / f"split{k}") / f"{shard_name(n)}.h5", n))
                mv.setdefault((tag.name, k), []).append(job(run.features[-1][0]))
                model = [mvnets[tag.name, k]] if (tag.name, k) in mvnets else []
                reads(mv[tag.name, k][-1], [caches[n], *model], mv_tag=tag.name)
    to_report: dict[int, list[Path]] = {k: [manifest, failures] for k in run.reports}
    for k in run.reports:
        to_report[k] += [mvnets[now_mv, k]] if (now_mv, k) in mvnets else []
    for tag in _dirs(results / "zeroshot"):
        for k in _splits(tag, run.splits):
            run.trained.append(Trained(tag / f"split{k}", k, "zeroshot"))
            key = job(*(tag / f"split{k}" / f for f in TRAINED_FILES["zeroshot"]))
            reads(key, [manifest, *clip.get(tag.name, [])], clip_tag=tag.name)
            if tag.name == now_clip and k in to_report:
                to_report[k].append(key)
    pairs = {(c.name, m.name) for c in _dirs(results / "heads") for m in _dirs(c)}
    if now_clip and now_mv:
        pairs |= {tuple(head_inputs(h, now_clip, now_mv).split("/")) for h in HEADS}
    for clip_name, mv_name in sorted(pairs):
        clip_tag, mv_tag = results / "heads" / clip_name, results / "heads" / clip_name / mv_name
        inputs = f"{clip_tag.name}/{mv_tag.name}"
        for k in _splits(mv_tag, run.splits):
            for head in HEADS:
                if not lives_in(head, clip_tag.name, mv_tag.name):
                    continue  # another head's folder: it reads other streams
                folder = mv_tag / f"split{k}" / head
                run.trained.append(Trained(folder, k, head))
                key = job(*(folder / f for f in TRAINED_FILES[head]))
                feats = {"clip": clip.get(clip_tag.name, []), "mv": mv.get((mv_tag.name, k), [])}
                sources = [f for s in HEADS[head].streams for f in feats[s]]
                tags = [t if HEADS[head].reads(s) else None for s, t in zip(STREAMS, (clip_tag.name, mv_tag.name))]
                reads(key, [manifest, *sources], *tags)
                if now_clip and inputs == head_inputs(head, now_clip, now_mv) and k in to_report:
                    to_report[k].append(key)
    reports = [job(*(folder / f for f in REPORT_FILES)) for folder in run.reports.values()]
    for key, k in zip(reports, run.reports):
        reads(key, to_report[k])
    if reports or any(p.exists() for p in run.summary):
        reads(job(*run.summary), [manifest, *reports])
    if experiments := experiments_made(results):
        # The experiments' heads, reports and summaries under experiments/, and the comparison,
        # read what this top level holds (the run's own, an experiment equal to it included),
        # by roots this folder does not record: every job here counts them as readers, so a
        # cleared file takes them along and the next run, which needs them, rebuilds it.
        key = job(*experiments)
        for other in list(jobs):
            if other != key:
                jobs[other].readers.add(key)
    return run


def experiments_made(results: Path) -> list[Path]:
    """A run with experiments: the heads, reports and summary of each experiment under
    ``experiments/`` (one equal to the run has its own at the top level), and the
    comparison (none without experiments)."""
    folders = _dirs(results / "experiments")
    comparison = [results / f"experiments.{ext}" for ext in COMPARISON_FILES]
    if not folders and not any(p.exists() for p in comparison):
        return []
    own = [f / name for f in folders for name in ("heads", "reports", *SUMMARY_FILES)]
    return [*own, *comparison]
