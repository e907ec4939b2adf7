"""The workflow as a user runs it: the ``snakemake`` command line on a tiny dataset in a temp dir."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import json

import h5py
import numpy as np
import pytest
import torch
import yaml

from conftest import REPO, TINY_DEMO, demo_config
from moclip.clip_stream import load_clip
from moclip.shards import read_shard
from moclip.manifest import read_manifest, shard_of

pytestmark = pytest.mark.workflow
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
TINY_CONFIG = {
    "demo": {"groups": TINY_DEMO.groups, "clips": TINY_DEMO.clips, "frames": TINY_DEMO.frames},
    "dataset": {"shards": 3},
    "mvnet": {"epochs": 4, "milestones": [3]},
    "heads": {"epochs": 40, "seeds": [0, 1]},
}


def snakemake(workdir: Path, config: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cfg = workdir / "config.yaml"
    cfg.write_text(yaml.safe_dump(demo_config(config)))
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(cfg), "--cores", "2", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    if check and out.returncode != 0:
        raise AssertionError(f"snakemake failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


def planned(workdir: Path, config: dict, *targets: str) -> dict[str, int]:
    """Jobs a dry run would execute, by rule."""
    out = snakemake(workdir, config, "-n", "--quiet", "rules", *targets)
    jobs: dict[str, int] = {}
    lines = out.stdout.splitlines()
    for line in lines[lines.index("Job stats:") + 3 if "Job stats:" in lines else len(lines):]:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            jobs[parts[0]] = int(parts[1])
    return jobs


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("wf demo ü")  # spaces and unicode in the path
    snakemake(wd, TINY_CONFIG)
    return wd


def test_demo_run_builds_manifest_and_caches(demo_run):
    rows = read_manifest(demo_run / "results" / "manifest.tsv")
    assert len(rows) == 45 and {r.shard for r in rows} == {0, 1, 2}
    for r in rows:
        for kind in ("mv", "frames"):
            with h5py.File(demo_run / "results" / "cache" / kind / f"shard-{r.shard:05d}" / f"{r.video_id}.h5") as f:
                assert f.attrs["status"] == "ok" and f.attrs["n_frames"] == TINY_DEMO.frames
    assert (demo_run / "results" / "cache" / "failures.tsv").read_text() == "video_id\tpath\terror\n"
    assert "videos/s" in (demo_run / "results" / "logs" / "cache" / "shard-00000.log").read_text()


def test_clip_shards_hold_every_video_once(demo_run):
    rows = read_manifest(demo_run / "results" / "manifest.tsv")
    shards = sorted((demo_run / "results" / "embeddings" / "clip" / "moclip-tiny_random-seed0").glob("shard-*.h5"))
    assert len(shards) == 3
    seen = []
    for p in shards:
        ids, feats, valid, attrs = read_shard(p)
        assert valid.all() and feats.shape[1:] == (8, 64) and attrs["random_weights"]
        seen += ids
    assert sorted(seen) == sorted(r.video_id for r in rows)
    # Random weights: no zero-shot numbers are produced.
    assert not (demo_run / "results" / "zeroshot").exists()


def test_zeroshot_with_a_checkpoint_reuses_the_caches(demo_run):
    ckpt = demo_run / "tiny.pt"
    torch.save(load_clip("moclip-tiny", "none", seed=7).model.state_dict(), ckpt)
    cfg = {**TINY_CONFIG, "clip": {"pretrained": str(ckpt)}}
    jobs = planned(demo_run, cfg)
    assert jobs.get("clip_embed") == 3 and jobs.get("zeroshot") == 3, jobs
    assert not {"demo_data", "manifest", "cache_shard", "train_mvnet", "mv_features"} & set(jobs), jobs
    snakemake(demo_run, cfg)
    rows = read_manifest(demo_run / "results" / "manifest.tsv")
    (tag,) = [p.name for p in (demo_run / "results" / "zeroshot").iterdir()]
    assert tag.startswith("moclip-tiny_file-tiny-")
    for k in (1, 2, 3):
        m = json.loads((demo_run / "results" / "zeroshot" / tag / f"split{k}" / "metrics.json").read_text())
        assert m["n_test"] == sum(r.split(k) == "test" for r in rows) and 0 <= m["top1"] <= m["top5"] <= 1
        assert len(m["per_class_top1"]) == 9 and m["failed_videos"] == []
    # Both models' embeddings (and heads) coexist: going back to the first only rewrites the reports.
    assert len(list((demo_run / "results" / "embeddings" / "clip").iterdir())) == 2
    assert set(planned(demo_run, TINY_CONFIG)) == {"report_split", "summary", "all"}
    snakemake(demo_run, TINY_CONFIG)


def test_reports_hold_every_method_and_split(demo_run):
    summary = json.loads((demo_run / "results" / "summary.json").read_text())
    assert set(summary["methods"]) == {"mv_only", "clip_linear", "fusion"}  # no zero-shot: random CLIP
    assert "random" in summary["warning"] and summary["clip"]["random_weights"]
    for m in summary["methods"].values():
        assert set(m["splits"]) == {"1", "2", "3"} and m["gflops"] > 0
    md = (demo_run / "results" / "summary.md").read_text()
    assert "WARNING" in md and "| fusion |" in md
    rows = read_manifest(demo_run / "results" / "manifest.tsv")
    for k in (1, 2, 3):
        rep = json.loads((demo_run / "results" / "reports" / f"split{k}" / "metrics.json").read_text())
        assert set(rep["methods"]) == {"mv_only", "clip_linear", "fusion"} and rep["failed_videos"] == []
        for m in rep["methods"].values():
            assert m["n_test"] == sum(r.split(k) == "test" for r in rows) and len(m["per_class_top1"]) == 9
        for png in ("confusion_fusion", "per_class_top1", "training_curves"):
            assert (demo_run / "results" / "reports" / f"split{k}" / f"{png}.png").stat().st_size > 1000


def test_predict_uses_the_runs_models(demo_run):
    rows = read_manifest(demo_run / "results" / "manifest.tsv")
    test = [r for r in rows if r.split1 == "test"][:3]
    videos = [str(demo_run / "results" / "demo" / "UCF-101" / r.path) for r in test]
    bad = demo_run / "not_a_video.avi"
    bad.write_text("nothing here")
    cmd = [sys.executable, "-m", "moclip.cli", "predict", *videos, str(bad), "--run", str(demo_run / "results"),
           "--split", "1", "--top", "3", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 1, out.stderr  # one video failed, the others were classified
    res = json.loads(out.stdout)
    assert res[-1]["error"] and "cannot open" in res[-1]["error"] and res[-1]["top"] == []
    # The same decoding, sampling and models as the workflow: the fusion head's stored test
    # predictions (first seed) come out again.
    stored = {}
    head_dir = next((demo_run / "results" / "heads").glob("*/*/split1/fusion"))
    for line in (head_dir / "predictions.tsv").read_text().splitlines()[1:]:
        f = line.split("\t")
        stored[f[0]] = f[2]
    for r, p in zip(test, res):
        assert len(p["top"]) == 3 and abs(sum(t["probability"] for t in p["top"])) <= 1.0 + 1e-6
        assert p["top"][0]["class"] == stored[r.video_id]


def test_second_run_has_nothing_to_do(demo_run):
    assert planned(demo_run, TINY_CONFIG) == {}


def test_changing_frames_count_reruns_caches_only_after_manifest(demo_run):
    cfg = {**TINY_CONFIG, "frames": {"count": 4}}
    jobs = planned(demo_run, cfg)
    assert jobs.get("cache_shard") == 3 and "demo_data" not in jobs and "manifest" not in jobs


def test_unknown_config_key_stops_at_parse_time(tmp_path):
    out = snakemake(tmp_path, {**TINY_CONFIG, "frames": {"cout": 4}}, "-n", check=False)
    assert out.returncode != 0 and "cout" in out.stdout + out.stderr
    out = snakemake(tmp_path, {**TINY_CONFIG, "dataset": {"shards": "four"}}, "-n", check=False)
    assert out.returncode != 0 and "shards" in out.stdout + out.stderr


def test_missing_dataset_directory_is_a_clear_error(tmp_path):
    out = snakemake(tmp_path, {"dataset": {"videos": str(tmp_path / "nope"), "lists": str(tmp_path)}}, "-n",
                    check=False)
    assert out.returncode != 0 and "dataset.videos" in out.stdout + out.stderr


@pytest.fixture
def real_layout(tiny_demo, tmp_path):
    """A copy of the tiny demo used as a user's own dataset (dataset.videos set)."""
    videos, lists = tmp_path / "data" / "UCF-101", tmp_path / "data" / "ucfTrainTestlist"
    shutil.copytree(tiny_demo[0], videos)
    shutil.copytree(tiny_demo[1], lists)
    cfg = {"dataset": {"videos": str(videos), "lists": str(lists), "shards": 3}}
    return tmp_path / "run", videos, lists, cfg


def test_user_dataset_failed_video_is_listed_and_adding_a_video_reruns_one_shard(real_layout):
    wd, videos, lists, cfg = real_layout
    wd.mkdir()
    bad = videos / "BoxFall" / "v_BoxFall_g05_c01.avi"
    bad.write_bytes(bad.read_bytes()[:2000])  # truncated
    snakemake(wd, cfg)
    failures = (wd / "results" / "cache" / "failures.tsv").read_text().splitlines()
    assert len(failures) == 2 and failures[1].startswith("v_BoxFall_g05_c01\t")
    assert planned(wd, cfg) == {}

    shutil.copy(videos / "BoxFall" / "v_BoxFall_g04_c01.avi", videos / "BoxFall" / "v_BoxFall_g04_c02.avi")
    with open(lists / "trainlist01.txt", "a", newline="") as f:
        f.write("BoxFall/v_BoxFall_g04_c02.avi 4\r\n")
    index = sorted((wd / "results" / "cache" / "index").iterdir())
    before = {p.name: p.stat().st_mtime_ns for p in index}
    out = snakemake(wd, cfg)
    # A dry run cannot see past the manifest checkpoint; the real run re-evaluates after it.
    assert out.stderr.count("rule cache_shard:") == 1, out.stderr
    changed = [p.name for p in index if p.stat().st_mtime_ns != before[p.name]]
    new_shard = f"shard-{shard_of('v_BoxFall_g04_c02', 3):05d}.tsv"
    assert changed == [new_shard]
    assert "v_BoxFall_g04_c02" in (wd / "results" / "cache" / "index" / new_shard).read_text()
    assert "demo_data" not in out.stderr


@pytest.mark.parametrize(
    "change, reruns, untouched",
    [
        ({"heads": {"lr": 0.003}}, {"train_head": 6, "report_split": 3, "summary": 1},
         {"cache_shard", "clip_embed", "train_mvnet", "mv_features"}),
        ({"mvnet": {"lr": 0.002}}, {"train_mvnet": 3, "mv_features": 3, "train_head": 6, "report_split": 3},
         {"cache_shard", "clip_embed", "manifest"}),
        ({"clip": {"batch_videos": 3}}, {"clip_embed": 3, "train_head": 6},
         {"cache_shard", "train_mvnet", "mv_features"}),
    ],
    ids=["head-lr", "mvnet-lr", "clip-setting"],
)
def test_a_setting_reruns_exactly_its_stage_and_after(demo_run, change, reruns, untouched):
    cfg = {**TINY_CONFIG, **{k: {**TINY_CONFIG.get(k, {}), **v} for k, v in change.items()}}
    jobs = planned(demo_run, cfg)
    for rule, n in reruns.items():
        assert jobs.get(rule) == n, jobs
    assert not untouched & set(jobs), jobs


def test_a_library_change_reruns_the_stage_that_runs_it(demo_run, tmp_path):
    # A copy of the workflow whose heads module differs by one line: only heads and reports rerun.
    wf = tmp_path / "wf"
    for d in ("rules", "workflow_scripts", "moclip", "schemas", "report", "profiles"):
        shutil.copytree(REPO / d, wf / d)
    shutil.copy(REPO / "Snakefile", wf / "Snakefile")
    with open(wf / "moclip" / "heads.py", "a") as f:
        f.write("\n# a change\n")
    cfg = demo_run / "config.yaml"
    cfg.write_text(yaml.safe_dump(demo_config(TINY_CONFIG)))
    out = subprocess.run([SNAKEMAKE, "--snakefile", str(wf / "Snakefile"), "--directory", str(demo_run),
                          "--configfile", str(cfg), "--cores", "2", "-n", "--quiet", "rules"],
                         capture_output=True, text=True, check=True)
    assert "train_head" in out.stdout and "summary" in out.stdout
    for rule in ("cache_shard", "clip_embed", "train_mvnet", "mv_features"):
        assert rule not in out.stdout, out.stdout


def _run_until(workdir: Path, config: dict, rule: str) -> list[Path]:
    """Start the workflow, SIGKILL it (with its jobs) once a ``rule`` job has finished, and
    return the outputs of every job Snakemake had reported finished by then."""
    import re
    import signal
    import time

    cfg = workdir / "config.yaml"
    cfg.write_text(yaml.safe_dump(demo_config(config)))
    log = workdir / "killed.log"
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(cfg), "--cores", "2"]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 600
        while f"(Rule: {rule})" not in log.read_text():
            assert proc.poll() is None and time.time() < deadline, "the run ended before the kill point"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    lines = log.read_text().splitlines()
    done = {m.group(1) for ln in lines if (m := re.match(r"Finished jobid: (\d+)", ln))}
    outputs = []
    for i, ln in enumerate(lines):
        if re.match(r"(local)?(rule|checkpoint) \w+:$", ln):
            block = {}
            for b in lines[i + 1 :]:
                if not b.startswith("    "):
                    break
                key, _, value = b.strip().partition(": ")
                block[key] = value
            if block.get("jobid") in done and "output" in block:
                outputs += [workdir / o.strip() for o in block["output"].split(",")]
    return outputs


@pytest.mark.parametrize("rule", ["cache_shard", "clip_embed"], ids=["in-caches", "in-embeddings"])
def test_killed_run_resumes_to_identical_results(demo_run, tmp_path, rule):
    wd = tmp_path / "killed"
    wd.mkdir()
    finished_outputs = _run_until(wd, TINY_CONFIG, rule)
    assert any(rule.split("_")[0] in str(p) for p in finished_outputs)
    finished = {p: p.stat().st_mtime_ns for p in finished_outputs if p.is_file()}
    for p in wd.glob("results/cache/*/shard-*/*.h5"):
        with h5py.File(p) as f:  # every file with a final name is complete
            assert f.attrs["status"] == "ok"
    snakemake(wd, TINY_CONFIG, "--unlock")  # a SIGKILL leaves Snakemake's lock behind, as for any user
    snakemake(wd, TINY_CONFIG, "--rerun-incomplete")
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # nothing finished ran again
    assert (wd / "results/manifest.tsv").read_text() == (demo_run / "results/manifest.tsv").read_text()
    for k in (1, 2, 3):
        a, b = (json.loads((d / f"results/reports/split{k}/metrics.json").read_text()) for d in (wd, demo_run))
        assert a["methods"] == b["methods"] and a["failed_videos"] == b["failed_videos"]
    resumed = sorted((wd / "results" / "embeddings").rglob("*.h5"))
    assert len(resumed) == 4 * 3  # CLIP and three splits of MV features, 3 shards each
    for q in resumed:
        p = demo_run / q.relative_to(wd)
        with h5py.File(p) as a, h5py.File(q) as b:
            for k in a:
                assert np.array_equal(a[k][()], b[k][()], equal_nan=a[k].dtype.kind == "f"), (p, k)


def test_bad_split_lists_stop_before_any_job(real_layout):
    wd, videos, lists, cfg = real_layout
    wd.mkdir()
    (lists / "testlist02.txt").write_text("")
    out = snakemake(wd, cfg, "-n", check=False)
    assert out.returncode != 0 and "testlist02.txt: split list is empty" in out.stdout + out.stderr
    (lists / "testlist02.txt").write_text("BoxFall/../../../etc/passwd\r\n")
    out = snakemake(wd, cfg, "-n", check=False)
    assert out.returncode != 0 and "testlist02.txt:1" in out.stdout + out.stderr
    assert not (wd / "results").exists()
