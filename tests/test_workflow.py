"""The workflow as a user runs it: the ``snakemake`` command line on a tiny dataset in a temp dir.

Tests that only read take ``finished_run`` (one tiny run a session); a test that runs the
workflow again takes ``demo_run``, its own copy of it (see conftest.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import h5py
import numpy as np
import pytest
import torch
import yaml
from conftest import (
    CONFIG_NAME,
    DEFAULTS,
    REPO,
    RUN_TMP,
    SNAKEMAKE,
    TINY_CONFIG,
    TINY_DEMO,
    job_counts,
    merged,
    planned,
    result_files,
    snakemake,
)

import moclip
from moclip.clip.stream import ClipSettings, load_clip
from moclip.dataset.demo import make_demo_dataset
from moclip.dataset.videos import read_manifest, shard_of
from moclip.io import read_tsv, snakemake_program
from moclip.shards import read_shard
from moclip.video.encode import encode_video
from moclip.workflow import plan, runner
from moclip.workflow.config import key_line

pytestmark = pytest.mark.workflow
CLIP_DIR = "results/embeddings/clip/moclip-tiny_random-seed0"


@pytest.mark.fast
def test_demo_run_builds_manifest_and_caches(finished_run):
    rows = read_manifest(finished_run / "results" / "manifest.tsv")
    assert len(rows) == 45 and {r.shard for r in rows} == {0, 1, 2}
    for r in rows:
        for kind in ("mv", "frames"):
            path = finished_run / "results" / "cache" / kind / f"shard-{r.shard:05d}" / f"{r.video_id}.h5"
            with h5py.File(path) as f:
                assert f.attrs["status"] == "ok" and f.attrs["n_frames"] == TINY_DEMO.frames
    index = (finished_run / "results" / "cache" / "index" / "shard-00000.tsv").read_text().splitlines()
    assert index[1].split("\t")[1].count("/") == 1  # <Class>/<file>: relative to the dataset, as in the manifest
    assert (finished_run / "results" / "cache" / "failures.tsv").read_text() == "video_id\tpath\terror\n"
    assert "videos/s" in (finished_run / "results" / "logs" / "cache" / "shard-00000.log").read_text()


@pytest.mark.fast
def test_clip_shards_hold_every_video_once(finished_run):
    rows = read_manifest(finished_run / "results" / "manifest.tsv")
    clip = moclip.load_features(finished_run / "results", "clip")
    assert [p.parent.name for p in clip.files] == ["moclip-tiny_random-seed0"] * 3 and clip.failed == []
    assert clip.ids == [r.video_id for r in rows] and clip.labels.tolist() == [r.label for r in rows]
    assert clip.unpooled.shape == (45, 8, 64) and clip.attrs["random_weights"]
    # Random weights: no zero-shot numbers are produced.
    assert not (finished_run / "results" / "zeroshot").exists()


def test_zeroshot_with_a_checkpoint_reuses_the_caches(demo_run):
    ckpt = demo_run / "tiny.pt"
    torch.save(load_clip("moclip-tiny", "none", seed=7).model.state_dict(), ckpt)
    cfg = merged(TINY_CONFIG, {"clip": {"pretrained": str(ckpt)}})
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


@pytest.mark.fast
def test_reports_hold_every_method_and_split(finished_run):
    summary = json.loads((finished_run / "results" / "summary.json").read_text())
    assert set(summary["methods"]) == {"mv_only", "clip_linear", "fusion"}  # no zero-shot: random CLIP
    assert "random" in summary["warning"] and summary["clip"]["random_weights"]
    for m in summary["methods"].values():
        assert set(m["splits"]) == {"1", "2", "3"} and m["gflops"] > 0
    md = (finished_run / "results" / "summary.md").read_text()
    assert "WARNING" in md and "| fusion |" in md
    rows = read_manifest(finished_run / "results" / "manifest.tsv")
    for k in (1, 2, 3):
        rep = json.loads((finished_run / "results" / "reports" / f"split{k}" / "metrics.json").read_text())
        assert set(rep["methods"]) == {"mv_only", "clip_linear", "fusion"} and rep["failed_videos"] == []
        assert rep["dataset"]["format"] == "ucf101" and rep["dataset"]["videos"] == len(rows)
        for m in rep["methods"].values():
            assert m["n_test"] == sum(r.split(k) == "test" for r in rows) and len(m["per_class_top1"]) == 9
        for png in ("confusion_fusion", "per_class_top1", "training_curves"):
            assert (finished_run / "results" / "reports" / f"split{k}" / f"{png}.png").stat().st_size > 1000


@pytest.mark.fast
def test_export_writes_files_numpy_opens_with_the_values_load_features_reads(finished_run, tmp_path):
    res = finished_run / "results"
    for layout in ("npy", "table"):
        cmd = ["export", str(res), "--stream", "clip", "mv", "--split", "1", "--layout", layout]
        out = subprocess.run(
            [sys.executable, "-m", "moclip.cli", *cmd, "--out", str(tmp_path / layout)], capture_output=True, text=True
        )
        assert out.returncode == 0 and out.stdout.startswith("wrote "), out.stderr
    rows = read_manifest(res / "manifest.tsv")
    for stream in ("clip", "mv"):
        f = moclip.load_features(res, stream, split=1)
        assert f.ids == [r.video_id for r in rows] and f.parts == [r.split1 for r in rows]
        for i, v in enumerate(f.ids):
            np.testing.assert_array_equal(np.load(tmp_path / "npy" / f"{v}_{stream}.npy"), f.unpooled[i])
        t = np.load(tmp_path / "table" / f"{stream}.npz")
        assert t["video_id"].tolist() == f.ids and t["label"].tolist() == [r.label for r in rows]
        np.testing.assert_array_equal(t["vector"], f.vectors)
    assert len(list((tmp_path / "npy").iterdir())) == 2 * len(rows)
    # the MV features are the split's network's: another split's differ
    assert not np.array_equal(
        moclip.load_features(res, "mv", split=2).vectors, moclip.load_features(res, "mv", split=1).vectors
    )


def test_reports_name_other_files_relative_to_themselves(finished_run):
    for k in (1, 2, 3):
        report = finished_run / "results" / "reports" / f"split{k}" / "metrics.json"
        artefacts = json.loads(report.read_text())["artefacts"]
        assert set(artefacts) == {"clip_embeddings", "mv_model", "fusion_model"}
        for name, path in artefacts.items():
            assert not Path(path).is_absolute() and (report.parent / path).is_file(), path
            assert f"split{k}" in path or name == "clip_embeddings"  # the models are the split's


def test_predict_uses_the_runs_models_from_a_moved_results_directory(finished_run, tmp_path):
    moved = tmp_path / "elsewhere" / "results"
    shutil.copytree(finished_run / "results", moved)  # a moved run still knows its models
    for report in moved.glob("reports/split*/metrics.json"):  # the CLIP settings: from the embeddings' record
        m = json.loads(report.read_text())
        m["settings"]["clip"] = {}
        report.write_text(json.dumps(m))
    shard = next(moved.glob("embeddings/clip/*/shard-00000.h5"))
    assert ClipSettings.of_shard(shard) == ClipSettings.from_config(plan.clip_settings(merged(DEFAULTS, TINY_CONFIG)))
    rows = read_manifest(moved / "manifest.tsv")
    test = [r for r in rows if r.split1 == "test"][:3]
    videos = [str(moved / "demo" / "UCF-101" / r.path) for r in test]
    bad = tmp_path / "not_a_video.avi"
    bad.write_text("nothing here")
    missing = tmp_path / "missing.avi"  # before a good video: the good ones are still classified
    human = subprocess.run(
        [sys.executable, "-m", "moclip.cli", "predict", str(missing), videos[0], "--run", str(moved)],
        capture_output=True,
        text=True,
    )
    assert human.returncode == 1 and "Traceback" not in human.stderr, human.stderr
    assert human.stderr.strip() == f"{missing}: error: cannot read: No such file or directory"
    header, line = human.stdout.splitlines()  # a header naming the columns, a line a classified video
    assert header == "video\ttop 1\ttop 2\ttop 3\ttop 4\ttop 5", header
    assert line.startswith(videos[0] + "\t") and len(line.split("\t")) == 6
    assert all(re.fullmatch(r"\S.* [01]\.\d{3}", cell) for cell in line.split("\t")[1:]), line
    cmd = [sys.executable, "-m", "moclip.cli", "predict", *videos, str(bad)]
    out = subprocess.run(
        [*cmd, "--run", str(moved), "--split", "1", "--top", "3", "--json"], capture_output=True, text=True
    )
    assert out.returncode == 1, out.stderr  # one video failed, the others were classified
    res = json.loads(out.stdout)
    assert res[-1]["error"] and "cannot open" in res[-1]["error"] and res[-1]["top"] == []
    # The same decoding, sampling and models as the workflow: the fusion head's stored test
    # predictions (first seed) come out again, its top three classes in the same order.
    stored = {}
    head_dir = next((moved / "heads").glob("*/*/split1/fusion"))
    for line in (head_dir / "predictions.tsv").read_text().splitlines()[1:]:
        f = line.split("\t")
        stored[f[0]] = [f[2], f[4], f[6]]
    for r, p in zip(test, res, strict=False):
        probs = [t["probability"] for t in p["top"]]
        assert [t["class"] for t in p["top"]] == stored[r.video_id]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


@pytest.mark.fast
def test_second_run_has_nothing_to_do_here_or_in_a_copy(finished_run, demo_run):
    assert planned(finished_run, TINY_CONFIG) == {}
    assert planned(demo_run, TINY_CONFIG) == {}  # another directory: nothing in the run names its place


def test_a_config_file_with_its_keys_reordered_reruns_nothing(finished_run):
    """Snakemake keeps a file's key order and a section's params are dicts: the Snakefile puts
    the keys in config.yaml's order, so reordering a user's file is no change."""

    def reversed_keys(d):
        return {k: reversed_keys(v) if isinstance(v, dict) else v for k, v in reversed(d.items())}

    assert list(reversed_keys(TINY_CONFIG)["demo"]) != list(TINY_CONFIG["demo"])
    assert planned(finished_run, reversed_keys(TINY_CONFIG)) == {}


def test_defaults_come_from_the_repository_whatever_the_directory(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"dataset": {"shards": 7}}))  # not read
    out = snakemake(tmp_path, TINY_CONFIG, "-n")
    header = re.search(r"Config file\(s\): (.*)", out.stdout + out.stderr).group(1)
    files = set(re.findall(r"'([^']+)'", header))
    assert files == {str(REPO / "config.yaml"), str(tmp_path / "test-config.yaml")}, header
    # The test config's values win over the defaults: every workflow test relies on that
    # (e.g. 3 shards, not the default 4, in test_demo_run_builds_manifest_and_caches).


def test_changing_frames_count_reruns_caches_only_after_manifest(finished_run):
    jobs = planned(finished_run, merged(TINY_CONFIG, {"frames": {"count": 4}}))
    assert jobs.get("cache_shard") == 3 and "demo_data" not in jobs and "manifest" not in jobs


def test_jpeg_frame_caches_are_a_tenth_of_raw_ones_and_embed_alike(finished_run, demo_run):
    """The demo run (JPEG frames, the default) against its copy rerun to the CLIP shards with
    ``frames: {encoding: raw}``: the frame caches take at most 0.15 of the bytes, and every
    frame's CLIP embedding agrees to a cosine of at least 0.99."""
    raw = merged(TINY_CONFIG, {"frames": {"encoding": "raw"}})
    clip = sorted((demo_run / "results" / "embeddings" / "clip").rglob("shard-*.h5"))
    snakemake(demo_run, raw, *(str(p.relative_to(demo_run)) for p in clip))

    def frame_bytes(run):
        files = list((run / "results" / "cache" / "frames").rglob("*.h5"))
        assert len(files) == 45
        return sum(f.stat().st_size for f in files)

    assert frame_bytes(finished_run) <= 0.15 * frame_bytes(demo_run)
    for p in clip:
        ids, a, valid, _ = read_shard(finished_run / p.relative_to(demo_run))
        ids_raw, b, valid_raw, _ = read_shard(p)
        assert ids == ids_raw and valid.all() and valid_raw.all()
        a, b = a.astype("float32"), b.astype("float32")
        cos = (a * b).sum(-1) / (a**2).sum(-1) ** 0.5 / (b**2).sum(-1) ** 0.5
        assert cos.min() >= 0.99, (p.name, cos.min())


def test_unknown_config_key_stops_at_parse_time(tmp_path):
    out = snakemake(tmp_path, merged(TINY_CONFIG, {"frames": {"cout": 4}}), "-n", check=False)
    assert out.returncode != 0 and "cout" in out.stdout + out.stderr
    out = snakemake(tmp_path, merged(TINY_CONFIG, {"dataset": {"shards": "four"}}), "-n", check=False)
    assert out.returncode != 0 and "dataset.shards: 'four' is not an integer" in out.stdout + out.stderr


def test_missing_dataset_directory_is_a_clear_error(tmp_path):
    cfg = {"dataset": {"videos": str(tmp_path / "nope"), "lists": str(tmp_path)}}
    out = snakemake(tmp_path, cfg, "-n", check=False)
    assert out.returncode != 0 and "dataset.videos" in out.stdout + out.stderr


WILDCARD_END = "which Snakemake reads as a wildcard in a path (braces have no escape there): rename it"


def _lock_holder(results: Path) -> subprocess.Popen:
    """A process holding the results folder's run lock as a run's Snakemake process does."""
    code = "import sys, time; from moclip.io import hold_run_lock; hold_run_lock(sys.argv[1]); print(1, flush=True)"
    code += "; time.sleep(600)"
    holder = subprocess.Popen([sys.executable, "-c", code, str(results)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert holder.stdout.readline() == "1\n"
    return holder


def test_a_second_run_into_one_results_folder_is_refused_until_the_first_dies(tmp_path):
    """Snakemake locks a working directory, not a results folder: two runs from two
    directories both wrote one folder. The run's process holds a flock in the folder; a
    second run is refused in one line naming the holder; the kernel drops the lock with its
    process, so a run killed with SIGKILL leaves nothing to clear."""
    results = tmp_path / "shared results"
    config = merged(TINY_CONFIG, {"results": str(results)})
    holder = _lock_holder(results)
    try:
        out = snakemake(tmp_path / "second", config, str(results / "manifest.tsv"), check=False)
        said = out.stdout + out.stderr
        assert out.returncode != 0, said
        assert (
            f"{results}: another run is writing this results folder (pid {holder.pid}, working directory {REPO}): "
            "wait for it to end, or give this run another results folder"
        ) in said
        assert not (results / "manifest.tsv").exists()
        assert snakemake(tmp_path / "second", config, "-n", check=False).returncode == 0  # a dry run writes nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    snakemake(tmp_path / "second", config, str(results / "manifest.tsv"))  # the killed holder's lock is gone
    lock = (results / "logs" / "run.lock").read_text()
    assert lock.startswith("pid ") and lock.endswith(f"working directory {tmp_path / 'second'}\n")  # Snakemake's
    assert (results / "manifest.tsv").exists()


def test_braces_snakemake_reads_as_a_wildcard_stop_at_parse_time_naming_the_key_or_file(tiny_demo, tmp_path):
    """``{name}`` in the results folder, the dataset root or a video's name ended the run
    with Snakemake's WildcardError naming neither; now one line names the key (and the file
    and line that set it) or the video. Braces Snakemake leaves alone, and other characters
    a shell would mind, plan a whole run."""
    videos, lists = tiny_demo
    cfg = tmp_path / "run" / "test-config.yaml"
    out = snakemake(tmp_path / "run", merged(TINY_CONFIG, {"results": "res {wild}"}), "-n", check=False)
    said = out.stdout + out.stderr
    assert (
        out.returncode != 0 and f"{cfg}:{key_line(cfg, ['results'])}: results: 'res {{wild}}' holds {{wild}}, " in said
    )
    assert WILDCARD_END in said and "WildcardError" not in said and len(said.splitlines()) < 10, said
    root = tmp_path / "data {root}" / "UCF-101"
    shutil.copytree(videos, root)
    out = snakemake(
        tmp_path / "run",
        merged(TINY_CONFIG, {"dataset": {"videos": str(root), "lists": str(lists)}}),
        "-n",
        check=False,
    )
    said = out.stdout + out.stderr
    assert out.returncode != 0 and f": dataset.videos: {str(root)!r} holds {{root}}, {WILDCARD_END}" in said, said
    folder = tmp_path / "folder {} [x]"  # braces that are no wildcard are kept in inputs
    shutil.copytree(videos, folder)
    odd = next(folder.rglob("*.avi"))
    odd = odd.rename(odd.with_name("brace {wild}.avi"))
    config = merged(TINY_CONFIG, {"dataset": {"videos": str(folder), "format": "folder"}})
    out = snakemake(tmp_path / "run", config, "-n", check=False)
    said = out.stdout + out.stderr
    assert out.returncode != 0 and f"{str(odd)!r}: the name holds {{wild}}, {WILDCARD_END}" in said, said
    assert not (tmp_path / "run" / "results").exists()
    odd.rename(odd.with_name("brace {} {a-b} [x] $HOME %s;'.avi"))
    out = snakemake(tmp_path / "run", merged(config, {"results": "res [x] $HOME %s;'"}), "-n", check=False)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture
def real_layout(tiny_demo, tmp_path):
    """A copy of the tiny demo used as a user's own dataset (dataset.videos set)."""
    videos, lists = tmp_path / "data" / "UCF-101", tmp_path / "data" / "ucfTrainTestlist"
    shutil.copytree(tiny_demo[0], videos)
    shutil.copytree(tiny_demo[1], lists)
    cfg = merged(TINY_CONFIG, {"dataset": {"videos": str(videos), "lists": str(lists), "shards": 3}})
    return tmp_path / "run", videos, lists, cfg


def test_a_failed_and_a_cut_video_are_listed_and_adding_a_video_reruns_one_shard(real_layout):
    """A user's dataset with a truncated video (a failed video) and, the issue's case, one
    40-frame video among the demo's 24-frame ones with decode.max_frames 30 (cut without a
    word before): failures.tsv names the first; rule cache_failures' cut.tsv, each split's
    table and the summary (Markdown and the report's HTML) name the second with the 10
    frames left out, and moclip verify finds the run consistent. Then a video added to a
    split list reruns the manifest and one cache shard (one run for both: a run a case)."""
    wd, videos, lists, cfg = real_layout
    bad = videos / "BoxFall" / "v_BoxFall_g05_c01.avi"
    bad.write_bytes(bad.read_bytes()[:2000])  # truncated
    long = next(p for p in sorted(videos.glob("*/*_g05_c01.avi")) if p.parent.name != "BoxFall")
    with av.open(str(long)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    encode_video(long, frames + frames[::-1][: 40 - len(frames)])  # there and back: 40 frames
    cfg = merged(cfg, {"decode": {"max_frames": 30}})
    snakemake(wd, cfg)
    res = wd / "results"
    failures = (res / "cache" / "failures.tsv").read_text().splitlines()
    assert len(failures) == 2 and failures[1].startswith("v_BoxFall_g05_c01\tBoxFall/v_BoxFall_g05_c01.avi\t")
    # the cut video is no failure: it is cut.tsv's one row
    assert read_tsv(res / "cache" / "cut.tsv") == [
        {"video_id": long.stem, "path": f"{long.parent.name}/{long.name}", "n_frames": "30", "frames_left_out": "10"}
    ]
    line = f"Cut videos (1), read only up to decode.max_frames (frames left out of the video's): {long.stem} (10 of 40)"
    assert line in (res / "summary.md").read_text() and line in (res / "summary.html").read_text()
    for k in (1, 2, 3):
        assert line in (res / "reports" / f"split{k}" / "table.html").read_text()
    found = subprocess.run(
        [sys.executable, "-m", "moclip.cli", "verify", "results"], capture_output=True, text=True, cwd=wd
    )
    assert found.returncode == 0, found.stdout + found.stderr
    assert planned(wd, cfg) == {}

    shutil.copy(videos / "BoxFall" / "v_BoxFall_g04_c01.avi", videos / "BoxFall" / "v_BoxFall_g04_c02.avi")
    with open(lists / "trainlist01.txt", "a", newline="") as f:
        f.write("BoxFall/v_BoxFall_g04_c02.avi 4\r\n")
    index = sorted((res / "cache" / "index").iterdir())
    before = {p.name: p.stat().st_mtime_ns for p in index}
    out = snakemake(wd, cfg, "caches")  # the caches' part of the rerun (what follows them is other tests')
    # A dry run cannot see past the manifest checkpoint; the real run re-evaluates after it.
    assert out.stderr.count("rule cache_shard:") == 1, out.stderr
    changed = [p.name for p in index if p.stat().st_mtime_ns != before[p.name]]
    new_shard = f"shard-{shard_of('v_BoxFall_g04_c02', 3):05d}.tsv"
    assert changed == [new_shard]
    assert "v_BoxFall_g04_c02" in (res / "cache" / "index" / new_shard).read_text()
    assert "demo_data" not in out.stderr


def test_reencode_coviar_caches_the_340x256_reencodes_and_names_a_failed_one(real_layout):
    """dataset.reencode: coviar re-encodes each shard's videos and caches those files; a video
    that cannot be re-encoded is a failed video named by its original path. Back to none,
    the caches are made again from the videos themselves, without a re-encode job."""
    wd, videos, _, cfg = real_layout
    bad = videos / "BoxFall" / "v_BoxFall_g05_c01.avi"
    bad.write_bytes(bad.read_bytes()[:2000])  # truncated
    coviar = merged(cfg, {"dataset": {"reencode": "coviar"}})
    snakemake(wd, coviar, "caches")
    res = wd / "results"
    reencoded = [row for p in sorted((res / "reencoded" / "index").glob("*.tsv")) for row in read_tsv(p)]
    assert len(reencoded) == 45 and [r["video_id"] for r in reencoded if r["status"] != "reencoded"] == [bad.stem]
    assert len(list(res.glob("reencoded/shard-*/*.avi"))) == 44
    failures = (res / "cache" / "failures.tsv").read_text().splitlines()
    assert len(failures) == 2
    assert failures[1].startswith(f"{bad.stem}\tBoxFall/{bad.name}\tre-encode failed: cannot open"), failures
    row = next(r for r in read_manifest(res / "manifest.tsv") if r.video_id != bad.stem)
    with h5py.File(res / "cache" / "mv" / f"shard-{row.shard:05d}" / f"{row.video_id}.h5") as f:
        assert (f.attrs["width"], f.attrs["height"], f.attrs["codec"]) == (340, 256, "mpeg4")
        assert bytes(f["frame_type"][()]).decode() == ("I" + "P" * 11) * 2 and f["mv"].shape == (24, 32, 43, 2)
    index = read_tsv(res / "cache" / "index" / f"shard-{row.shard:05d}.tsv")
    assert f"{row.video_id}.avi" in {Path(r["path"]).name for r in index}  # the original's name, not the copy's
    assert "videos/s" in (res / "logs" / "reencoded" / f"shard-{row.shard:05d}.log").read_text()
    assert planned(wd, coviar, "caches") == {}
    assert planned(wd, cfg, "caches") == {"cache_shard": 3, "cache_failures": 1, "caches": 1}


def test_a_video_without_motion_vectors_fails_by_name_or_is_reencoded_on_request(real_layout):
    """An MJPEG video (its decode exports no vectors) is a failed video named with the reason;
    with decode.reencode_unsupported, reencode_shard re-encodes that video alone, the cache
    reads its re-encode and the others themselves, and results/cache/reencoded.tsv names it."""
    wd, videos, _, cfg = real_layout
    mjpeg = videos / "BoxFall" / "v_BoxFall_g05_c01.avi"
    with av.open(str(mjpeg)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    encode_video(mjpeg, frames, codec="mjpeg", pix_fmt="yuvj420p")
    out = snakemake(wd, cfg, "caches")
    assert "reencode_shard" not in out.stderr  # off: no re-encode job
    res = wd / "results"
    failures = read_tsv(res / "cache" / "failures.tsv")
    assert [(r["video_id"], r["path"]) for r in failures] == [(mjpeg.stem, f"BoxFall/{mjpeg.name}")]
    assert failures[0]["error"].startswith("codec 'mjpeg' exported no motion vectors: all 24 frames are intra-coded")
    assert "decode.reencode_unsupported: true" in failures[0]["error"]
    assert read_tsv(res / "cache" / "reencoded.tsv") == []

    on = merged(cfg, {"decode": {"reencode_unsupported": True}})
    assert planned(wd, on, "caches") == {"reencode_shard": 3, "cache_shard": 3, "cache_failures": 1, "caches": 1}
    snakemake(wd, on, "caches")
    status = {r["video_id"]: r["status"] for p in (res / "reencoded" / "index").glob("*.tsv") for r in read_tsv(p)}
    assert len(status) == 45 and {v for v, s in status.items() if s != "original"} == {mjpeg.stem}
    assert status[mjpeg.stem] == "reencoded" and [p.name for p in res.glob("reencoded/shard-*/*.avi")] == [mjpeg.name]
    assert read_tsv(res / "cache" / "failures.tsv") == []
    assert read_tsv(res / "cache" / "reencoded.tsv") == [
        {"video_id": mjpeg.stem, "path": f"BoxFall/{mjpeg.name}", "status": "ok", "error": ""}
    ]
    shard = next(r.shard for r in read_manifest(res / "manifest.tsv") if r.video_id == mjpeg.stem)
    with h5py.File(res / "cache" / "mv" / f"shard-{shard:05d}" / f"{mjpeg.stem}.h5") as f:
        assert (f.attrs["codec"], f.attrs["width"], f.attrs["height"]) == ("mpeg4", 320, 240)
        assert f.attrs["n_mv_frames"] == 22 and f["mv"].shape == (24, 30, 40, 2)
    index = read_tsv(res / "cache" / "index" / f"shard-{shard:05d}.tsv")
    assert {r["video_id"] for r in index if r["reencoded"] == "True"} == {mjpeg.stem}
    assert planned(wd, on, "caches") == {}


@pytest.mark.parametrize(
    "change, reruns, untouched",
    [
        (
            {"heads": {"lr": 0.003}},
            {"train_head": 6, "report_split": 3, "summary": 1},
            {"cache_shard", "clip_embed", "train_mvnet", "mv_features"},
        ),
        (
            {"mvnet": {"lr": 0.002}},  # the CLIP probe reads no MV feature: only fusion retrains
            {"train_mvnet": 3, "mv_features": 3, "train_head": 3, "report_split": 3},
            {"cache_shard", "clip_embed", "manifest"},
        ),
        (  # the MLP's width and the MV draws shape the fusion head only
            {"heads": {"hidden": 64, "mv_draws": 2}},
            {"train_head": 3, "report_split": 3, "summary": 1},
            {"cache_shard", "clip_embed", "train_mvnet"},
        ),
        (
            {"clip": {"batch_videos": 3}},
            {"clip_embed": 3, "train_head": 6},
            {"cache_shard", "train_mvnet", "mv_features"},
        ),
        (  # the precision shapes the numbers: asked for, it reruns its stages
            {"clip": {"precision": "float32"}, "mvnet": {"precision": "float32"}},
            {"clip_embed": 3, "train_mvnet": 3, "mv_features": 3, "train_head": 6},
            {"cache_shard", "manifest"},
        ),
        (  # how the frames are stored: the caches and everything after them
            {"frames": {"encoding": "raw"}},
            {"cache_shard": 3, "clip_embed": 3, "train_mvnet": 3, "mv_features": 3, "train_head": 6},
            {"demo_data", "manifest"},
        ),
        (
            {"frames": {"jpeg_quality": 90}},
            {"cache_shard": 3, "clip_embed": 3},
            {"demo_data", "manifest"},
        ),
        (  # the device is a machine setting: moving the run reruns nothing
            {"clip": {"device": "cpu"}, "mvnet": {"device": "cpu"}},
            {},
            {"cache_shard", "clip_embed", "train_mvnet", "mv_features", "train_head", "report_split", "summary"},
        ),
    ],
    ids=["head-lr", "mvnet-lr", "fusion-only", "clip-setting", "precision", "frame-encoding", "jpeg-quality", "device"],
)
def test_a_setting_reruns_exactly_its_stage_and_after(finished_run, change, reruns, untouched):
    jobs = planned(finished_run, merged(TINY_CONFIG, change))
    for rule, n in reruns.items():
        assert jobs.get(rule) == n, jobs
    assert not untouched & set(jobs), jobs


def test_a_nested_config_override_merges_into_its_block_as_snakemake_users_expect(finished_run):
    """``--config heads='{"lr": 0.003}'`` plans what the same change in a file plans (it was
    refused: Snakemake leaves the leaves strings); the tiny config's other heads keys stay;
    the same value as the file's reruns nothing; an error names --config and the key."""
    jobs = planned(finished_run, TINY_CONFIG, "--config", 'heads={"lr": 0.003}')
    assert jobs == planned(finished_run, merged(TINY_CONFIG, {"heads": {"lr": 0.003}}))
    assert jobs.get("train_head") == 6 and "train_mvnet" not in jobs, jobs
    assert planned(finished_run, TINY_CONFIG, "--config", 'heads={"lr": 0.001, "epochs": 40}') == {}
    out = snakemake(finished_run, TINY_CONFIG, "--config", "heads={epochs: 0}", "-n", check=False)
    said = out.stdout + out.stderr
    assert out.returncode != 0 and "--config: heads.epochs: 0 is less than the minimum of 1" in said, said
    assert "config.yaml:" not in said


def _run_until(workdir: Path, config: dict, rule: str, cores: str) -> dict[str, list[Path]]:
    """Start the workflow, SIGKILL it (with its jobs) once a ``rule`` job has finished, and
    return the outputs of every job Snakemake had reported finished by then, by rule."""
    log = workdir / "killed.log"
    session = {"start_new_session": True}
    proc = runner.start(workdir, config, log=log, cores=cores, config_name=CONFIG_NAME, popen=session)
    deadline = time.time() + 600
    while f"(Rule: {rule})" not in log.read_text():
        assert proc.poll() is None and time.time() < deadline, "the run ended before the kill point"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    lines = log.read_text().splitlines()
    done = {m.group(1) for ln in lines if (m := re.match(r"Finished jobid: (\d+)", ln))}
    outputs: dict[str, list[Path]] = {}
    for i, ln in enumerate(lines):
        if m := re.match(r"(?:local)?(?:rule|checkpoint) (\w+):$", ln):
            block = {}
            for b in lines[i + 1 :]:
                if not b.startswith("    "):
                    break
                key, _, value = b.strip().partition(": ")
                block[key] = value
            if block.get("jobid") in done and "output" in block:
                outputs.setdefault(m.group(1), []).extend(workdir / o.strip() for o in block["output"].split(","))
    return outputs


def test_killed_run_resumes_to_identical_results(finished_run, tmp_path):
    """A SIGKILL of Snakemake and its jobs once a clip_embed job has finished, then
    --rerun-incomplete: nothing finished runs again and the results are the uninterrupted
    run's, byte for byte."""
    wd = tmp_path / "killed"
    finished = _kill_the_run(wd, "clip_embed", "2")
    snakemake(wd, TINY_CONFIG, "--unlock")  # a SIGKILL leaves Snakemake's lock behind, as for any user
    snakemake(wd, TINY_CONFIG, "--rerun-incomplete")
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # nothing finished ran again
    resumed, reference = result_files(wd), result_files(finished_run)
    assert sorted(resumed) == sorted(reference)
    assert [k for k in resumed if resumed[k] != reference[k]] == []


def _kill_the_run(wd: Path, rule: str, cores: str) -> dict[Path, int]:
    """:func:`_run_until` ``rule``, checked: the files of the jobs finished by the kill, with
    their mtimes; every cache with a final name is complete."""
    finished_outputs = _run_until(wd, TINY_CONFIG, rule, cores)
    assert finished_outputs.get(rule), finished_outputs  # killed after a job of that rule had finished
    for p in wd.glob("results/cache/*/shard-*/*.h5"):
        with h5py.File(p) as f:  # every file with a final name is complete
            assert f.attrs["status"] == "ok"
    return {p: p.stat().st_mtime_ns for paths in finished_outputs.values() for p in paths if p.is_file()}


def test_a_run_killed_twice_on_one_core_ends_as_the_untouched_two_core_run(finished_run, tmp_path):
    """A first run on one core, SIGKILLed with its jobs once a cache_shard job has finished;
    resumed (--rerun-incomplete, one core) until a kill -9 of a train_mvnet job's process
    (not Snakemake's), as the kernel's OOM killer or a user would, which fails the run and
    makes Snakemake delete that job's outputs; then the next plain run (no
    --rerun-incomplete) builds what is missing. Each kill leaves every file that survived
    it as it was, and the results are the two-core run's byte for byte: --cores caps each
    job's threads, torch computes with the config's cpu_threads whatever they are, and the
    loader workers they add change no batch."""
    wd = tmp_path / "killed"
    finished = _kill_the_run(wd, "cache_shard", "1")
    snakemake(wd, TINY_CONFIG, "--unlock")
    console = _kill_a_job(wd, TINY_CONFIG, "train_mvnet", "--rerun-incomplete", cores="1")
    assert "Error in rule train_mvnet" in console, console
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # nothing finished ran again
    survived = {wd / rel: (wd / rel).stat().st_mtime_ns for rel in result_files(wd)}
    assert len(survived) < len(result_files(finished_run))  # the run stopped short
    snakemake(wd, TINY_CONFIG, cores="1")
    assert planned(wd, TINY_CONFIG) == {}  # done
    assert {p: p.stat().st_mtime_ns for p in survived} == survived  # nothing that survived ran again
    rebuilt, reference = result_files(wd), result_files(finished_run)
    assert sorted(rebuilt) == sorted(reference)
    assert [k for k in rebuilt if rebuilt[k] != reference[k]] == []  # byte for byte


def _kill_a_job(workdir: Path, config: dict, rule: str, *args: str, cores: str = "2") -> str:
    """Run the workflow with ``args`` and SIGKILL the first ``rule`` job's process (the job's
    script, not Snakemake) once it runs, as the kernel's OOM killer or a user would; return
    Snakemake's console once it has ended."""
    import psutil  # Snakemake's own dependency

    log = workdir / "killed.log"
    proc = runner.start(workdir, config, *args, log=log, cores=cores, config_name=CONFIG_NAME)
    deadline, killed = time.time() + 600, None
    while killed is None:
        assert proc.poll() is None and time.time() < deadline, "the run ended before a job of the rule ran"
        for child in psutil.Process(proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if any(a.endswith(f".{rule}.py") for a in child.cmdline()):  # .snakemake/scripts/tmp*.<rule>.py
                    killed = child
                    break
        time.sleep(0.02)
    killed.kill()
    assert proc.wait(timeout=600) != 0  # the job failed, and so the run
    return log.read_text()


def test_a_job_killed_in_a_forced_rerun_is_rebuilt_by_the_next_plain_run(finished_run, demo_run):
    """The issue's case: kill -9 of a clip_embed job during ``--forcerun clip_embed``.
    Snakemake deletes the job's output; its readers are up to date, and Snakemake rebuilds a
    missing file only when a job that runs asks for it: the default target asks for every
    output, so the next plain run rebuilds it and what reads it, to the untouched bytes."""
    console = _kill_a_job(demo_run, TINY_CONFIG, "clip_embed", "--forcerun", "clip_embed")
    assert "Error in rule clip_embed" in console, console
    shards = sorted((finished_run / CLIP_DIR).glob("shard-*.h5"))
    gone = [p.name for p in shards if not (demo_run / CLIP_DIR / p.name).exists()]
    assert gone, "the killed job left its output"  # Snakemake deleted it
    found = subprocess.run(  # moclip verify names it, too
        [sys.executable, "-m", "moclip.cli", "verify", "results"], capture_output=True, text=True, cwd=demo_run
    )
    assert found.returncode == 1 and all(f"{CLIP_DIR}/{g}" in found.stdout for g in gone), found.stdout
    jobs = planned(demo_run, TINY_CONFIG)
    assert jobs.get("clip_embed", 0) >= len(gone) and "cache_shard" not in jobs and "train_mvnet" not in jobs, jobs
    snakemake(demo_run, TINY_CONFIG)
    assert planned(demo_run, TINY_CONFIG) == {}  # done
    rebuilt, reference = result_files(demo_run), result_files(finished_run)
    assert sorted(rebuilt) == sorted(reference)
    assert [k for k in rebuilt if rebuilt[k] != reference[k]] == []  # byte for byte


# A console line's time: Snakemake's ("[Mon Dec  7 13:00:25 2026]") or moclip's ("[13:00:26] job: ...").
CONSOLE_TIME = re.compile(r"\[(?:\w{3} \w{3} +\d+ )?(\d\d):(\d\d):(\d\d)(?: \d{4})?\]")


@pytest.mark.fast
def test_a_runs_console_hears_of_its_jobs_at_least_every_30_seconds(finished_run):
    """The console of a run (its jobs' progress every second here, MOCLIP_PROGRESS_EVERY=1;
    15 s by default) never goes 30 s without a line while jobs run: each job's own lines,
    named after its log, with its count, rate and ETA once it counts, and the run's
    "running:" line while a job is still starting; never two of one job in a second."""
    console = (finished_run / "console.txt").read_text().splitlines()
    times, ours = [], {}
    for line in console:
        if m := CONSOLE_TIME.match(line):
            h, mi, s = map(int, m.groups())
            times.append(h * 3600 + mi * 60 + s)
            if own := re.match(r"\[\d\d:\d\d:\d\d\] ([^:\s]+): \S", line):
                ours.setdefault(own.group(1), []).append((times[-1], line))
    gaps = [(b - a) % 86400 for a, b in zip(times, times[1:])]
    print(f"{len(times)} stamped console lines, longest gap {max(gaps)} s, jobs' lines: {len(ours)} names")
    assert max(gaps) <= 30, [g for g in gaps if g > 30]
    assert any(name.startswith("mvnet/") for name in ours) and "demo_data" in ours, sorted(ours)
    counting = r"\] \S+: [\w ]+ \d+/\d+ \(\d+%\), [\d.e+]+ (\w+/s|s per \w+), elapsed \d:\d\d:\d\d, eta \d:\d\d:\d\d"
    assert any(re.search(counting, line) for lines in ours.values() for _, line in lines), ours
    for lines in ours.values():  # one line a second at most, whatever the job does
        assert all((b - a) % 86400 >= 1 for (a, _), (b, _) in zip(lines, lines[1:])), lines


def test_a_finished_run_leaves_nothing_of_its_own_in_the_temporary_folder(finished_run):
    """Not the console's stamp file, nor a job's temporary file: a user's /tmp keeps only what
    the libraries leave there (the problem files of Snakemake's ILP scheduler, PuLP's, and
    torch's compile cache)."""
    theirs = re.compile(r"^[0-9a-f]{32}-pulp\.(mps|sol)$|^torchinductor_")
    left = sorted(p.name for p in (finished_run / RUN_TMP).iterdir() if not theirs.match(p.name))
    assert left == []


def test_a_finished_runs_console_ends_naming_its_results(finished_run):
    console = (finished_run / "console.txt").read_text()
    assert "Shell command: None" not in console  # script rules have none to print
    # a job's long file lists as their first files and a count (a shard's videos, about 15 here)
    lists = [ln for ln in console.splitlines() if ln.lstrip().startswith(("input:", "output:"))]
    assert lists and max(map(len, lists)) < 600, max(lists, key=len)
    assert any(re.search(r", \.\.\. \d+ more \(\d{2,} files\)$", ln) for ln in lists), lists
    last = [ln for ln in console.splitlines() if ln.startswith("moclip:")][-1]
    assert last.startswith(
        f"moclip: done. The table: results/summary.md (and .html); the report: {snakemake_program(SNAKEMAKE)} "
    )
    report = shlex.split(last.partition("the report: ")[2])
    assert report[-2:] == ["--report", "report.html"] and "--cores" not in report
    assert report[report.index("--configfile") + 1] == str(finished_run / "test-config.yaml")


def test_ctrl_c_prints_no_traceback_and_names_the_command_that_resumes(tmp_path):
    """A user's Ctrl-C (SIGINT to the whole foreground group) while a job of a forced run
    (--forceall) runs: no Python traceback from the jobs on the console, a last line saying
    the run was interrupted and naming the command, and that command (run again as printed)
    runs only the job left: --forceall is not repeated."""
    wd = tmp_path / "ctrl-c"
    wd.mkdir()
    # The interrupt lands inside a training job, after its first of 60 epochs (seconds of work
    # left): the tiny run's other jobs can end in less time than the test takes to react.
    slow = {**TINY_CONFIG, "dataset": {"shards": 1, "splits": [1]}}
    slow["mvnet"] = {**TINY_CONFIG["mvnet"], "epochs": 60, "milestones": [50]}
    mv = f"mvnet/{plan.mv_tag(merged(DEFAULTS, slow))}/split1"
    model, log = wd / "results" / mv / "model.pt", wd / "results" / "logs" / f"{mv}.log"
    # Ctrl-C's default action, as from a terminal, whatever pytest was started from (a
    # shell's background job inherits SIGINT ignored, and so would snakemake).
    default_sigint = {"start_new_session": True, "preexec_fn": lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)}
    args = ("--forceall", f"results/{mv}/model.pt")
    proc = runner.start(wd, slow, *args, log=wd / "console.txt", config_name=CONFIG_NAME, popen=default_sigint)
    cfg = wd / CONFIG_NAME
    deadline = time.time() + 600
    while not (log.exists() and "epochs 1/60" in log.read_text()):  # training, 59 epochs to go
        assert proc.poll() is None and time.time() < deadline, "the run ended before the interrupt"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=300) != 0
    assert not model.exists(), "the training job was not interrupted"
    console = (wd / "console.txt").read_text()
    assert "Traceback" not in console and "KeyboardInterrupt" not in console, console
    last = [ln for ln in console.splitlines() if ln.startswith("moclip:")][-1]
    assert last.startswith("moclip: the run was interrupted.") and last.endswith("/model.pt"), console
    assert "Error in rule" not in console and "WorkflowError" not in console, console
    again = shlex.split(last.partition("to resume: ")[2])
    assert again[-1] == f"results/{mv}/model.pt" and str(cfg) in again and "--forceall" not in again
    out = subprocess.run([SNAKEMAKE, *again[1:]], capture_output=True, text=True, env=runner.environment(), cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert model.exists() and "up to the targets asked for" in out.stdout + out.stderr
    assert job_counts(out.stdout + "\n" + out.stderr) == {"train_mvnet": 1}, out.stderr  # the rest was done


def test_bad_split_lists_stop_before_any_job(real_layout):
    wd, videos, lists, cfg = real_layout
    (lists / "testlist02.txt").write_text("")
    out = snakemake(wd, cfg, "-n", check=False)
    assert out.returncode != 0 and "testlist02.txt: split list is empty" in out.stdout + out.stderr
    (lists / "testlist02.txt").write_text("BoxFall/../../../etc/passwd\r\n")
    out = snakemake(wd, cfg, "-n", check=False)
    assert out.returncode != 0 and "testlist02.txt:1" in out.stdout + out.stderr
    assert not (wd / "results").exists()


def test_names_with_a_tab_or_a_line_break_stop_a_dry_run_and_check_config_naming_each(tiny_demo, tmp_path):
    """The issue's case: such a name stopped the whole run at the manifest job with a
    traceback naming the first. A name is vetted where the rest of a listing is (a listed
    file that does not exist, a path out of the root): at parse time, before any job, in
    the workflow and check-config alike, one line a file, every such file at once."""
    videos = tmp_path / "videos"
    (videos / "a").mkdir(parents=True)
    demo = sorted(tiny_demo[0].rglob("*.avi"))
    for src, name in zip(demo, ("ok.avi", "with\ttab.avi", "two\nlines.avi", "also fine.avi")):
        shutil.copy(src, videos / "a" / name)
    cfg = merged(TINY_CONFIG, {"dataset": {"videos": str(videos), "format": "folder"}})
    why = "a tab or line break in the file's name (the manifest is tab-separated lines): rename it"
    lines = [f"{str(videos / 'a' / n)!r}: {why}" for n in ("two\nlines.avi", "with\ttab.avi")]
    wd = tmp_path / "run"
    out = snakemake(wd, cfg, "-n", check=False)
    console = out.stdout + out.stderr
    assert out.returncode != 0 and all(line in console.splitlines() for line in lines), console
    assert "Traceback" not in console and not (wd / "results").exists()
    checked = subprocess.run(
        [sys.executable, "-m", "moclip.cli", "check-config", "test-config.yaml"], capture_output=True, text=True, cwd=wd
    )
    assert checked.returncode == 2 and all(line in checked.stderr for line in lines), checked.stderr


def test_default_profile_runs_gpu_jobs_one_at_a_time(tmp_path):
    """The repository's default profile limits the ``gpu`` resource: three GPU jobs given
    three cores still run one after another on the one card."""
    shutil.copytree(REPO / "profiles" / "default", tmp_path / "profiles" / "default")
    (tmp_path / "Snakefile").write_text(
        'rule all:\n    input: expand("o{i}.txt", i=range(3))\n\n'
        'rule g:\n    output: "o{i}.txt"\n    resources: gpu=1\n'
        '    shell: "date +%s.%N > {output}; sleep 1; date +%s.%N >> {output}"\n'
    )
    subprocess.run([SNAKEMAKE, "--cores", "3", "-q"], cwd=tmp_path, check=True, capture_output=True)
    spans = sorted(tuple(map(float, (tmp_path / f"o{i}.txt").read_text().split())) for i in range(3))
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:])), spans


def _resources(out: str, rule: str) -> list[dict[str, str]]:
    """The resources of each job of ``rule`` in a dry run's printout."""
    found = []
    for block in out.split("\nrule ")[1:] + out.split("\nlocalrule ")[1:]:
        if block.startswith(f"{rule}:"):
            line = next(ln for ln in block.splitlines() if ln.strip().startswith("resources:"))
            found.append(dict(kv.split("=", 1) for kv in line.split(":", 1)[1].replace(" ", "").split(",")))
    return found


def test_jobs_ask_for_time_that_grows_with_their_work(demo_run):
    """runtime (sbatch -t) follows a job's work: epochs for MV training, videos for a shard;
    memory is a constant of the job's kind (it does not grow with the data)."""
    jobs = {}
    for epochs in (20_000, 40_000):
        config = merged(TINY_CONFIG, {"mvnet": {"epochs": epochs, "milestones": [1]}})
        out = snakemake(demo_run, config, "-n", "--forceall").stdout
        jobs[epochs] = {rule: _resources(out, rule) for rule in ("train_mvnet", "cache_shard", "clip_embed")}
    small, large = (int(j["runtime"]) for j in (jobs[20_000]["train_mvnet"][0], jobs[40_000]["train_mvnet"][0]))
    assert small > 10 and abs(large - 2 * small) <= 1, (small, large)
    assert jobs[20_000]["train_mvnet"][0]["mem_mb"] == jobs[40_000]["train_mvnet"][0]["mem_mb"]
    caches = jobs[20_000]["cache_shard"]
    assert len(caches) == 3 and all(int(c["runtime"]) >= 10 and int(c["mem_mb"]) > 0 for c in caches)


def test_jobs_that_run_a_network_on_the_card_ask_for_it(demo_run):
    """With clip.device and mvnet.device cuda, every job that runs a network there declares
    gpu=1, mv_features included (the scheduler's and sbatch's --gpus), and takes every
    shard (one start-up: one clip_embed job, one mv_features job a split); on the CPU,
    and with auto on this machine without a GPU, none asks for a card and each job takes
    one shard."""
    gpu, jobs = {}, {}
    for device in ("cuda", "auto", "cpu"):
        config = merged(TINY_CONFIG, {"clip": {"device": device}, "mvnet": {"device": device}})
        out = snakemake(demo_run, config, "-n", "--forceall").stdout
        rules = ("clip_embed", "train_mvnet", "mv_features", "train_head", "cache_shard")
        gpu[device] = {rule: {job.get("gpu", "0") for job in _resources(out, rule)} for rule in rules}
        jobs[device] = {rule: len(_resources(out, rule)) for rule in ("clip_embed", "mv_features")}
    want = {"clip_embed": {"1"}, "train_mvnet": {"1"}, "mv_features": {"1"}}
    assert {r: g for r, g in gpu["cuda"].items() if g != {"0"}} == want, gpu["cuda"]
    assert jobs["cuda"] == {"clip_embed": 1, "mv_features": 3}  # 3 shards, 3 splits
    assert gpu["auto"] == gpu["cpu"] and all(g == {"0"} for g in gpu["cpu"].values()), gpu
    assert jobs["auto"] == jobs["cpu"] == {"clip_embed": 3, "mv_features": 3}  # a job a shard


def _ucf101_tree(root: Path, classes: int = 101, groups: int = 25) -> tuple[Path, Path]:
    """UCF101's layout of empty files, a clip a class and group: its lists (split K tests
    groups 7K-6..7K), enough for the manifest and a dry run (no video is read)."""
    videos, lists = root / "UCF-101", root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    entries = [(c, f"v_Class{c:03d}_g{g:02d}_c01.avi", g) for c in range(1, classes + 1) for g in range(1, groups + 1)]
    (lists / "classInd.txt").write_text("".join(f"{c} Class{c:03d}\r\n" for c in range(1, classes + 1)))
    for c, name, _ in entries:
        (videos / f"Class{c:03d}").mkdir(parents=True, exist_ok=True)
        (videos / f"Class{c:03d}" / name).write_bytes(b"")
    for k in (1, 2, 3):
        test = set(range(7 * k - 6, 7 * k + 1))
        (lists / f"trainlist0{k}.txt").write_text(
            "".join(f"Class{c:03d}/{n} {c}\r\n" for c, n, g in entries if g not in test)
        )
        (lists / f"testlist0{k}.txt").write_text("".join(f"Class{c:03d}/{n}\r\n" for c, n, g in entries if g in test))
    return videos, lists


GPU_RULES = ("clip_embed", "zeroshot", "train_mvnet", "mv_features")  # every rule that runs a network but the heads


def test_the_readme_slurm_command_plans_every_gpu_rule_on_a_gpu(hub_stub, tmp_path):
    """The README's command ("On a SLURM cluster": the SLURM profile, config/ucf101.yaml and a
    file of the user's paths, device auto) as a dry run from a login node without a GPU, on a
    UCF101-shaped tree: every GPU rule asks for a card, with the runtime of a GPU plan (that
    of device cuda), never the CPU's (days of MV training)."""
    videos, lists = _ucf101_tree(tmp_path / "data")
    paths = {"dataset": {"videos": str(videos), "lists": str(lists)}}  # my-paths.yaml
    preset = str(REPO / "config" / "ucf101.yaml")
    work = tmp_path / "run"
    configs = ("--configfile", preset, str(work / "test-config.yaml"))  # the helper writes it
    snakemake(work, paths, "results-ucf101/manifest.tsv", *configs, env=hub_stub)  # the checkpoint, locally
    readme = ("--workflow-profile", str(REPO / "profiles" / "slurm"), *configs)
    readme += ("--default-resources", "slurm_account=abc123", "slurm_partition=cpu")
    out = snakemake(work, paths, "-n", *readme, cores=None, env=hub_stub).stdout
    on_slurm = {rule: _resources(out, rule) for rule in GPU_RULES}
    cuda = merged(paths, {"clip": {"device": "cuda"}, "mvnet": {"device": "cuda"}})
    local = snakemake(work, cuda, "-n", *configs, env=hub_stub).stdout
    for rule in GPU_RULES:
        assert on_slurm[rule] and all(job["gpu"] == "1" for job in on_slurm[rule]), (rule, on_slurm[rule])
        want = sorted(j["runtime"] for j in _resources(local, rule))  # memory: the profile's threads
        assert sorted(j["runtime"] for j in on_slurm[rule]) == want, rule
    assert len(on_slurm["clip_embed"]) == 1 and len(on_slurm["mv_features"]) == 3  # a GPU job takes every shard
    assert all(int(j["runtime"]) < 24 * 60 for j in on_slurm["train_mvnet"]), on_slurm["train_mvnet"]


def test_a_gpu_run_takes_every_shard_in_one_job_and_its_outputs_are_the_same_files(demo_run):
    """On a GPU a clip_embed job takes every shard and a mv_features job every shard of its
    split, writing the same shard files (same names) downstream reads. A finished CPU run
    moved to a GPU re-embeds once (a batched job reads every shard's cache, a set of inputs
    the CPU's jobs never had) and what reads the embeddings follows; the caches, the MV
    networks and the manifest stay (dry run here: the CPU machine has no card)."""
    config = merged(TINY_CONFIG, {"clip": {"device": "cuda"}, "mvnet": {"device": "cuda"}})
    jobs = planned(demo_run, config)
    assert jobs["clip_embed"] == 1 and jobs["mv_features"] == 3  # one job for all shards, one a split
    assert not {"manifest", "cache_shard", "train_mvnet", "zeroshot"} & set(jobs), jobs
    out = snakemake(demo_run, config, "-n", "--forcerun", "clip_embed", "mv_features").stdout
    assert "shard-00000.h5" in out and "all-shards.log" in out and "split2.log" in out


@pytest.mark.parametrize(("preset", "reencodes"), [("ucf101.yaml", False), ("ucf101-paper.yaml", True)])
def test_each_ucf101_preset_builds_its_whole_dag(tiny_demo, hub_stub, tmp_path, preset, reencodes):
    """A UCF101 preset as a user runs it, on the tiny demo laid out as UCF101 at the preset's
    own relative paths: it passes the parse-time checks (its models are in open_clip's and
    timm's registries; nothing is downloaded), builds the manifest, then a dry run plans
    every stage; only the paper's recipe re-encodes."""
    shutil.copytree(tiny_demo[0], tmp_path / "data" / "UCF-101")
    shutil.copytree(tiny_demo[1], tmp_path / "data" / "ucfTrainTestlist")
    config = merged(yaml.safe_load((REPO / "config" / preset).read_text()), {"dataset": {"val_groups": 1, "shards": 3}})
    snakemake(tmp_path, config, f"{config['results']}/manifest.tsv", env=hub_stub)  # the checkpoint
    jobs = planned(tmp_path, config, env=hub_stub)
    assert jobs.get("reencode_shard", 0) == (3 if reencodes else 0)
    assert jobs["cache_shard"] == jobs["clip_embed"] == 3
    assert jobs["train_mvnet"] == jobs["zeroshot"] == 3 and jobs["mv_features"] == 3 and jobs["summary"] == 1


def test_weights_neither_cached_nor_reachable_stop_a_dry_run_and_check_config(tiny_demo, tmp_path):
    """Offline with an empty Hugging Face cache, the paper preset stops `snakemake -n` and
    `moclip check-config` before any job: one line a tag, naming the preset's file and line,
    the model and tag, and the command that gets the weights."""
    config = yaml.safe_load((REPO / "config" / "ucf101-paper.yaml").read_text())
    config = merged(config, {"dataset": {"videos": str(tiny_demo[0]), "lists": str(tiny_demo[1]), "shards": 3}})
    offline = {"HF_HUB_CACHE": str(tmp_path / "empty-hub"), "HF_HUB_OFFLINE": "1"}
    out = snakemake(tmp_path / "run", config, "-n", check=False, env=offline)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    for what, repo in (("ViT-B-32 openai", "vit_base_patch32_clip_224.openai"), ("efficientnet_b0", "ra_in1k")):
        lines = [ln for ln in text.splitlines() if f"the weights of {what}" in ln]
        assert len(lines) == 1 and "cannot be fetched (HF_HUB_OFFLINE is set)" in lines[0], text
        assert "hf download timm/" in lines[0] and repo in lines[0]
    assert "Traceback" not in text
    cfg = tmp_path / "run" / "test-config.yaml"
    check = subprocess.run(
        [sys.executable, "-m", "moclip.cli", "check-config", str(REPO / "config" / "ucf101-paper.yaml"), str(cfg)],
        capture_output=True,
        text=True,
        env={**os.environ, **offline},
    )
    assert check.returncode == 2 and check.stderr.count("the weights of") == 2, check.stderr
    assert check.stderr.startswith("moclip check-config: error: ")


@pytest.mark.parametrize("fmt", ["hmdb51", "csv"])
def test_a_labelled_format_runs_end_to_end_and_its_reports_name_it(tmp_path, fmt):
    """The demo's clips laid out as HMDB51 or as a CSV table, given as a user's own dataset:
    the whole workflow runs on split 1, and the summary names the dataset."""
    videos, lists = tmp_path / "data" / "videos", tmp_path / "data" / ("labels.csv" if fmt == "csv" else "splits")
    make_demo_dataset(videos, lists, TINY_DEMO, threads=2, format=fmt)
    config = merged(
        TINY_CONFIG,
        {"dataset": {"format": fmt, "videos": str(videos), "lists": str(lists), "splits": [1], "shards": 2}},
    )
    wd = tmp_path / "run"
    snakemake(wd, config)
    summary = json.loads((wd / "results" / "summary.json").read_text())
    assert summary["dataset"]["format"] == fmt and summary["dataset"]["videos"] == TINY_DEMO.n_videos()
    assert summary["dataset"]["classes"] == len(TINY_DEMO.classes()) and summary["splits"] == [1]
    assert {"mv_only", "clip_linear", "fusion"} <= set(summary["methods"])
    md = (wd / "results" / "summary.md").read_text()
    assert f"Dataset: {fmt} at `{videos}`" in md
    rows = read_manifest(wd / "results" / "manifest.tsv")
    unused = {"hmdb51": {""}, "csv": set()}[fmt]  # HMDB51's 0: in no part of the split
    assert {r.split1 for r in rows} == {"train", "val", "test"} | unused


def test_a_folder_run_extracts_features_of_every_video_and_trains_nothing(finished_run, tmp_path):
    """dataset.format: folder, on the demo generated in that layout (nested folders with
    spaces, one file name in many folders): the default target is the features, CLIP's and
    a finished run's MV network's, for every video; no head, no report."""
    model = next((finished_run / "results" / "mvnet").glob("*/split1/model.pt"))
    config = merged(TINY_CONFIG, {"dataset": {"format": "folder"}, "features": {"mv_model": str(model)}})
    snakemake(tmp_path, config)
    res = tmp_path / "results"
    rows = read_manifest(res / "manifest.tsv")
    assert len(rows) == TINY_DEMO.n_videos() == len({r.video_id for r in rows})
    assert all(r.label == -1 and " " in r.path for r in rows)
    for stream in ("clip", "mv"):
        f = moclip.load_features(res, stream)  # a folder run: one network, no split
        assert len(f.files) == 3 and f.ids == [r.video_id for r in rows] and f.labels is None, stream
    assert not (res / "heads").exists() and not (res / "reports").exists() and not (res / "mvnet").exists()
    assert planned(tmp_path, config) == {}
