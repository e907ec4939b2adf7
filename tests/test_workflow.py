"""The workflow as a user runs it: the ``snakemake`` command line on a tiny dataset in a temp dir."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import json

import h5py
import pytest
import torch
import yaml

from conftest import REPO, TINY_DEMO
from moclip.clip_stream import load_clip, read_embeddings
from moclip.manifest import read_manifest, shard_of

pytestmark = pytest.mark.workflow
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
TINY_CONFIG = {
    "demo": {"groups": TINY_DEMO.groups, "clips": TINY_DEMO.clips, "frames": TINY_DEMO.frames},
    "dataset": {"shards": 3},
}


def snakemake(workdir: Path, config: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cfg = workdir / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
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
        ids, feats, valid, attrs = read_embeddings(p)
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
    assert jobs == {"clip_embed": 3, "zeroshot": 3, "all": 1}, jobs  # caches untouched
    snakemake(demo_run, cfg)
    rows = read_manifest(demo_run / "results" / "manifest.tsv")
    (tag,) = [p.name for p in (demo_run / "results" / "zeroshot").iterdir()]
    assert tag.startswith("moclip-tiny_file-tiny-")
    for k in (1, 2, 3):
        m = json.loads((demo_run / "results" / "zeroshot" / tag / f"split{k}" / "metrics.json").read_text())
        assert m["n_test"] == sum(r.split(k) == "test" for r in rows) and 0 <= m["top1"] <= m["top5"] <= 1
        assert len(m["per_class_top1"]) == 9 and m["failed_videos"] == []
    # Both models' embeddings coexist; going back to the first costs nothing.
    assert len(list((demo_run / "results" / "embeddings" / "clip").iterdir())) == 2
    assert planned(demo_run, TINY_CONFIG) == {}


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
