"""Experiments: named variants of one run, and which outputs they share.

An experiment is the run's config with its ``experiments.<name>`` overrides merged in. A
stage's outputs are computed once for every experiment whose settings of that stage (and of
every stage it reads) agree, and live under the first such experiment's root: the run's top
level for the first experiment, ``experiments/<name>/`` for a later one. Heads, reports and
the summary are each experiment's own, under ``experiments/<name>/``. Without experiments
the run is one unnamed experiment whose every output lives at the top level.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moclip import plan
from moclip.config import ConfigError, check_config, merge_config, where_set
from moclip.methods import HEADS, head_inputs

# What one run's experiments cannot vary: where the outputs go, the dataset and its shards (one
# manifest for all), and the machine settings (how jobs are sized and batched).
FIXED = (
    ("results",),
    ("dataset", "format"),
    ("dataset", "videos"),
    ("dataset", "lists"),
    ("dataset", "classes"),
    ("dataset", "splits"),
    ("dataset", "shards"),
    ("demo",),
    ("features",),
    ("dense",),
    ("experiments",),
    ("clip", "device"),
    ("mvnet", "device"),
    ("gpu",),
)
# The stages whose outputs experiments share, upstream first; heads, reports and the summary
# are every experiment's own.
SHARED_STAGES = ("reencode", "cache", "clip", "zeroshot", "mvnet", "mv_features")
# Where a stage's jobs write their benchmark files (under the stage's root), and the device
# section that decides whether they run on a GPU.
STAGE_DIRS = {s: "reencoded" if s == "reencode" else s for s in SHARED_STAGES}
DEVICE_SECTIONS = {"clip": "clip", "zeroshot": "clip", "mvnet": "mvnet", "mv_features": "mvnet"}
FRAME_KEYS = ("frame_count", "short_side")  # decode settings that shape the frame caches only
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Experiment:
    """One experiment: its name ('' for a run without experiments), its whole config, the
    root each shared stage's outputs live under and the root of its own outputs."""

    name: str
    config: dict = field(repr=False)
    roots: dict[str, str]
    own: str

    @functools.cached_property
    def clip_tag(self) -> str:
        return plan.clip_tag(self.config)

    @functools.cached_property
    def mv_tag(self) -> str:
        return plan.mv_tag(self.config)


def stage_keys(config: dict) -> dict[str, Any]:
    """Each shared stage's settings, with those of the stages it reads: two experiments share
    a stage's outputs exactly when their keys for it are equal."""
    reencode = plan.reencode_settings(config) if plan.reencoding(config) else None
    cache = {
        "reencode": reencode,
        "decode": plan.decode_settings(config),
        "storage": plan.frame_storage(config),
        "compression": config["cache"]["compression"],
    }
    # the MV maps of a cache do not depend on how many frames it keeps, nor how
    mv_cache = {**cache, "decode": {k: v for k, v in cache["decode"].items() if k not in FRAME_KEYS}, "storage": None}
    clip = {"cache": cache, "clip": plan.clip_settings(config)}
    zeroshot = {"clip": clip, **{k: config["clip"][k] for k in plan.ZEROSHOT_SETTINGS}}
    mvnet = {"cache": mv_cache, "mv": plan.mv_settings(config)}
    mv_features = {"mvnet": mvnet, "draws": config["heads"]["mv_draws"]}
    return {
        "reencode": reencode,
        "cache": cache,
        "clip": clip,
        "zeroshot": zeroshot,
        "mvnet": mvnet,
        "mv_features": mv_features,
    }


def _get(config: dict, keys: tuple[str, ...]) -> Any:
    for k in keys:
        if not isinstance(config, dict) or k not in config:
            return None
        config = config[k]
    return config


def experiment_configs(config: dict, schema: Path | str | dict, sources: Iterable[Path | str] = ()) -> dict[str, dict]:
    """Each experiment's whole config, in the order given (empty without experiments); a bad
    name, an override of what experiments share, or a value the schema rejects is a
    ConfigError naming the experiment and the file and line that set it."""
    sources = list(sources)
    base = {k: v for k, v in config.items() if k != "experiments"}
    out, errors = {}, []
    for name, change in (config.get("experiments") or {}).items():
        where = where_set(["experiments", str(name)], sources)
        if not isinstance(name, str) or not NAME.fullmatch(name):
            errors.append(f"{where}experiments: {name!r} is not a name (letters, digits, '.', '_', '-')")
            continue
        change = change or {}
        fixed = [".".join(k) for k in FIXED if _get(change, k) is not None]
        if fixed:
            key = fixed[0].split(".")
            errors.append(
                f"experiment {name!r}: {where_set(['experiments', name, *key], sources) or where}"
                f"{fixed[0]} cannot differ between experiments (they share one dataset, its "
                "shards and the output root); start a run of its own for it"
            )
            continue
        merged = {**merge_config(base, change), "experiments": {}}
        try:
            check_config(merged, schema, sources, under=["experiments", name])
        except ConfigError as e:
            errors += [f"experiment {name!r}: {line}" for line in str(e).splitlines()]
            continue
        out[name] = merged
    if errors:
        raise ConfigError("\n".join(errors))
    return out


def experiments(config: dict, configs: dict[str, dict] | None = None) -> list[Experiment]:
    """The run's experiments with the root of each stage's outputs (see the module's
    docstring); ``configs``: experiment_configs' result (none: a run without experiments)."""
    if not configs:
        return [Experiment("", config, dict.fromkeys(SHARED_STAGES, ""), "")]
    names = list(configs)
    keys = {n: stage_keys(c) for n, c in configs.items()}

    def root(name: str) -> str:
        return "" if name == names[0] else f"experiments/{name}/"

    return [
        Experiment(
            name,
            configs[name],
            {s: root(next(o for o in names if keys[o][s] == keys[name][s])) for s in SHARED_STAGES},
            f"experiments/{name}/",
        )
        for name in names
    ]


def _runs(stage: str, config: dict) -> bool:
    """Whether a run of ``config`` has the stage at all."""
    if stage == "reencode":
        return plan.reencoding(config)
    return stage != "zeroshot" or config["clip"]["pretrained"] != "none"


def describe(exps: list[Experiment]) -> list[str]:
    """One line an experiment: the stages whose outputs it shares (with whom) and those it
    adds (its own heads, reports and summary always)."""
    if len(exps) == 1 and not exps[0].name:
        return []
    lines = []
    for e in exps:
        runs = [s for s in SHARED_STAGES if _runs(s, e.config)]
        mine = "" if e is exps[0] else e.own
        shared = [s for s in runs if e.roots[s] != mine]
        added = [s for s in runs if s not in shared]
        owner = {s: e.roots[s].removeprefix("experiments/").rstrip("/") or exps[0].name for s in shared}
        line = f"experiment {e.name}: adds {', '.join([*added, 'heads', 'reports'])}"
        if shared:
            line += "; shares " + ", ".join(f"{s} ({owner[s]})" for s in shared)
        lines.append(line)
    return lines


def own_jobs(e: Experiment, exps: list[Experiment]) -> list[str]:
    """Globs (under the benchmarks directory) of the benchmark files of the jobs ``e`` added:
    the stages whose outputs live under its root, and its heads, reports and summary."""
    mine = "" if e is exps[0] else e.own
    stages = [f"{mine}{STAGE_DIRS[s]}/**/*.tsv" for s in SHARED_STAGES if e.roots[s] == mine]
    return [*stages, f"{e.own}heads/**/*.tsv", f"{e.own}reports/*.tsv", f"{e.own}summary.tsv"]


def by_root(exps: list[Experiment]) -> dict[str, Experiment]:
    """An output root (a job's ``exp`` wildcard: '' or ``experiments/<name>/``) -> the
    experiment whose outputs it holds ('' the first's shared ones)."""
    return {"": exps[0], **{e.own: e for e in exps}}


def experiment_wildcards(exps: list[Experiment]) -> dict[str, str]:
    """The regular expressions of the wildcards the experiments decide: the output roots
    ('' included), the CLIP and MV tags, and the heads' input directories."""

    def one_of(values) -> str:
        return "(?:" + "|".join(re.escape(v) for v in sorted(set(values))) + ")"

    return {
        "exp": one_of(by_root(exps)),
        "clip": one_of(e.clip_tag for e in exps),
        "mv": one_of(e.mv_tag for e in exps),
        "inputs": one_of(head_inputs(h, e.clip_tag, e.mv_tag) for e in exps for h in HEADS),
    }
