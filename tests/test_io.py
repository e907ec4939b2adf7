"""Files every stage writes: atomic, TSV tables that read back, relative names."""

from __future__ import annotations

import json
import pickle
import sys

import pytest
import torch

from moclip.io import (
    BrokenFileError,
    atomic_path,
    listed_ids,
    read_json,
    read_tsv,
    reading,
    relative_to,
    snakemake_program,
    write_json,
    write_tsv,
)


def test_atomic_path_renames_on_success_and_leaves_nothing_else(tmp_path):
    out = tmp_path / "sub" / "result.tsv"
    with atomic_path(out) as tmp:
        assert tmp.parent == out.parent and tmp.name.startswith(".result.tsv.") and tmp.suffix == ".tmp"
        assert not tmp.exists() and not out.exists()  # the writer creates it: one creation, not two
        tmp.write_text("done\n")
        assert not out.exists()
    assert out.read_text() == "done\n"
    assert [p.name for p in out.parent.iterdir()] == ["result.tsv"]


@pytest.mark.parametrize("created", [True, False])
def test_atomic_path_failure_leaves_no_file_and_keeps_the_old_result(tmp_path, created):
    out = tmp_path / "result.tsv"
    out.write_text("previous\n")
    with pytest.raises(KeyboardInterrupt), atomic_path(out) as tmp:
        if created:
            tmp.write_text("half")
        raise KeyboardInterrupt  # a kill mid-write
    assert out.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["result.tsv"]


def test_atomic_paths_are_unique(tmp_path):
    names = set()
    for _ in range(200):
        with atomic_path(tmp_path / "x") as tmp:
            names.add(tmp.name)
            tmp.write_text("")
    assert len(names) == 200


def test_tsv_and_json_round_trip(tmp_path):
    rows = [["v_A_g01_c01", "A/v_A_g01_c01.avi", 3], ["v_B_g02_c01", 'B/with "quote".avi', 0]]
    write_tsv(tmp_path / "t.tsv", ["video_id", "path", "n"], rows)
    assert read_tsv(tmp_path / "t.tsv") == [dict(zip(["video_id", "path", "n"], map(str, r))) for r in rows]
    write_json(tmp_path / "m.json", {"top1": 0.5, "ids": ["a"]})
    assert read_json(tmp_path / "m.json") == {"top1": 0.5, "ids": ["a"]}
    assert (tmp_path / "m.json").read_text().endswith("}\n")


@pytest.mark.parametrize("bad", ["a\tb", "a\nb", "a\rb"])
def test_tsv_field_that_would_split_is_an_error_naming_it(tmp_path, bad):
    with pytest.raises(ValueError, match="t.tsv.*tabs and line breaks"):
        write_tsv(tmp_path / "t.tsv", ["x"], [["fine"], [bad]])
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_relative_to_names_a_file_from_another_directory(tmp_path):
    model = tmp_path / "results" / "mvnet" / "t" / "split1" / "model.pt"
    report_dir = tmp_path / "results" / "reports" / "split1"
    assert relative_to(model, report_dir) == "../../mvnet/t/split1/model.pt"
    assert (report_dir / relative_to(model, report_dir)).resolve() == model.resolve()


def test_listed_ids_come_from_the_table_by_path(tmp_path):
    table = tmp_path / "manifest.tsv"
    write_tsv(table, ("video_id", "path"), [("run__clip_1", "run/clip 1.mp4"), ("b__x", "b/x.avi")])
    root = tmp_path / "videos"
    assert listed_ids(table, [root / "b" / "x.avi", root / "run" / "clip 1.mp4"], root) == ["b__x", "run__clip_1"]
    with pytest.raises(ValueError, match=r"manifest.tsv: no row for video run/other.mp4"):
        listed_ids(table, [root / "run" / "other.mp4"], root)


def test_a_broken_file_is_one_line_naming_it_what_is_wrong_and_the_rebuild(tmp_path):
    metrics = tmp_path / "res ults" / "metrics.json"
    with pytest.raises(BrokenFileError) as e:
        read_json(metrics)
    assert str(e.value) == f"{metrics}: missing; rebuild it with: {snakemake_program()} --forcerun '{metrics}'"
    metrics.parent.mkdir()
    metrics.write_text('{"top1": 0.5, "ids": [')  # cut short
    with pytest.raises(BrokenFileError) as e:
        read_json(metrics)
    assert e.value.path == str(metrics) and e.value.problem.startswith("JSONDecodeError: Expecting value: line 1")
    assert "\n" not in str(e.value) and isinstance(e.value.__cause__, json.JSONDecodeError)
    table = tmp_path / "t.tsv"
    table.write_bytes(b"video_id\n\xff\xfe\n")
    inner = r"t.tsv: UnicodeDecodeError: .*; rebuild it with: \S*snakemake --forcerun"
    with pytest.raises(BrokenFileError, match=inner) as e, reading(table, "the outer remedy"):
        read_tsv(table)  # the innermost reader's error passes through the outer as it is
    table.write_text("video_id\tpath\tn\nv1\tA/v1.avi\t3\nv2\tA/v2.avi\t1")  # cut inside its last field
    with pytest.raises(BrokenFileError, match=r"t.tsv: ValueError: cut short: no line break at its end; rebuild"):
        read_tsv(table)
    copy = pickle.loads(pickle.dumps(e.value))  # through a process pool
    assert str(copy) == str(e.value) and copy.remedy == e.value.remedy == f"{snakemake_program()} --forcerun {table}"


def test_a_bug_inside_a_read_is_not_called_a_broken_file(tmp_path):
    with pytest.raises(ZeroDivisionError), reading(tmp_path / "x.json"):
        json.loads("1") / 0


class _Reads(torch.utils.data.Dataset):
    def __init__(self, path):
        self.path = path

    def __len__(self):
        return 1

    def __getitem__(self, i):
        return torch.tensor(read_json(self.path)["x"])


def test_a_broken_file_read_in_a_loader_worker_reaches_the_stage_as_itself(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text('{"x": [1, 2')
    with pytest.raises(BrokenFileError) as direct:
        read_json(path)
    with pytest.raises(BrokenFileError) as e:
        next(iter(torch.utils.data.DataLoader(_Reads(path), num_workers=1)))
    assert str(e.value) == str(direct.value)  # the one line, not torch's "Caught ... in DataLoader worker"
    assert "Traceback" in e.value.details and "JSONDecodeError" in e.value.details  # for the log


def test_the_run_lock_refuses_a_second_holder_and_dies_with_its_process(tmp_path):
    """flock: held by one process at a time, and dropped by the kernel when that process
    ends, SIGKILL included: no stale lock after kill -9."""
    import os
    import signal
    import subprocess
    import sys

    from moclip.io import RUN_LOCK, RunLockedError, hold_run_lock

    res = tmp_path / "res"
    code = "import sys, time; from moclip.io import hold_run_lock; hold_run_lock(sys.argv[1]); print(1, flush=True)"
    holder = subprocess.Popen(
        [sys.executable, "-c", code + "; time.sleep(600)", str(res)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "1\n"
        with pytest.raises(RunLockedError, match=rf"another run is writing this results folder \(pid {holder.pid}, "):
            hold_run_lock(res)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    hold_run_lock(res)  # the killed holder's lock went with it
    hold_run_lock(res)  # held already by this process: a no-op
    assert (res / RUN_LOCK).read_text().startswith(f"pid {os.getpid()}, working directory ")


def test_printed_commands_name_the_snakemake_a_user_can_paste(tmp_path, monkeypatch):
    """The running snakemake, relative to the shell's directory when under it (the README's
    .venv/bin/snakemake from the repository), else absolute; unknown: the README's."""
    exe = tmp_path / "repo" / ".venv" / "bin" / "snakemake"
    exe.parent.mkdir(parents=True)
    exe.write_text("")
    monkeypatch.setenv("PWD", str(tmp_path / "repo"))
    assert snakemake_program(str(exe)) == ".venv/bin/snakemake"
    assert snakemake_program(".venv/bin/snakemake") == ".venv/bin/snakemake"  # as typed
    monkeypatch.setenv("PWD", str(tmp_path))
    assert snakemake_program(str(exe)) == "repo/.venv/bin/snakemake"
    monkeypatch.setenv("PWD", str(tmp_path / "elsewhere"))
    assert snakemake_program(str(exe)) == str(exe)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))  # no snakemake beside it
    assert snakemake_program("-c") == snakemake_program(str(tmp_path / "none" / "snakemake")) == ".venv/bin/snakemake"
