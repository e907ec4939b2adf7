"""The prepared GPU check (benchmarks/gpu_check.py) as its CPU rehearsal: the same code at
tiny sizes, so that the command a lent GPU runs cannot rot while no GPU is lent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[1]


def test_the_gpu_check_rehearses_every_part_on_the_cpu(tmp_path):
    out = tmp_path / "gpu-check.json"
    p = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--rehearsal", "--cores", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    r = json.loads(out.read_text())
    assert r["cuda"] is False and not [k for k, v in r["parts"].items() if "error" in v]
    keys = ("device", "clip_stage_over_bare", "jpeg_decode_images_per_s", "mv_train_samples_per_s", "job_startup_s")
    for key in (*keys, "mv_data_wait_share"):
        assert r[key], key
    # The CPU against itself: the comparison must find the runs identical.
    demo = r["parts"]["demo"]
    assert r["demo_matches_cpu"] is True and demo["clip_shards"]["cosine_min"] > 0.9999
    assert {m["agreement_min"] for m in demo["methods"].values() if m["agreement_min"] is not None} == {1.0}
    assert set(demo["jobs"]) == set(r["job_startup_s"]) == {"clip_embed", "train_mvnet", "mv_features"}
    assert all(0 < s < 120 for s in r["job_startup_s"].values())
    assert all(j["startup_s"] and j["jobs"] for j in demo["jobs"].values())  # read from each job's log
    fp16 = r["parts"]["fp16"]
    assert fp16["float16"]["precision"] == "float16" and fp16["float16"]["finite"]
    assert fp16["deterministic"]["identical"] and fp16["predict"]["agreement"] == 1.0
    assert "demo GPU vs CPU" in p.stdout and "mv train" in p.stdout and "jpeg decode" in p.stdout
