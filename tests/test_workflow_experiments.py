"""Experiments in one run, on the tiny demo: each output computed once for the experiments
whose settings agree, the run itself the first of them (an experiment equal to it is its top
level), one comparison naming them all, and experiments added to a finished run compute only
what they do not share."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY_CONFIG, job_counts, merged, snakemake

import moclip
from moclip.outputs import experiments_made
from moclip.verify import verify

pytestmark = pytest.mark.workflow

EXPERIMENTS = {
    "base": {},
    "head-lr": {"heads": {"lr": 0.003}},
    "bilinear": {"clip": {"interpolation": "bilinear"}},
}
SHARED = "shares cache (base), clip (base), mvnet (base), mv_features (base)"


def ran(out: subprocess.CompletedProcess) -> dict[str, int]:
    """The jobs a run executed, by rule (its Job stats table)."""
    return job_counts(out.stdout + "\n" + out.stderr)


def test_experiments_added_to_a_finished_run_compute_only_what_they_do_not_share(demo_run, tmp_path):
    shards, splits = TINY_CONFIG["dataset"]["shards"], 3  # config.yaml's splits: 1, 2, 3
    config = merged(TINY_CONFIG, {"experiments": EXPERIMENTS})
    # From nothing: the caches decoded once, the MV network trained once a split, CLIP embedded
    # twice (bicubic and bilinear), heads three times (2 heads a split).
    dry = snakemake(tmp_path / "fresh", config, "-n")
    counts = job_counts(dry.stdout)
    assert (counts["cache_shard"], counts["train_mvnet"], counts["clip_embed"]) == (shards, splits, 2 * shards)
    assert counts["train_head"] == 3 * splits * 2 and counts["summary"] == 3 and counts["compare_experiments"] == 1
    said = dry.stdout + dry.stderr
    assert "moclip: experiment base: the run itself (its outputs at the top level): adds cache, clip" in said
    assert f"moclip: experiment head-lr: adds heads, reports; {SHARED}" in said
    assert f"moclip: experiment bilinear: adds clip, heads, reports; {SHARED.replace(' clip (base),', '')}" in said

    # A finished run without experiments, then base (the run's settings) and a head change:
    # only head-lr's heads, reports and summary run, and the comparison; the top level stays.
    wd, res = demo_run, demo_run / "results"
    kept = {p: p.stat().st_mtime_ns for p in res.rglob("*") if p.is_file() and p.name != "run.lock"}
    two = merged(TINY_CONFIG, {"experiments": {k: EXPERIMENTS[k] for k in ("base", "head-lr")}})
    out = snakemake(wd, two)
    new = {"train_head": 2 * splits, "report_split": splits, "summary": 1, "compare_experiments": 1, "all": 1}
    assert ran(out) == new, out.stdout + out.stderr
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # not one of the run's files rewritten
    comp = json.loads((res / "experiments.json").read_text())
    summary = json.loads((res / "summary.json").read_text())  # the run's own, before experiments
    base = {r["method"]: r["top1_mean"] for r in comp["rows"] if r["experiment"] == "base"}
    assert comp["experiments"] == ["base", "head-lr"]
    assert base == {m: v["top1_mean"] for m, v in summary["methods"].items()} and len(base) == 3
    assert not (res / "experiments" / "base").exists()

    # moclip verify checks the top level (the run's, base's) and says what it leaves unchecked;
    # its layout of the run's jobs is Snakemake's own list of their outputs.
    verify_cmd = [sys.executable, "-m", "moclip.cli", "verify", "results"]
    check = subprocess.run(verify_cmd, cwd=wd, capture_output=True, text=True)
    assert check.returncode == 0 and ", 0 broken" in check.stdout, check.stdout + check.stderr
    assert "not checked: results/experiments/" in check.stdout
    listed = snakemake(wd, two, "--summary").stdout.splitlines()[1:]
    outputs = {line.split("\t")[0] for line in listed}
    outputs = {p for p in outputs if not p.startswith(("results/logs/", "results/benchmarks/", "results/demo/"))}
    made = set(experiments_made(res))
    jobs = verify(res).run.jobs.values()
    top = {p.relative_to(wd).as_posix() for job in jobs for p in job.outputs if p not in made}
    assert top == {p for p in outputs if not p.startswith("results/experiments")}

    # A top-level file cleared takes the experiments' heads, reports and summaries along, so the
    # next run, which needs them, rebuilds it (a missing file alone would be left missing).
    shard = next((res / "embeddings" / "clip").glob("*/shard-00001.h5"))
    shard.unlink()
    check = subprocess.run(verify_cmd, cwd=wd, capture_output=True, text=True)
    assert check.returncode == 1 and str(shard.relative_to(wd)) in check.stdout, check.stdout
    cleared = subprocess.run([*verify_cmd, "--clear"], cwd=wd, capture_output=True, text=True)
    assert cleared.returncode == 0 and "deleted results/experiments/head-lr/heads" in cleared.stdout, cleared.stdout
    rebuild = job_counts(snakemake(wd, two, "-n").stdout)
    assert rebuild == {
        "clip_embed": 1,  # the shard, and not one job more upstream
        "train_head": 2 * splits * 2,  # the run's (base's) and head-lr's
        "report_split": 2 * splits,
        "summary": 2,
        "compare_experiments": 1,
        "all": 1,
    }
    snakemake(wd, two)
    check = subprocess.run(verify_cmd, cwd=wd, capture_output=True, text=True)
    assert check.returncode == 0 and ", 0 broken" in check.stdout and shard.exists(), check.stdout

    # A third experiment on it: its CLIP embeddings, heads, reports and summary, and the comparison.
    out = snakemake(wd, config)
    assert ran(out) == {**new, "clip_embed": shards}, out.stdout + out.stderr
    comp = json.loads((res / "experiments.json").read_text())
    assert comp["experiments"] == list(EXPERIMENTS)
    assert comp["roots"] == {"base": ".", "head-lr": "experiments/head-lr", "bilinear": "experiments/bilinear"}
    assert {(r["experiment"], r["method"]) for r in comp["rows"]} == {
        (e, m) for e in EXPERIMENTS for m in ("mv_only", "clip_linear", "fusion")
    }
    assert [comp["jobs"][e]["jobs"] for e in EXPERIMENTS] == [
        # the run's: caches and their failures, CLIP, MV networks and features, heads, reports, summary
        shards + 1 + shards + splits + shards + 2 * splits + splits + 1,
        2 * splits + splits + 1,
        shards + 2 * splits + splits + 1,
    ]
    md = (res / "experiments.md").read_text()
    assert all(f"| {e} | fusion |" in md for e in EXPERIMENTS) and "change from base" in md
    lr = json.loads(next(res.glob("experiments/head-lr/heads/*/*/split1/fusion/metrics.json")).read_text())
    assert lr["settings"]["lr"] == 0.003
    assert (res / "experiments" / "bilinear" / "embeddings" / "clip").is_dir()
    # Each experiment's features as its reports name them: bilinear's own CLIP embeddings,
    # the others' shared ones at the top level (base's: the run's own), one set of MV features.
    clip = {e: moclip.load_features(res, "clip", experiment=e) for e in EXPERIMENTS}
    assert clip["bilinear"].attrs["interpolation"] == "bilinear" and clip["head-lr"].files == clip["base"].files
    assert clip["base"].files[0].parent.parent == res / "embeddings" / "clip"
    assert not np.array_equal(clip["bilinear"].unpooled, clip["base"].unpooled)
    mv = {e: moclip.load_features(res, "mv", split=2, experiment=e).files for e in EXPERIMENTS}
    assert mv["bilinear"] == mv["head-lr"] == mv["base"] and mv["base"][0].parents[2] == res / "embeddings" / "mv"
    assert "moclip: done. The table: results/experiments.md" in out.stderr

    # A fourth experiment on the finished run: its heads, reports and summary, and the comparison.
    config["experiments"]["more-epochs"] = {"heads": {"epochs": 20}}
    again = job_counts(snakemake(wd, config, "-n").stdout)
    assert again == {"train_head": 2 * splits, "report_split": splits, "summary": 1, "compare_experiments": 1, "all": 1}
