"""Experiments: named variants of one run, and which outputs they share.

An experiment is the run's config with its ``experiments.<name>`` overrides merged in. The
run itself (its config without experiments) keeps its outputs at the top level, as a run
without experiments does: an experiment whose settings of a stage (and of every stage it
reads) equal the run's uses the top level's outputs of that stage, and one whose every
setting equals the run's (``base: {}``) is the run, its heads, reports and summary
included. Otherwise a stage's outputs are computed once for every experiment whose settings
of it agree, under the first such experiment's ``experiments/<name>/``, and so are the heads,
reports and summary of experiments whose whole configs agree. So adding experiments to a
finished run computes only what is new. Without experiments the run is one unnamed
experiment whose every output lives at the top level.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moclip.methods import HEADS, head_inputs
from moclip.workflow import plan
from moclip.workflow.config import ConfigError, check_config, merge_config, where_set

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


def _without_experiments(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "experiments"}


def experiments(config: dict, configs: dict[str, dict] | None = None) -> list[Experiment]:
    """The run's experiments with the root of each stage's outputs and of their own (see the
    module's docstring); ``configs``: experiment_configs' result (none: a run without
    experiments)."""
    if not configs:
        return [Experiment("", config, dict.fromkeys(SHARED_STAGES, ""), "")]
    donors = ["", *configs]  # the run itself first: its outputs are the top level's
    whole = {"": _without_experiments(config), **{n: _without_experiments(c) for n, c in configs.items()}}
    keys = {n: stage_keys(c) for n, c in whole.items()}

    def root(name: str, values: dict[str, Any]) -> str:
        """The root of the first donor whose value (a stage's key, or the whole config) is
        ``name``'s: the top level for the run's."""
        donor = next(o for o in donors if values[o] == values[name])
        return f"experiments/{donor}/" if donor else ""

    return [
        Experiment(
            name,
            configs[name],
            {s: root(name, {o: k[s] for o, k in keys.items()}) for s in SHARED_STAGES},
            root(name, whole),
        )
        for name in configs
    ]


def the_run(config: dict) -> Experiment:
    """The run itself (its config without experiments) as an experiment: every output at the
    top level."""
    return Experiment("", {**_without_experiments(config), "experiments": {}}, dict.fromkeys(SHARED_STAGES, ""), "")


def _first_users(exps: list[Experiment]) -> dict[tuple[str, str], Experiment]:
    """(a shared stage or "own", an output root) -> the first experiment whose outputs of it
    live there: the one a job there is counted to (it "adds" the outputs, later ones share)."""
    first: dict[tuple[str, str], Experiment] = {}
    for e in exps:
        for what, where in (*e.roots.items(), ("own", e.own)):
            first.setdefault((what, where), e)
    return first


def _runs(stage: str, config: dict) -> bool:
    """Whether a run of ``config`` has the stage at all."""
    if stage == "reencode":
        return plan.reencoding(config)
    return stage != "zeroshot" or config["clip"]["pretrained"] != "none"


def describe(exps: list[Experiment]) -> list[str]:
    """One line an experiment: the outputs it adds (those it is the first to use) and those it
    shares (with whom); an experiment equal to the run says it is the run itself."""
    if len(exps) == 1 and not exps[0].name:
        return []
    first = _first_users(exps)
    lines = []
    for e in exps:
        runs = [s for s in SHARED_STAGES if _runs(s, e.config)]
        owners = {s: first[s, e.roots[s]] for s in runs}
        owners |= dict.fromkeys(("heads", "reports"), first["own", e.own])
        added = [s for s, o in owners.items() if o is e]
        shared = [f"{s} ({o.name})" for s, o in owners.items() if o is not e]
        line = f"experiment {e.name}: "
        if not e.own:
            line += "the run itself (its outputs at the top level): "
        line += f"adds {', '.join(added) or 'nothing'}"
        if shared:
            line += "; shares " + ", ".join(shared)
        lines.append(line)
    return lines


def own_jobs(e: Experiment, exps: list[Experiment]) -> list[str]:
    """Globs (under the benchmarks directory) of the benchmark files of the jobs ``e`` added:
    those of the outputs it is the first to use, at their roots and for its tags (a finished
    run's top level may hold other settings' jobs too)."""
    first = _first_users(exps)
    tags = {"clip": e.clip_tag, "zeroshot": e.clip_tag, "mvnet": e.mv_tag, "mv_features": e.mv_tag}
    globs = [
        f"{e.roots[s]}{STAGE_DIRS[s]}/{tags[s] + '/' if s in tags else ''}**/*.tsv"
        for s in SHARED_STAGES
        if _runs(s, e.config) and first[s, e.roots[s]] is e
    ]
    if first["own", e.own] is e:
        globs += [f"{e.own}heads/{head_inputs(h, e.clip_tag, e.mv_tag)}/split*/{h}.tsv" for h in HEADS]
        globs += [f"{e.own}reports/*.tsv", f"{e.own}summary.tsv"]
    return globs


def by_root(config: dict, exps: list[Experiment]) -> dict[str, Experiment]:
    """An output root (a job's ``exp`` wildcard: '' or ``experiments/<name>/``) -> the
    experiment whose config its jobs run with: the top level's, the run itself (an experiment
    equal to it, for its name in the report); a name's, that experiment."""
    run = next((e for e in exps if not e.own), None) or the_run(config)
    named = {f"experiments/{e.name}/": e for e in exps}
    used = {r for e in exps for r in (*e.roots.values(), e.own)} - {""}
    return {"": run, **{r: named[r] for r in sorted(used)}}


def experiment_wildcards(exps: list[Experiment]) -> dict[str, str]:
    """The regular expressions of the wildcards the experiments decide: the output roots
    ('' included), the CLIP and MV tags, and the heads' input directories."""

    def one_of(values) -> str:
        return "(?:" + "|".join(re.escape(v) for v in sorted(set(values))) + ")"

    return {
        "exp": one_of({"", *(r for e in exps for r in (*e.roots.values(), e.own))}),
        "clip": one_of(e.clip_tag for e in exps),
        "mv": one_of(e.mv_tag for e in exps),
        "inputs": one_of(head_inputs(h, e.clip_tag, e.mv_tag) for e in exps for h in HEADS),
    }
