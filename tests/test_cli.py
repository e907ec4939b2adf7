"""The ``moclip`` command: one line a bad input, the good ones still processed, clear exit codes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
from conftest import DEFAULTS, moving_object_video

import moclip
from moclip.cli import build_parser, decode_settings, main
from moclip.dataset.videos import SPLITS
from moclip.runtime import PRECISIONS
from moclip.video.codec import DecodeSettings


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "moclip.cli", *args], capture_output=True, text=True)


def test_the_commands_defaults_are_the_workflows():
    """Each flag's default and choices are the setting's own (config.yaml, the settings
    classes, the library's lists), never a second copy: a copy that drifts fails here."""
    p = build_parser()
    cache = p.parse_args(["cache", "v.avi", "--out", "o"])
    assert decode_settings(cache) == DecodeSettings()
    m = p.parse_args(["manifest", "--videos", "v", "--out", "o"])
    d = DEFAULTS["dataset"]
    assert (m.format, m.splits, m.val_groups, m.shards, m.videos_per_shard, m.seed) == (
        d["format"],
        d["splits"],
        d["val_groups"],
        d["shards"],
        d["videos_per_shard"],
        DEFAULTS["seed"],
    )
    demo = p.parse_args(["demo-data", "dir"])
    assert (demo.format, demo.seed) == (d["format"], DEFAULTS["seed"])
    actions = {(name, a.dest): a for name, sub in p._subparsers._group_actions[0].choices.items() for a in sub._actions}
    assert tuple(actions["manifest", "splits"].choices) == tuple(actions["predict", "split"].choices) == SPLITS
    assert tuple(actions["predict", "precision"].choices) == PRECISIONS


def test_version_and_help_show_defaults():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"moclip {moclip.__version__}"
    assert "(default: 5)" in build_parser()._subparsers._group_actions[0].choices["predict"].format_help()


@pytest.mark.parametrize("top", ["0", "-2"])
def test_top_below_one_is_rejected(top, capsys):
    with pytest.raises(SystemExit) as e:
        main(["predict", "v.avi", "--top", top])
    assert e.value.code == 2 and "must be 1 or more" in capsys.readouterr().err


def test_cache_names_each_bad_path_and_still_caches_the_good_ones(tmp_path):
    good = tmp_path / "good.avi"
    moving_object_video(good, 2, 0)
    out = run("cache", str(tmp_path / "missing.avi"), str(tmp_path), str(good), "--out", str(tmp_path / "c"))
    lines = out.stdout.splitlines()
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0] == "missing\tfailed\t0\tcannot read: No such file or directory"
    assert lines[1].endswith("\tfailed\t0\tnot a file") and lines[2].startswith("good\tok\t24\t")
    assert (tmp_path / "c" / "mv" / "good.h5").is_file()


def test_cache_stores_jpeg_frames_unless_asked_and_inspect_says_how(tmp_path):
    good = tmp_path / "good.avi"
    moving_object_video(good, 2, 0)
    for args, enc, quality in (([], "jpeg", 95), (["--frame-encoding", "raw"], "raw", 0)):
        assert run("cache", str(good), "--out", str(tmp_path / enc), *args).returncode == 0
        out = run("inspect", str(tmp_path / enc / "frames" / "good.h5"), "--json")
        info = json.loads(out.stdout)
        assert (info["attrs"]["encoding"], info["attrs"]["jpeg_quality"]) == (enc, quality)
        assert (info["attrs"]["frame_height"], info["attrs"]["frame_width"]) == (240, 320)
        assert {"jpeg": "frames_jpeg", "raw": "frames"}[enc] in info["datasets"]
        lines = run("inspect", str(tmp_path / enc / "frames" / "good.h5")).stdout.splitlines()  # for a person
        assert re.fullmatch(r"  encoding +" + enc, next(ln for ln in lines if "encoding" in ln))
    err = run("cache", str(good), "--out", str(tmp_path / "x"), "--frame-encoding", "png").stderr
    assert "invalid choice: 'png'" in err


def test_inspect_reads_as_a_table_and_as_json_for_machines(tmp_path):
    """By default a heading, the datasets (shape, dtype, bytes stored; in a group by their
    path) and the attributes in aligned columns, long values cut; --json as before."""
    import h5py
    import numpy as np

    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("mv", data=np.zeros((24, 30, 40, 2), np.float16))
        f.create_dataset("extra/ids", data=np.arange(5, dtype=np.int32))
        f.attrs.update(status="ok", n_frames=24, error="", settings="x" * 200, truncated=False)
    lines = run("inspect", str(path)).stdout.splitlines()
    assert lines[:4] == [
        f"{path}: 2 datasets, 5 attributes",
        "datasets:",
        "  extra/ids  5                 int32     20 bytes stored",
        "  mv         24 x 30 x 40 x 2  float16   115.2 KB stored",
    ], lines
    assert lines[4] == "attributes:" and '  error      ""' in lines and "  n_frames   24" in lines, lines
    assert "  status     ok" in lines and "  truncated  False" in lines, lines
    assert "  settings   " + "x" * 80 + " ... (200 characters; --json shows it all)" in lines, lines
    info = json.loads(run("inspect", str(path), "--json").stdout)
    assert info["datasets"] == {
        "extra/ids": {"shape": [5], "dtype": "int32"},
        "mv": {"shape": [24, 30, 40, 2], "dtype": "float16"},
    }
    assert info["attrs"] == {"error": "", "n_frames": 24, "settings": "x" * 200, "status": "ok", "truncated": False}


@pytest.mark.parametrize("what", ["directory", "text file", "missing"])
def test_inspect_of_something_not_hdf5_is_one_line(tmp_path, what):
    target = tmp_path
    if what == "text file":
        target = tmp_path / "x.h5"
        target.write_text("not hdf5")
    if what == "missing":
        target = tmp_path / "none.h5"
    out = run("inspect", str(target))
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    why = "no such file" if what == "missing" else "not a readable HDF5 file"
    assert out.stderr.startswith(f"moclip inspect: error: {target}: {why}")


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    """`moclip ... | head`: the reader leaves early; the command ends as shell tools do
    (status 141), without a BrokenPipeError traceback."""
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.attrs.update({f"attr{i}": "x" * 100 for i in range(2000)})  # more than a pipe holds
    p = subprocess.Popen(
        [sys.executable, "-m", "moclip.cli", "inspect", str(tmp_path / "x.h5")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    p.stdout.read(10)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait() == 141 and err == "", err


def test_check_config_names_file_and_line_where_snakemake_cannot(tmp_path, capsys):
    """Snakemake reads --configfile before the workflow and says only "not valid JSON or
    YAML"; ``moclip check-config`` names file, line and column, and checks keys and models."""
    bad = tmp_path / "mine.yaml"
    bad.write_text("mvnet:\n  lr: 0.1\n   epochs: 3\n")
    assert main(["check-config", str(bad)]) == 2
    assert (
        capsys.readouterr().err
        == f"moclip check-config: error: {bad}:3:10: not valid YAML: mapping values are not allowed here\n"
    )
    bad.write_text("heads:\n  seed: [0]\n")
    assert main(["check-config", str(bad)]) == 2
    assert f"{bad}:2: unknown key 'heads.seed' (did you mean 'seeds'?)" in capsys.readouterr().err
    assert main(["check-config", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml: cannot read: No such file or directory" in capsys.readouterr().err
    bad.write_text("seed: 1\nresults: 'out {wild}'\n")  # was called valid; Snakemake stopped on it
    assert main(["check-config", str(bad)]) == 2
    assert f"{bad}:2: results: 'out {{wild}}' holds {{wild}}, which Snakemake reads" in capsys.readouterr().err
    good = tmp_path / "good.yaml"
    good.write_text("mvnet:\n  epochs: 3\n  milestones: [2]\n")
    assert main(["check-config", str(good)]) == 0
    assert "a valid configuration" in capsys.readouterr().out


def test_an_installed_package_checks_configs_against_the_workflows_own_defaults(tmp_path):
    """The wheel carries config.yaml and the schema as they are in the repository (one
    definition, links in a clone), so ``check-config`` works from an installed package."""
    import shutil
    import zipfile

    from conftest import REPO

    src = tmp_path / "src"  # what the build reads, copied: a build writes beside its sources
    shutil.copytree(REPO / "moclip", src / "moclip", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "schemas", src / "schemas")
    for f in ("pyproject.toml", "README.md", "config.yaml"):
        shutil.copy(REPO / f, src / f)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path, src],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("moclip-*.whl")
    with zipfile.ZipFile(wheel) as z:
        assert z.read("moclip/data/config.yaml") == (REPO / "config.yaml").read_bytes()
        assert z.read("moclip/data/config.schema.yaml") == (REPO / "schemas" / "config.schema.yaml").read_bytes()
        z.extractall(tmp_path / "site", [n for n in z.namelist() if n.startswith("moclip/")])
    good = tmp_path / "good.yaml"
    good.write_text("mvnet:\n  epochs: 3\n  milestones: [2]\n")
    run = "import sys, moclip.cli as c; assert 'site' in c.__file__; sys.exit(c.main(sys.argv[1:]))"
    out = subprocess.run(
        [sys.executable, "-c", run, "check-config", str(good)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0 and "a valid configuration" in out.stdout, out.stderr


def test_demo_data_csv_format_writes_one_labels_file(tmp_path, capsys):
    argv = ["demo-data", str(tmp_path), "--format", "csv", "--appearances", "Ball", "--motions", "Rise", "Fall"]
    assert main([*argv, "--groups", "4", "--clips", "1", "--frames", "3"]) == 0
    assert f"wrote 2 classes to {tmp_path / 'videos'} and split lists to {tmp_path / 'labels.csv'}" in (
        capsys.readouterr().out
    )
    lines = (tmp_path / "labels.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "path,label,split1,split2,split3,group" and len(lines) == 1 + 2 * 4
    assert lines[1] == "BallFall/v_BallFall_g01_c01.avi,BallFall,test,train,train,1"
    assert lines[-1] == "BallRise/v_BallRise_g04_c01.avi,BallRise,train,train,train,4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv", "videos"]
    assert (tmp_path / "videos" / "BallRise" / "v_BallRise_g04_c01.avi").is_file()


def test_commands_without_a_network_do_not_import_torch():
    """``moclip --help``, ``cache``, ``inspect`` and ``demo-data`` start without torch,
    open_clip or timm (seconds of import); ``predict``, ``verify`` and ``check-config``
    load them when they run."""
    code = "import sys, moclip.cli; print(sorted(m for m in ('torch', 'open_clip', 'timm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_check_config_runs_the_dataset_checks_of_the_workflows_parse(tmp_path, tiny_demo, capsys):
    """A path that does not exist, and a list entry naming a missing video, fail check-config
    as they fail `snakemake -n`; the dataset as it is passes."""
    cfg = tmp_path / "paths.yaml"
    cfg.write_text(f"dataset:\n  videos: {tmp_path / 'none'}\n  lists: {tiny_demo[1]}\n")
    assert main(["check-config", str(cfg)]) == 2
    assert capsys.readouterr().err == (
        f"moclip check-config: error: {cfg}:2: dataset.videos: '{tmp_path / 'none'}' is not a directory\n"
    )
    cfg.write_text(f"dataset:\n  videos: {tiny_demo[0]}\n  lists: {tiny_demo[1]}\n")
    assert main(["check-config", str(cfg)]) == 0
    lists = tmp_path / "lists"
    shutil.copytree(tiny_demo[1], lists)
    with open(lists / "testlist01.txt", "a") as f:
        f.write("BallFall/v_BallFall_g09_c07.avi\n")
    cfg.write_text(f"dataset:\n  videos: {tiny_demo[0]}\n  lists: {lists}\n")
    assert main(["check-config", str(cfg)]) == 2
    assert "testlist01.txt" in capsys.readouterr().err


def test_a_commands_errors_name_its_flags_not_config_keys(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["demo-data", str(tmp_path / "d"), "--groups", "2"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "argument --groups: must be 4 or more, got 2" in err and "demo." not in err
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "a.avi").write_bytes(b"x")
    (tmp_path / "labels.csv").write_text("path,label\na.avi,run\n")  # no split columns: split 1 only
    flags = ["--videos", str(tmp_path / "v"), "--lists", str(tmp_path / "labels.csv"), "--format", "csv"]
    assert main(["manifest", *flags, "--splits", "2", "--out", str(tmp_path / "m.tsv")]) == 2
    err = capsys.readouterr().err
    assert "--splits [2] needs columns split2" in err and "dataset." not in err, err
