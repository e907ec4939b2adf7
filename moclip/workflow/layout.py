"""The run as the workflow lays it out at parse time: the dataset's paths (the user's, or
the generated demo's), its videos and shards, and which stages run on a GPU, where one job
takes every shard. rules/common.smk builds one ``Layout`` and keeps Snakemake's glue; every
cluster job builds it again, so it stays cheap (no walk over the dataset but a folder's
listing; the videos are counted only when asked, after the run's checks)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property

from moclip.dataset.demo import DemoSpec
from moclip.dataset.formats import FORMATS, count_videos, folder_videos, split_sizes
from moclip.dataset.formats import list_files as format_list_files
from moclip.dataset.manifest import resolve_shards
from moclip.workflow import plan
from moclip.workflow.config import ConfigError, where_set

SHARD_DIGITS = 5  # shard-00000 ...: the wildcard constraint and the shard list
# A GPU job's start-up (Python, torch, the CUDA context, the model: 10.6-14.8 s for
# ViT-B-32 and EfficientNet-B0 on an H200, benchmarks/gpu) is ~15x the GPU work of one
# CLIP shard, so on a GPU one job takes every shard (one a network for mv_features);
# on the CPU one job a shard spreads over the cores. Outputs stay one file a shard.
GPU_THREADS = 5  # 4 loader workers: data wait 66% -> 7% (MV training), CLIP 1,900 -> 3,200 images/s
CPU_THREADS = 2


@dataclass(frozen=True)
class Layout:
    """A validated config's dataset and jobs; ``auto_gpu``: ``device: auto`` means a GPU (this
    machine has a card and the jobs run here, or the jobs go to a cluster); ``sources``: the
    config's files, in merge order, so that a path that does not exist is named with the file
    and line that set it."""

    config: dict = field(repr=False)
    auto_gpu: bool = False
    sources: tuple = field(default=(), repr=False)

    def _set_at(self, key: str) -> str:
        """``file:line: `` of the file that set ``dataset.<key>``, or ``config: ``."""
        return where_set(["dataset", key], self.sources) or "config: "

    @property
    def results(self) -> str:
        return self.config["results"].rstrip("/")

    @property
    def format(self) -> str:
        return self.config["dataset"]["format"]

    @property
    def labelled(self) -> bool:
        """Whether the run trains and tests (a folder run extracts features only)."""
        return plan.labelled(self.config)

    @property
    def demo(self) -> bool:
        """Whether the workflow generates its dataset (no dataset.videos)."""
        return self.config["dataset"]["videos"] is None

    @property
    def splits(self) -> list[int]:
        return self.config["dataset"]["splits"]

    @cached_property
    def demo_dirs(self) -> dict[str, str]:
        """The generated demo's videos and lists, in the format's layout, named as the
        dataset's downloads."""
        names = zip(("videos", "lists"), FORMATS[self.format].names)
        return {k: f"{self.results}/demo/{name}" for k, name in names if name}

    @property
    def lists_are_a_file(self) -> bool:
        """The format's lists are one file (a CSV table), not a folder."""
        return FORMATS[self.format].lists == "file"

    @cached_property
    def paths(self) -> tuple[str, str | None]:
        """The videos' root and the lists (a folder, a CSV file, or None for a folder run):
        the user's, checked to exist with dataset.classes (else one ConfigError line naming the
        file and line that set it), or the generated demo's."""
        d = self.config["dataset"]
        if self.demo:
            return self.demo_dirs["videos"], self.demo_dirs.get("lists")
        videos, lists = d["videos"], d["lists"]
        if not os.path.isdir(videos):
            raise ConfigError(f"{self._set_at('videos')}dataset.videos: {videos!r} is not a directory")
        if not self.labelled:
            return videos, None
        if lists is None:  # named where the dataset's videos were given, the lists' place
            raise ConfigError(f"{self._set_at('videos')}dataset.lists is required with dataset.format: {self.format}")
        kind = FORMATS[self.format].lists
        if not (os.path.isfile(lists) if kind == "file" else os.path.isdir(lists)):
            raise ConfigError(f"{self._set_at('lists')}dataset.lists: {lists!r} is not a {kind}")
        if d["classes"] is not None and not os.path.isfile(d["classes"]):
            raise ConfigError(f"{self._set_at('classes')}dataset.classes: {d['classes']!r} is not a file")
        return videos, lists

    @property
    def videos(self) -> str:
        return self.paths[0]

    @property
    def lists(self) -> str | None:
        return self.paths[1]

    @cached_property
    def folder_videos(self) -> list[str]:
        """A folder run's videos, listed once: the count sizes the shards, and a digest of
        the list reruns the manifest when a video is added or removed."""
        return [] if self.demo or self.labelled else folder_videos(self.videos)

    @property
    def list_files(self) -> list[str]:
        """The files the manifest reads besides the videos (a real dataset's): the format's
        lists (split lists, the CSV table) and the class-order file."""
        classes = self.config["dataset"]["classes"]
        files = [str(f) for f in format_list_files(self.format, self.lists, self.splits)]
        return files + ([classes] if classes else [])

    @cached_property
    def n_videos(self) -> int:
        """Videos the lists name, the folder holds, or the demo's spec makes."""
        if self.demo:
            return DemoSpec.from_config({**self.config["demo"], "seed": self.config["seed"]}).n_videos()
        if not self.labelled:
            return len(self.folder_videos)
        return count_videos(self.format, self.videos, self.lists, self.splits)

    @cached_property
    def split_videos(self) -> tuple[int, int] | None:
        """The most videos a split of the run trains on (validation included) and tests on,
        from a real dataset's lists (the demo's are made by the workflow: None)."""
        if self.demo or not self.labelled:
            return None
        return split_sizes(self.format, self.lists, self.splits)

    @cached_property
    def shards(self) -> list[str]:
        """The shards' names, known before the manifest checkpoint runs: dataset.shards, or
        with auto about dataset.videos_per_shard videos a shard."""
        d = self.config["dataset"]
        n = resolve_shards(d["shards"], d["videos_per_shard"], lambda: self.n_videos)
        return [f"{s:0{SHARD_DIGITS}d}" for s in range(n)]

    def on_gpu(self, section: str) -> bool:
        """Whether the stage of ``config[section]`` runs on a GPU: ``cuda`` (any card)
        always; ``auto`` when ``auto_gpu``. Every job of a run must plan the same DAG, so
        ``auto`` is decided once for the run, not on each job's node."""
        device = self.config[section]["device"]
        return self.auto_gpu if device == "auto" else device != "cpu"

    def threads(self, section: str) -> int:
        """The threads of a job of the stage of ``config[section]`` (Snakemake's, capped by
        --cores): on a GPU, loader workers beside the main process; on the CPU, at least
        the threads torch computes with (``cpu_threads``, fixed whatever this gives)."""
        if self.on_gpu(section):
            return GPU_THREADS
        return max(CPU_THREADS, self.config[section]["cpu_threads"])

    @property
    def clip_batched(self) -> bool:
        """One clip_embed job takes every shard (on a GPU)."""
        return self.on_gpu("clip")

    @property
    def mv_batched(self) -> bool:
        """One mv_features job a network takes every shard (on a GPU)."""
        return self.on_gpu("mvnet")

    @property
    def networks(self) -> list[int | None]:
        """The MV networks features are written for: a split's, or a folder run's given one."""
        return self.splits if self.labelled else [None]


def gpu_slots_line(limit: int | None, cards: int, jobs_per_card: int) -> str | None:
    """What Snakemake's ``gpu`` limit (``--resources gpu``; None: none set) does against the
    slots of the cards the jobs see (``cards`` x ``gpu.jobs_per_card``, each GPU job taking
    one, moclip.runtime.claim_gpu), when they differ: a line for the run's start."""
    slots = cards * jobs_per_card
    have = f"{cards} card(s) x gpu.jobs_per_card {jobs_per_card} = {slots} GPU slot(s)"
    if limit is None or limit > slots:
        starts = "no --resources gpu limit" if limit is None else f"--resources gpu={limit}"
        return f"{have}, {starts}: GPU jobs beyond the slots start and wait for a slot (--resources gpu={slots})"
    if limit < slots:
        return f"{have}, --resources gpu={limit}: {limit} GPU job(s) at a time; --resources gpu={slots} fills the slots"
    return None
