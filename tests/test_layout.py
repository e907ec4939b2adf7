"""The run as the workflow lays it out at parse time: dataset paths, videos, shards, devices."""

from __future__ import annotations

import pytest
from conftest import DEFAULTS, REPO, merged

from moclip.dataset.demo import DemoSpec
from moclip.workflow.config import ConfigError
from moclip.workflow.layout import CPU_THREADS, GPU_THREADS, Layout, gpu_slots_line

DEFAULTS_FILE = REPO / "config.yaml"


def test_the_demo_lives_under_the_results_in_its_formats_layout():
    run = Layout(merged(DEFAULTS, {"results": "out/"}))
    assert run.results == "out" and run.demo and run.labelled
    assert run.paths == ("out/demo/UCF-101", "out/demo/ucfTrainTestlist")
    assert run.n_videos == DemoSpec.from_config({**DEFAULTS["demo"], "seed": DEFAULTS["seed"]}).n_videos() == 9 * 8 * 3
    csv = Layout(merged(DEFAULTS, {"dataset": {"format": "csv"}}))
    assert csv.lists_are_a_file and csv.lists.endswith(".csv") and not run.lists_are_a_file


def test_a_users_paths_are_checked_to_exist(tmp_path):
    with pytest.raises(ConfigError, match=r"^config: dataset.videos: '.*none' is not a directory$"):
        _ = Layout(merged(DEFAULTS, {"dataset": {"videos": str(tmp_path / "none")}})).paths
    csv = {"videos": str(tmp_path), "format": "csv", "lists": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"^config: dataset.lists: '.*' is not a file$"):
        _ = Layout(merged(DEFAULTS, {"dataset": csv})).paths
    with pytest.raises(ConfigError, match=r"^config: dataset.lists is required with dataset.format: ucf101$"):
        _ = Layout(merged(DEFAULTS, {"dataset": {"videos": str(tmp_path)}})).paths
    (tmp_path / "t.csv").touch()
    classes = {**csv, "lists": str(tmp_path / "t.csv"), "classes": str(tmp_path / "none.txt")}
    with pytest.raises(ConfigError, match=r"^config: dataset.classes: '.*none.txt' is not a file$"):
        _ = Layout(merged(DEFAULTS, {"dataset": classes})).paths


def test_a_missing_path_is_named_with_the_file_and_line_that_set_it(tmp_path):
    """The last of the config's files that sets the key wins, as they merge."""
    early, late = tmp_path / "early.yaml", tmp_path / "my-paths.yaml"
    early.write_text("dataset:\n  videos: /elsewhere\n")
    late.write_text(f"seed: 0\ndataset:\n  format: csv\n  videos: {tmp_path}\n  lists: {tmp_path / 'none.csv'}\n")
    sources = (DEFAULTS_FILE, early, late)
    config = merged(
        DEFAULTS, {"dataset": {"format": "csv", "videos": str(tmp_path), "lists": str(tmp_path / "none.csv")}}
    )
    with pytest.raises(ConfigError) as e:
        _ = Layout(config, sources=sources).paths
    assert str(e.value) == f"{late}:5: dataset.lists: '{tmp_path / 'none.csv'}' is not a file"
    gone = merged(config, {"dataset": {"videos": str(tmp_path / "gone")}})
    with pytest.raises(ConfigError) as e:
        _ = Layout(gone, sources=sources).paths
    assert str(e.value) == f"{late}:4: dataset.videos: '{tmp_path / 'gone'}' is not a directory"
    with pytest.raises(ConfigError) as e:
        _ = Layout(merged(gone, {"dataset": {"format": "ucf101", "lists": None}}), sources=(DEFAULTS_FILE, early)).paths
    assert str(e.value).startswith(f"{early}:2: dataset.videos: ")


def test_a_folder_run_lists_its_videos_once_and_shards_them(tmp_path):
    for name in ("b.avi", "a.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    run = Layout(merged(DEFAULTS, {"dataset": {"videos": str(tmp_path), "format": "folder", "shards": "auto"}}))
    assert not run.labelled and run.paths == (str(tmp_path), None) and run.networks == [None]
    assert run.folder_videos == ["a.mp4", "b.avi"] and run.n_videos == 2 and run.shards == ["00000"]


def test_shards_auto_follow_the_videos_a_shard():
    fixed = Layout(merged(DEFAULTS, {"dataset": {"shards": 7}}))
    assert fixed.shards == [f"{s:05d}" for s in range(7)]
    auto = merged(DEFAULTS, {"dataset": {"shards": "auto", "videos_per_shard": 256}})
    assert len(Layout(auto).shards) == 1  # 216 demo videos
    many = Layout(auto)
    many.__dict__["n_videos"] = 13320  # UCF101's count, without its lists
    assert len(many.shards) == 52


def test_a_stage_runs_on_a_gpu_when_asked_or_auto_means_one():
    config = merged(DEFAULTS, {"clip": {"device": "auto"}, "mvnet": {"device": "cuda"}})
    gpu, cpu = Layout(config, auto_gpu=True), Layout(config, auto_gpu=False)
    assert gpu.clip_batched and not cpu.clip_batched
    assert gpu.mv_batched and cpu.mv_batched  # cuda: a GPU whatever auto means
    assert gpu.threads("clip") == GPU_THREADS and cpu.threads("clip") == CPU_THREADS
    assert not Layout(merged(config, {"clip": {"device": "cpu"}}), auto_gpu=True).on_gpu("clip")


def test_the_manifest_reads_the_formats_lists_and_the_class_order(tmp_path):
    (tmp_path / "labels.csv").write_text("")
    csv = {"videos": str(tmp_path), "format": "csv", "lists": str(tmp_path / "labels.csv")}
    (tmp_path / "classes.txt").write_text("")
    classes = str(tmp_path / "classes.txt")
    run = Layout(merged(DEFAULTS, {"dataset": {**csv, "classes": classes, "splits": [1]}}))
    assert run.list_files == [str(tmp_path / "labels.csv"), classes]
    (tmp_path / "L").mkdir()
    ucf = {"videos": str(tmp_path), "lists": str(tmp_path / "L"), "splits": [2]}
    assert Layout(merged(DEFAULTS, {"dataset": ucf})).list_files == [
        str(tmp_path / "L" / name) for name in ("classInd.txt", "trainlist02.txt", "testlist02.txt")
    ]


def test_the_gpu_limit_is_compared_with_the_cards_slots():
    """Each GPU job declares gpu=1 and takes a slot of a card: a --resources gpu limit other
    than cards x gpu.jobs_per_card leaves slots idle or starts jobs that wait; equal, no line."""
    assert gpu_slots_line(3, 1, 3) is None and gpu_slots_line(2, 2, 1) is None
    assert gpu_slots_line(1, 1, 3) == (
        "1 card(s) x gpu.jobs_per_card 3 = 3 GPU slot(s), --resources gpu=1: 1 GPU job(s) at a time; "
        "--resources gpu=3 fills the slots"
    )
    assert gpu_slots_line(4, 1, 3).endswith(
        "--resources gpu=4: GPU jobs beyond the slots start and wait for a slot (--resources gpu=3)"
    )
    assert "no --resources gpu limit" in gpu_slots_line(None, 2, 1)
