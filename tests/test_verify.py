"""Files broken outside a job: each read names the file and its rebuild, and ``moclip verify``
finds them on a finished tiny run and clears them so that one run restores the untouched outputs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
from conftest import TINY_CONFIG, flip_byte, planned, result_files, snakemake

from moclip.io import snakemake_program
from moclip.verify import clear, verify

pytestmark = pytest.mark.workflow
CLIP_DIR = "results/embeddings/clip/moclip-tiny_random-seed0"


def moclip_verify(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """``moclip verify`` in a run's directory, as a user types it."""
    cmd = [sys.executable, "-m", "moclip.cli", "verify", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)


def first_cache(workdir: Path, kind: str, shard: int) -> str:
    """A shard's first cache file, relative to the run's directory."""
    return (
        min((workdir / "results" / "cache" / kind / f"shard-{shard:05d}").glob("*.h5")).relative_to(workdir).as_posix()
    )


def flip_feature_bytes(path: Path) -> None:
    """Invert four bytes inside a shard's features: a bad disk block, not a cut."""
    with h5py.File(path) as f:
        offset = f["features"].id.get_chunk_info(0).byte_offset + 10
    with open(path, "r+b") as f:
        f.seek(offset)
        data = f.read(4)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in data))


@pytest.mark.parametrize("fault", ["cut", "flipped"])
def test_a_damaged_frame_cache_stops_the_clip_stage_with_its_name_and_rebuild_first(demo_run, fault):
    cache = first_cache(demo_run, "frames", 1)
    if fault == "cut":
        os.truncate(demo_run / cache, 5000)  # a cache cut short outside any job
    else:
        flip_byte(demo_run / cache, "frames_jpeg")  # one byte of a JPEG frame: it would decode, wrong
    target = f"{CLIP_DIR}/shard-00001.h5"
    out = snakemake(demo_run, TINY_CONFIG, "--forcerun", "clip_embed", "--", target, check=False)
    assert out.returncode != 0
    lines = out.stderr.splitlines()
    job_error = next(line for line in lines if line.startswith("error: "))  # the job's one line
    # a job's shell starts in the run's directory: the venv's snakemake by its whole path
    rebuild = f"{Path(sys.executable).parent / 'snakemake'} --forcerun results/cache/frames/shard-00001"
    why = "Unable to synchronously open file (truncated file: eof = 5000" if fault == "cut" else "Can't"
    assert job_error.startswith(f"error: {cache}: OSError: {why}"), job_error
    assert job_error.endswith(f"; rebuild it with: {rebuild}")
    assert "Traceback" not in out.stderr.split("Logfile ")[0]  # the details are the log's
    log = (demo_run / "results" / "logs" / "clip" / "moclip-tiny_random-seed0" / "shard-00001.log").read_text()
    assert "Traceback" in log and ("truncated file" in log or "Fletcher32" in log or "filter returned failure" in log)
    # The remedy rebuilds that shard's caches and what depends on them.
    jobs = planned(demo_run, TINY_CONFIG, *rebuild.split()[1:])
    assert jobs.get("cache_shard") == 1 and jobs.get("clip_embed") == 1 and "manifest" not in jobs, jobs


def test_verify_names_each_fault_and_after_clear_one_run_restores_the_untouched_outputs(finished_run, demo_run):
    assert moclip_verify(demo_run).returncode == 0  # an untouched run: nothing broken
    cache = first_cache(demo_run, "frames", 0)
    os.truncate(demo_run / cache, 5000)
    second = sorted((demo_run / "results/cache/frames/shard-00000").glob("*.h5"))[1].relative_to(demo_run).as_posix()
    flip_byte(demo_run / second, "frames_jpeg")  # one byte of a JPEG frame, and one of an MV map
    maps = first_cache(demo_run, "mv", 0)
    flip_byte(demo_run / maps, "mv")
    flip_feature_bytes(demo_run / CLIP_DIR / "shard-00001.h5")
    model = next((demo_run / "results" / "mvnet").glob("*/split2/model.pt")).relative_to(demo_run).as_posix()
    (demo_run / model).unlink()

    found = moclip_verify(demo_run)
    assert found.returncode == 1 and found.stdout.startswith("results: "), found.stdout + found.stderr
    rows = {line.split()[0]: line for line in found.stdout.splitlines()[2:-1]}
    assert set(rows) == {cache, second, maps, f"{CLIP_DIR}/shard-00001.h5", model}, found.stdout
    assert (
        "truncated file: eof = 5000" in rows[cache] and "filter returned failure" in rows[f"{CLIP_DIR}/shard-00001.h5"]
    )
    assert "missing" in rows[model]

    cleared = moclip_verify(demo_run, "--clear")
    assert cleared.returncode == 0, cleared.stdout + cleared.stderr
    assert "deleted results/cache/mv/shard-00000" in cleared.stdout.splitlines()
    gone = [f"results/cache/{d}/shard-00000" for d in ("mv", "frames")] + ["results/cache/index/shard-00000.tsv"]
    assert not any((demo_run / p).exists() for p in [*gone, f"{CLIP_DIR}/shard-00001.h5"])
    assert (demo_run / "results/cache/frames/shard-00001").is_dir()  # the other shards stay

    # Exactly what Snakemake itself reruns when told those three outputs changed: their jobs
    # and what depends on them, not the other shards' caches or embeddings.
    forced = ["results/cache/index/shard-00000.tsv", f"{CLIP_DIR}/shard-00001.h5", model]
    jobs = planned(demo_run, TINY_CONFIG)
    assert jobs == planned(finished_run, TINY_CONFIG, "--forcerun", *forced), jobs
    assert jobs["cache_shard"] == 1 and jobs["clip_embed"] == 2 and not {"demo_data", "manifest"} & set(jobs)
    kept = [p for p in (demo_run / "results" / "cache").rglob("shard-0000[12]/*.h5")] + [
        demo_run / CLIP_DIR / "shard-00002.h5"
    ]
    times = {p: p.stat().st_mtime_ns for p in kept}
    snakemake(demo_run, TINY_CONFIG)
    assert {p: p.stat().st_mtime_ns for p in kept} == times  # not rewritten
    assert moclip_verify(demo_run).returncode == 0
    rebuilt, reference = result_files(demo_run), result_files(finished_run)
    assert sorted(rebuilt) == sorted(reference)
    assert [k for k in rebuilt if rebuilt[k] != reference[k]] == []  # byte for byte


def test_verify_knows_every_output_snakemake_lists_and_checks_each(finished_run):
    out = snakemake(finished_run, TINY_CONFIG, "--summary")
    outputs = {line.split("\t")[0] for line in out.stdout.splitlines()[1:]}
    outputs = {p for p in outputs if not p.startswith(("results/logs/", "results/benchmarks/", "results/demo/"))}
    checks = verify(finished_run / "results")
    assert checks.broken == []
    rel = lambda p: p.relative_to(finished_run).as_posix()  # noqa: E731
    assert {rel(p) for job in checks.run.jobs.values() for p in job.outputs} == outputs  # the same jobs' outputs
    # Each output is checked itself or, for a cache directory, through every file of it.
    assert {p if p in outputs else p.rsplit("/", 1)[0] for p in map(rel, checks.checked)} == outputs


def _cut(path: Path) -> None:
    os.truncate(path, min(5000, path.stat().st_size // 2))


# A fault in each kind of output, and the output Snakemake is told to rerun for the same effect.
FAULTS = {
    "cache index": ("results/cache/index/shard-00002.tsv", _cut, None),
    "mv cache": ("results/cache/mv/shard-00001/*.h5", _cut, "results/cache/mv/shard-00001"),
    "clip shard": (f"{CLIP_DIR}/shard-00000.h5", flip_feature_bytes, None),
    "mv feature shard": ("results/embeddings/mv/*/split2/shard-00001.h5", flip_feature_bytes, None),
    "mv checkpoint": ("results/mvnet/*/split3/model.pt", Path.unlink, None),
    "unread head checkpoint": ("results/heads/*/*/split2/clip_linear/model.pt", Path.unlink, None),
    "predictions": ("results/heads/*/*/split1/fusion/predictions.tsv", _cut, None),
    "failures": ("results/cache/failures.tsv", lambda p: p.write_bytes(b"\xff" * 20), None),
    "plot": ("results/reports/split3/per_class_top1.png", _cut, None),
    "summary": ("results/summary.md", Path.unlink, None),
    "manifest": ("results/manifest.tsv", Path.unlink, None),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_clearing_a_fault_reruns_what_snakemake_reruns_when_forced_to_remake_it(finished_run, demo_run, fault):
    pattern, breaks, output = FAULTS[fault]
    path = min(demo_run.glob(pattern))
    breaks(path)
    checks = verify(demo_run / "results")
    assert [b.path for b in checks.broken] == [path], checks.broken
    clear(checks)
    forced = output or path.relative_to(demo_run).as_posix()
    jobs = planned(demo_run, TINY_CONFIG)
    assert jobs == planned(finished_run, TINY_CONFIG, "--forcerun", forced) and jobs.get("all") == 1, jobs


@pytest.mark.parametrize(("folder", "rule"), [(CLIP_DIR, "clip_embed"), ("results/mvnet/*", "train_mvnet")])
def test_a_folder_of_outputs_gone_is_broken_and_clearing_reruns_its_jobs(finished_run, demo_run, folder, rule):
    """A failed job's outputs are deleted by Snakemake, and so the folders they leave empty
    (a GPU run's one clip_embed job writes every shard): each file is still counted missing,
    from the tags the reports name, and a clear reruns what a forced rerun would."""
    gone = next(demo_run.glob(folder))
    want = sorted(p for p in gone.rglob("*") if p.is_file())
    shutil.rmtree(gone)
    checks = verify(demo_run / "results")
    assert sorted(b.path for b in checks.broken) == want, checks.broken
    assert {b.problem.split(":")[0] for b in checks.broken} == {"missing"}, checks.broken
    clear(checks)
    jobs = planned(demo_run, TINY_CONFIG)
    assert jobs == planned(finished_run, TINY_CONFIG, "--forcerun", rule) and jobs.get(rule) == 3, jobs


def test_verify_finds_files_that_disagree_with_their_index(demo_run):
    results = demo_run / "results"
    caches = sorted((results / "cache" / "mv" / "shard-00002").glob("*.h5"))
    caches[0].write_bytes(caches[1].read_bytes())  # a whole, readable file, of another video
    head = next(results.glob("heads/*/*/split1/fusion/model.pt"))
    data = bytearray(head.read_bytes())
    data[len(data) // 2] ^= 0xFF  # torch.load reads it without a word
    head.write_bytes(bytes(data))
    predictions = next(results.glob("heads/*/*/split3/clip_linear/predictions.tsv"))
    predictions.write_text("".join(predictions.read_text().splitlines(keepends=True)[:-1]))  # its last video gone
    curves = results / "reports" / "split2" / "training_curves.png"
    curves.write_bytes(curves.read_bytes()[:-100])

    checks = verify(results)
    problems = {b.path: b.problem for b in checks.broken}
    assert set(problems) == {caches[0], head, predictions, curves}, problems
    assert problems[caches[0]].startswith(f"holds ('{caches[1].stem}', 'ok', ")
    assert "checksum mismatch" in problems[head]
    assert problems[predictions].startswith("video ids differ from the split's test videos")
    assert "not a whole PNG" in problems[curves]
    deleted = clear(checks)  # the cache's shard goes whole: Snakemake sees only its directories
    shard = [results / "cache" / d / "shard-00002" for d in ("mv", "frames")] + [
        results / "cache/index/shard-00002.tsv"
    ]
    assert set(shard + [head, predictions, curves]) <= set(deleted)
    assert (results / "cache" / "mv" / "shard-00001").is_dir()


def test_verify_of_a_directory_that_is_not_there_is_one_line(tmp_path):
    out = moclip_verify(tmp_path, "nowhere")
    assert out.returncode == 2 and out.stderr == "moclip verify: error: nowhere: not a directory (a run's results)\n"


def test_predict_with_a_cut_model_says_which_in_one_line(demo_run):
    model = next((demo_run / "results" / "heads").glob("*/*/split1/fusion/model.pt"))
    _cut(model)
    video = min((demo_run / "results" / "demo" / "UCF-101").rglob("*.avi"))
    cmd = [sys.executable, "-m", "moclip.cli", "predict", str(video)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=demo_run)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    fusion = model.relative_to(demo_run).as_posix()  # the report names it as ../../heads/...
    assert out.stderr.startswith(f"moclip predict: error: {fusion}: "), out.stderr
    assert out.stderr.endswith(f"; rebuild it with: {snakemake_program()} --forcerun {fusion}\n")
