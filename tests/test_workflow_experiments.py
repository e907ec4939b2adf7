"""Experiments in one run, on the tiny demo: each output computed once for the experiments
whose settings agree, one comparison naming them all, and an experiment added to a finished
run computes only what it does not share."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY_CONFIG, job_counts, merged, snakemake

import moclip

pytestmark = pytest.mark.workflow

EXPERIMENTS = {
    "base": {},
    "head-lr": {"heads": {"lr": 0.003}},
    "bilinear": {"clip": {"interpolation": "bilinear"}},
}


def test_experiments_share_what_they_agree_on_and_a_new_one_adds_only_its_own(tmp_path):
    wd = tmp_path / "experiments"
    config = merged(TINY_CONFIG, {"dataset": {"splits": [1, 2]}, "experiments": EXPERIMENTS})
    dry = snakemake(wd, config, "-n")
    counts, shards, splits = job_counts(dry.stdout), 3, 2
    assert counts["cache_shard"] == shards  # the caches decoded once
    assert counts["train_mvnet"] == splits  # the MV network trained once a split
    assert counts["clip_embed"] == 2 * shards  # CLIP embedded twice: bicubic and bilinear
    assert counts["train_head"] == 3 * splits * 2  # heads three times (2 heads a split)
    assert counts["summary"] == 3 and counts["compare_experiments"] == 1
    said = dry.stdout + dry.stderr
    shared = "shares cache (base), clip (base), mvnet (base), mv_features (base)"
    assert f"moclip: experiment head-lr: adds heads, reports; {shared}" in said
    assert (
        "moclip: experiment bilinear: adds clip, heads, reports; shares cache (base), mvnet (base), mv_features (base)"
        in said
    )

    out = snakemake(wd, config)
    res = wd / "results"
    comp = json.loads((res / "experiments.json").read_text())
    assert comp["experiments"] == list(EXPERIMENTS)
    assert {(r["experiment"], r["method"]) for r in comp["rows"]} == {
        (e, m) for e in EXPERIMENTS for m in ("mv_only", "clip_linear", "fusion")
    }
    assert [comp["jobs"][e]["jobs"] for e in EXPERIMENTS] == [
        # caches and their failures, CLIP, MV networks and features, heads, reports, summary
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
    # the others' shared ones at the top level, and one set of MV features for all.
    clip = {e: moclip.load_features(res, "clip", experiment=e) for e in EXPERIMENTS}
    assert clip["bilinear"].attrs["interpolation"] == "bilinear" and clip["head-lr"].files == clip["base"].files
    assert clip["base"].files[0].parent.parent == res / "embeddings" / "clip"
    assert not np.array_equal(clip["bilinear"].unpooled, clip["base"].unpooled)
    mv = {e: moclip.load_features(res, "mv", split=2, experiment=e).files for e in EXPERIMENTS}
    assert mv["bilinear"] == mv["head-lr"] == mv["base"] and mv["base"][0].parents[2] == res / "embeddings" / "mv"
    assert not (res / "summary.json").exists()  # every summary is an experiment's
    assert "moclip: done. The table: results/experiments.md" in out.stderr
    # moclip verify checks what the experiments share and says what it leaves unchecked.
    check = subprocess.run(
        [sys.executable, "-m", "moclip.cli", "verify", "results"], cwd=wd, capture_output=True, text=True
    )
    assert check.returncode == 0 and ", 0 broken" in check.stdout, check.stdout + check.stderr
    assert "not checked: results/experiments/" in check.stdout

    # A shared file cleared takes the experiments' heads, reports and summaries along, so the
    # next run, which needs them, rebuilds it (a missing file alone would be left missing).
    shard = next((res / "embeddings" / "clip").glob("*/shard-00001.h5"))
    shard.unlink()
    verify = [sys.executable, "-m", "moclip.cli", "verify", "results"]
    check = subprocess.run(verify, cwd=wd, capture_output=True, text=True)
    assert check.returncode == 1 and str(shard.relative_to(wd)) in check.stdout, check.stdout
    cleared = subprocess.run([*verify, "--clear"], cwd=wd, capture_output=True, text=True)
    assert cleared.returncode == 0 and "deleted results/experiments/head-lr/heads" in cleared.stdout, cleared.stdout
    rebuild = job_counts(snakemake(wd, config, "-n").stdout)
    assert rebuild == {
        "clip_embed": 1,  # the shard, and not one job more upstream
        "train_head": 3 * splits * 2,
        "report_split": 3 * splits,
        "summary": 3,
        "compare_experiments": 1,
        "all": 1,
    }
    snakemake(wd, config)
    check = subprocess.run(verify, cwd=wd, capture_output=True, text=True)
    assert check.returncode == 0 and ", 0 broken" in check.stdout and shard.exists(), check.stdout

    # A fourth experiment on the finished run: its heads, reports and summary, and the comparison.
    config["experiments"]["more-epochs"] = {"heads": {"epochs": 20}}
    again = job_counts(snakemake(wd, config, "-n").stdout)
    assert again == {"train_head": 2 * splits, "report_split": splits, "summary": 1, "compare_experiments": 1, "all": 1}
