"""The experiments of one run side by side: each method's mean top-1 over splits, its change
from the first experiment against the seed noise, its cost a video, and what the jobs each
experiment added took (Snakemake's benchmark files)."""

from __future__ import annotations

import csv
import glob
import logging
import math
import os
from pathlib import Path

from moclip.io import read_json, write_json, write_text
from moclip.methods import METHODS
from moclip.tables import html_table, markdown_table

log = logging.getLogger(__name__)


def job_times(benchmarks: Path | str, patterns: list[str], gpu_dirs: list[str] = ()) -> dict:
    """Jobs, wall seconds, CPU seconds and GPU jobs' wall seconds of the benchmark files under
    ``benchmarks`` that ``patterns`` (globs relative to it) match; a GPU job is one whose file
    lies in a directory of ``gpu_dirs`` (a stage run on a GPU)."""
    files = sorted({f for p in patterns for f in glob.glob(str(Path(benchmarks, p)), recursive=True)})
    out = {"jobs": 0, "wall_s": 0.0, "cpu_s": 0.0, "gpu_wall_s": 0.0}
    for f in files:
        with open(f, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows:
            continue
        row = rows[-1]  # the last attempt's
        wall, cpu = float(row["s"]), float(row.get("cpu_time") or 0)
        out["jobs"] += 1
        out["wall_s"] += wall
        out["cpu_s"] += cpu
        if set(Path(f).relative_to(benchmarks).parts) & set(gpu_dirs):
            out["gpu_wall_s"] += wall
    return out


def _seed_noise(a: dict, b: dict) -> float | None:
    """Standard error of the difference of two methods' means over splits from the spread
    of their seeds (each split's value is a mean over its seeds); None without seeds."""
    splits = sorted(set(a["splits"]) & set(b["splits"]))
    var = 0.0
    for k in splits:
        for m in (a["splits"][k], b["splits"][k]):
            if m.get("top1_sd_seeds") is None:
                return None
            var += m["top1_sd_seeds"] ** 2 / m["seeds"]
    return math.sqrt(var) / len(splits) if splits else None


def comparison(summaries: dict[str, dict], times: dict[str, dict]) -> dict:
    """Rows of experiment x method (in the order given), with the change from the first
    experiment's same method and whether it exceeds twice the seed noise."""
    names = list(summaries)
    base = summaries[names[0]]["methods"]
    rows = []
    for name in names:
        for method in METHODS:
            m = summaries[name]["methods"].get(method)
            if m is None:
                continue
            row = {
                "experiment": name,
                "method": method,
                "top1_mean": m["top1_mean"],
                "top1_sd": m["top1_sd"],
                "gmacs": m["gflops"] / 2 if "gflops" in m else None,
            }
            if name != names[0] and method in base:
                noise = _seed_noise(m, base[method])
                row["delta"] = m["top1_mean"] - base[method]["top1_mean"]
                row["seed_noise"] = noise
                row["beyond_noise"] = None if noise is None else abs(row["delta"]) > 2 * noise
            rows.append(row)
    comp = {"experiments": names, "rows": rows, "jobs": times}
    warnings = sorted({s["warning"] for s in summaries.values() if "warning" in s})
    if warnings:  # random CLIP weights in some experiment: its CLIP numbers say nothing
        comp["warning"] = " ".join(warnings)
    return comp


def _delta(row: dict) -> str:
    if "delta" not in row:  # the first experiment has no such method
        return ""
    noise = row["seed_noise"]
    if noise is None:
        return f"{row['delta']:+.3f} (one run a split: no seed spread)"
    verdict = "beyond" if row["beyond_noise"] else "within"
    return f"{row['delta']:+.3f} ± {noise:.3f} ({verdict} 2x the seed noise)"


def comparison_tables(comp: dict) -> list[tuple[list[str], list[list[str]]]]:
    """The comparison as (header, rows): the accuracy of each experiment and method, and the
    jobs each experiment added."""
    first = comp["experiments"][0]
    acc = [
        [
            r["experiment"],
            r["method"],
            f"{r['top1_mean']:.3f}" + ("" if r["top1_sd"] is None else f" ± {r['top1_sd']:.3f}"),
            _delta(r) if r["experiment"] != first else "(reference)",
            "" if r["gmacs"] is None else f"{r['gmacs']:.2f}",
        ]
        for r in comp["rows"]
    ]
    header = ["experiment", "method", "mean top-1 over splits (± sd)", f"change from {first} (± seed noise)"]
    jobs = [
        [name, str(t["jobs"]), f"{t['wall_s'] / 60:.1f}", f"{t['cpu_s'] / 60:.1f}", f"{t['gpu_wall_s'] / 60:.1f}"]
        for name, t in comp["jobs"].items()
    ]
    return [
        (header + ["GMACs a video"], acc),
        (["experiment", "jobs it added", "their wall min", "CPU min", "wall min on a GPU"], jobs),
    ]


NOTES = [
    "The change is the difference of the means over splits; its ± is the standard error from the spread over "
    "seeds (each split's value a mean over seeds), and a change beyond twice it is more than seed noise.",
    "Jobs it added: those whose outputs no earlier experiment shares (the first experiment's include the caches); "
    "the manifest and demo jobs are the run's.",
]


def comparison_markdown(comp: dict) -> str:
    lines = ["# moclip experiments", ""]
    if "warning" in comp:
        lines += [f"> {comp['warning']}", ""]
    for header, rows in comparison_tables(comp):
        lines += [*markdown_table(header, rows), ""]
    lines += [n for note in NOTES for n in (note, "")]
    return "\n".join(lines).rstrip("\n") + "\n"


def plot_comparison(comp: dict, out: Path | str) -> None:
    """Mean top-1 against GMACs a video: a marker a method, a label an experiment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in METHODS:
        rows = [r for r in comp["rows"] if r["method"] == method and r["gmacs"] is not None]
        if not rows:
            continue
        ax.scatter([r["gmacs"] for r in rows], [r["top1_mean"] for r in rows], label=method)
        for r in rows:
            ax.annotate(
                r["experiment"], (r["gmacs"], r["top1_mean"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    ax.set_xscale("log")
    ax.set_xlabel("GMACs a video (log)")
    ax.set_ylabel("mean top-1 over splits")
    ax.set_title("experiments: accuracy against cost")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def compare(
    *,
    summaries: dict[str, Path | str],
    jobs: dict[str, list[str]],
    benchmarks: Path | str,
    gpu_dirs: list[str],
    json: Path | str,
    md: Path | str,
    html: Path | str,
    plot: Path | str,
) -> dict:
    """Rule ``compare_experiments``: the comparison as JSON, Markdown, HTML and a plot, from
    each experiment's summary.json and the benchmark files of the jobs it added (``jobs``:
    globs under ``benchmarks``)."""
    times = {name: job_times(benchmarks, patterns, gpu_dirs) for name, patterns in jobs.items()}
    comp = comparison({name: read_json(p) for name, p in summaries.items()}, times)
    # where each experiment's own outputs live, relative to the results: "." is the run itself
    top = os.path.abspath(Path(json).parent)
    roots = {n: os.path.relpath(os.path.abspath(Path(p).parent), top) for n, p in summaries.items()}
    comp["roots"] = {n: Path(r).as_posix() for n, r in roots.items()}
    write_json(json, comp)
    write_text(md, comparison_markdown(comp))
    tables = comparison_tables(comp)
    warning = comp.get("warning", "")
    pages = [html_table(h, r, NOTES if i else [], warning=warning if not i else "") for i, (h, r) in enumerate(tables)]
    write_text(html, "".join(pages))
    plot_comparison(comp, plot)
    log.info("%d experiments compared in %s", len(summaries), md)
    return comp
