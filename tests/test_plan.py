"""What a config asks of the workflow: dataset paths and sizes, stage settings, output tags."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO, merged

from moclip import plan
from moclip.clip_stream import ClipSettings
from moclip.heads import HeadSettings
from moclip.mv_data import MVSettings

DEFAULTS = yaml.safe_load((REPO / "config.yaml").read_text())


def test_dataset_paths_are_the_demos_or_the_users_checked(tmp_path):
    demo = {"videos": "results/demo/UCF-101", "lists": "results/demo/ucfTrainTestlist"}
    assert plan.dataset_paths(DEFAULTS, demo) == (demo["videos"], demo["lists"])
    user = merged(DEFAULTS, {"dataset": {"videos": str(tmp_path / "none")}})
    with pytest.raises(ValueError, match=r"dataset.videos='.*none' is not a directory"):
        plan.dataset_paths(user, demo)
    user = merged(DEFAULTS, {"dataset": {"videos": str(tmp_path), "format": "csv", "lists": str(tmp_path)}})
    with pytest.raises(ValueError, match=r"dataset.lists='.*' is not a file"):
        plan.dataset_paths(user, demo)
    folder = merged(DEFAULTS, {"dataset": {"videos": str(tmp_path), "format": "folder"}})
    assert plan.dataset_paths(folder, demo) == (str(tmp_path), None)


def test_shards_auto_follow_the_videos_a_shard():
    assert plan.n_shards(merged(DEFAULTS, {"dataset": {"shards": 7}}), 13320) == 7
    auto = merged(DEFAULTS, {"dataset": {"shards": "auto", "videos_per_shard": 256}})
    assert plan.n_shards(auto, 13320) == 52 and plan.n_shards(auto, 10) == 1
    assert plan.n_videos(DEFAULTS, "", None, []) == 9 * 8 * 3  # the demo's spec: classes x groups x clips


def test_stage_settings_are_the_settings_classes_fields_without_machine_settings():
    assert set(plan.mv_settings(DEFAULTS)) == set(MVSettings.__dataclass_fields__)
    assert set(plan.clip_settings(DEFAULTS)) == set(ClipSettings.__dataclass_fields__)
    assert set(plan.head_settings(DEFAULTS)) == set(HeadSettings.__dataclass_fields__)
    run = plan.run_settings(DEFAULTS)
    assert "device" not in run["clip"] and "device" not in run["mvnet"] and run["seed"] == DEFAULTS["seed"]
    assert plan.reencode_settings(DEFAULTS) == {"recipe": None, "probe_frames": DEFAULTS["decode"]["max_frames"]}
    coviar = merged(DEFAULTS, {"dataset": {"reencode": "coviar"}})
    assert plan.reencoding(coviar) and plan.reencode_settings(coviar) == {"recipe": "coviar", "probe_frames": 0}
    assert not plan.reencoding(DEFAULTS)


def test_tags_change_with_what_shapes_the_outputs_and_not_the_device():
    mv = plan.mv_tag(DEFAULTS)
    assert mv.startswith("tiny-") and mv == plan.mv_tag(merged(DEFAULTS, {"mvnet": {"device": "cuda"}}))
    assert mv != plan.mv_tag(merged(DEFAULTS, {"mvnet": {"lr": 0.01}}))
    assert plan.clip_tag(DEFAULTS) == f"{DEFAULTS['clip']['model']}_random-seed0"
    assert plan.clip_tag(merged(DEFAULTS, {"clip": {"interpolation": "bilinear"}})).endswith("_bilinear")
    assert plan.clip_tag(merged(DEFAULTS, {"clip": {"model": "ViT-B-32", "pretrained": "openai"}})) == (
        "ViT-B-32-quickgelu_openai"
    )


def test_a_stage_runs_on_a_gpu_when_asked_or_auto_finds_one_here():
    config = merged(DEFAULTS, {"clip": {"device": "auto"}, "mvnet": {"device": "cuda"}})
    assert plan.on_gpu(config, "clip", local_gpu=True) and not plan.on_gpu(config, "clip", local_gpu=False)
    assert plan.on_gpu(config, "mvnet", local_gpu=False)  # cuda: a cluster's GPUs
    assert not plan.on_gpu(merged(config, {"clip": {"device": "cpu"}}), "clip", local_gpu=True)


def test_the_manifest_reads_the_formats_lists_and_the_class_order(tmp_path):
    config = merged(DEFAULTS, {"dataset": {"format": "csv", "classes": "classes.txt", "splits": [1]}})
    assert plan.list_files(config, str(tmp_path / "labels.csv")) == [str(tmp_path / "labels.csv"), "classes.txt"]
    ucf = merged(DEFAULTS, {"dataset": {"format": "ucf101", "splits": [2]}})
    assert plan.list_files(ucf, "L") == ["L/classInd.txt", "L/trainlist02.txt", "L/testlist02.txt"]


def test_the_last_line_names_the_table_only_when_the_run_built_it():
    argv = ["/x/snakemake", "--cores", "2", "--configfile", "c.yaml", "caches"]
    done = plan.run_end_line(True, argv, "results", "results/summary.md")
    assert done.startswith("moclip: done. The table: results/summary.md")
    assert done.endswith("snakemake --configfile c.yaml caches --report report.html")
    short = plan.run_end_line(True, argv, "results", "results/summary.md", built=False)
    assert "The table" not in short and "up to the targets asked for" in short
    assert "Features: results/embeddings/" in plan.run_end_line(True, argv, "results", None)
    stopped = plan.run_end_line(False, argv, "results", "results/summary.md")
    assert stopped.endswith("to resume, run it again: snakemake --cores 2 --configfile c.yaml caches")
