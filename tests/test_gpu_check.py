"""The prepared GPU check (benchmarks/gpu_check.py) as its CPU rehearsal: the same code at
tiny sizes, so that the command a lent GPU runs cannot rot while no GPU is lent; and its
projection's arithmetic and time boxes."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", CHECK)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("gpu_check", None)


@pytest.mark.workflow
def test_the_gpu_check_rehearses_every_part_on_the_cpu(tmp_path):
    out = tmp_path / "gpu-check.json"
    p = subprocess.run(
        [sys.executable, str(CHECK), "--rehearsal", "--plan", "demo", "--cores", "2", "--out", str(out)],
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


@pytest.mark.workflow
def test_the_full_size_run_rehearses_every_part_on_the_cpu(tmp_path, gpu_check):
    """The full-size plan (make gpu-check's default) at tiny sizes: the synthetic set made
    and then reused, every part run, each stage beside its ceiling, the checks exact on the
    CPU, and a projection of both presets with every stage counted."""
    out, set_dir = tmp_path / "gpu-check.json", tmp_path / "set"
    cmd = [sys.executable, str(CHECK), "--rehearsal", "--cores", "2", "--out", str(out), "--set-dir", str(set_dir)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    r = json.loads(out.read_text())
    assert list(r["parts"]) == list(gpu_check.FULL_PARTS) and not [k for k, v in r["parts"].items() if "error" in v]
    parts = r["parts"]
    assert parts["full_set"]["spec"]["videos"] == 60 and not parts["full_set"]["reused"]
    assert sum(parts["full_set"]["parts"].values()) == 60
    clip = parts["full_clip"]
    assert all(row["videos"] == 60 and row["images"] == 60 * 8 for row in clip["rows"])
    assert clip["serialised_check"]["same"] and clip["bare_images_per_s"] > 0 and clip["stage_over_bare"] > 0
    assert parts["nvjpeg"]["mean_abs_grey"] == 0 and parts["nvjpeg"]["frames"] == 8 * 8  # the CPU against itself
    train = parts["full_mv_train"]
    assert [e["epoch"] for e in train["epochs"]] == [0, 1] and train["val_s_per_video"] > 0
    assert parts["full_mv_features"]["ucf101-paper"]["draws"]["segments_per_s"] > 0
    assert parts["concurrent"]["trainings"] == 2 and len(parts["concurrent"]["each_segments_per_s"]) == 2
    assert {"on", "off"} <= set(parts["deterministic"]) and r["bare_mv_train_segments_per_s"] > 0
    assert all(parts["deterministic"][k]["stage_step_segments_per_s"] > 0 for k in ("on", "off"))
    assert parts["bare_mv"]["stage_step_segments_per_s"] > 0 and parts["bare_mv"]["stage_feature_inputs_per_s"] > 0
    assert parts["compile"]["compiled_step_segments_per_s"] > 0 and parts["compile"]["compiled_call_s"] > 0
    for preset in ("ucf101", "ucf101-paper"):
        proj = r["full_projection"][preset]
        assert set(proj["hours"]) == {"train_mvnet", "mv_features", "mv_draws", "clip_embed", "startups", "heads_cpu"}
        assert proj["total_h"] == pytest.approx(sum(proj["hours"].values()))
        assert proj["counts"]["epochs"] == 200 and proj["counts"]["val_videos_a_split"] > 0
    assert r["full_projection"]["ucf101-paper"]["counts"]["draws"] == 100
    assert r["full_projection"]["ucf101-paper"]["hours"]["mv_draws"] > 0
    assert r["full_projection"]["ucf101"]["hours"]["mv_draws"] == 0
    assert set(r["goals"]) and "projection ucf101-paper, three splits" in p.stdout and "nvjpeg vs cpu" in p.stdout
    # a rerun of one part reuses the set
    p = subprocess.run([*cmd, "--parts", "nvjpeg"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    r = json.loads(out.read_text())
    assert list(r["parts"]) == ["full_set", "nvjpeg"] and r["parts"]["full_set"]["reused"]


def test_the_projection_counts_every_stage_from_the_measured_rates(gpu_check):
    """Both presets' three-split hours from given rates, by hand: training with validation
    every epoch, the test views, the paper's draws, CLIP once, every GPU job's start-up,
    the heads' epochs and seeds."""
    parts = {
        "full_set": {"spec": {"videos": 1332}, "parts": {"train": 800, "val": 160, "test": 372}},  # scaled x10
        "full_mv_train": {"segments_per_s": 3000.0, "val_s_per_video": 0.001},
        "concurrent": {"solo_segments_per_s": 4000.0, "aggregate_over_solo": 2.0},
        "full_mv_features": {
            "ucf101": {"inputs_per_s": 8000.0},
            "ucf101-paper": {"inputs_per_s": 10000.0, "draws": {"segments_per_s": 6000.0}},
        },
        "full_clip": {"videos_per_s": 2000.0},
        "full_heads": {
            p: {"heads": {"clip_linear": {"epoch_s": 0.01}, "fusion": {"epoch_s": 0.03}}}
            for p in ("ucf101", "ucf101-paper")
        },
    }
    proj = gpu_check.full_projection({"parts": parts})
    paper, ours = proj["ucf101-paper"]["hours"], proj["ucf101"]["hours"]
    start = (1 + 3 + 3) * gpu_check.STARTUP_S / 3600
    assert paper["train_mvnet"] == pytest.approx(200 * (8000 * 3 / 3000 + 1600 * 0.001) * 3 / 3600)
    assert ours["train_mvnet"] == pytest.approx(200 * (8000 * 3 / 4000 + 1600 * 0.001) * 3 / 3600)
    assert paper["mv_features"] == pytest.approx(13320 * 250 / 10000 * 3 / 3600)
    assert ours["mv_features"] == pytest.approx(13320 * 8 / 8000 * 3 / 3600)
    assert paper["mv_draws"] == pytest.approx(100 * 8000 * 3 / 6000 * 3 / 3600) and ours["mv_draws"] == 0
    assert paper["clip_embed"] == ours["clip_embed"] == pytest.approx(13320 / 2000 / 3600)
    assert paper["startups"] == pytest.approx(start)
    assert paper["heads_cpu"] == pytest.approx(0.04 * 100 * 3 * 3 / 3600)  # 2 heads, 100 epochs, 3 seeds, 3 splits
    shared = proj["ucf101"]["total_h_trainings_sharing_the_card"]
    assert shared == pytest.approx(proj["ucf101"]["total_h"] - ours["train_mvnet"] / 2)
    del parts["full_mv_features"]["ucf101-paper"]["draws"]
    assert gpu_check.full_projection({"parts": parts})["ucf101-paper"] == {"missing": ["draws"]}


def test_a_part_past_its_time_box_fails_alone(gpu_check):
    """run_part: an overrun or a failure is the part's recorded error, never the run's end."""
    t0 = time.perf_counter()
    slow = gpu_check.run_part(lambda: time.sleep(10) or {}, 1)
    assert "PartTimeout" in slow["error"] and slow["time_box_s"] == 1 and time.perf_counter() - t0 < 5
    assert "ZeroDivisionError" in gpu_check.run_part(lambda: {"x": 1 / 0}, 5)["error"]
    ok = gpu_check.run_part(lambda: {"x": 1}, None)
    assert ok["x"] == 1 and "error" not in ok and "time_box_s" not in ok
