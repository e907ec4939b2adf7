"""What a config asks of each stage: its settings, and the tags that name its outputs."""

from __future__ import annotations

import inspect
import sys

from conftest import DEFAULTS, merged

from moclip.clip.stream import ClipSettings
from moclip.heads import HeadSettings
from moclip.mv.data import MVSettings
from moclip.workflow import plan


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


def test_the_zeroshot_rules_settings_are_its_functions_settings():
    """plan.zeroshot_settings is every keyword of moclip.clip.zeroshot.zeroshot but the job's files,
    split and device: a setting added to the function and not to the plan fails here."""
    from moclip.clip.zeroshot import zeroshot

    job = {"manifest", "shards", "split", "device", "predictions", "metrics"}
    assert set(plan.zeroshot_settings(DEFAULTS)) == set(inspect.signature(zeroshot).parameters) - job
    c = merged(DEFAULTS, {"clip": {"device": "cuda", "prompts": "phrases"}, "seed": 3})
    assert plan.zeroshot_settings(c) == {**plan.zeroshot_settings(DEFAULTS), "prompts": "phrases", "seed": 3}


def test_tags_change_with_what_shapes_the_outputs_and_not_the_device():
    mv = plan.mv_tag(DEFAULTS)
    assert mv.startswith("tiny-") and mv == plan.mv_tag(merged(DEFAULTS, {"mvnet": {"device": "cuda"}}))
    assert mv != plan.mv_tag(merged(DEFAULTS, {"mvnet": {"lr": 0.01}}))
    for arithmetic in ({"compile": True}, {"deterministic": False}):  # they change a GPU run's rounding
        assert plan.mv_settings(merged(DEFAULTS, {"mvnet": arithmetic})).items() >= arithmetic.items()
        assert mv != plan.mv_tag(merged(DEFAULTS, {"mvnet": arithmetic})), arithmetic
    assert plan.clip_tag(DEFAULTS) == f"{DEFAULTS['clip']['model']}_random-seed0"
    assert plan.clip_tag(merged(DEFAULTS, {"clip": {"interpolation": "bilinear"}})).endswith("_bilinear")
    assert plan.clip_tag(merged(DEFAULTS, {"clip": {"model": "ViT-B-32", "pretrained": "openai"}})) == (
        "ViT-B-32-quickgelu_openai"
    )


def test_the_last_line_names_the_table_only_when_the_run_built_it(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))  # no snakemake beside it: the README's
    argv = ["/x/snakemake", "--cores", "2", "--configfile", "c.yaml", "caches"]
    done = plan.run_end_line(True, argv, "results", "results/summary.md")
    assert done.startswith("moclip: done. The table: results/summary.md")
    assert done.endswith("snakemake --configfile c.yaml caches --report report.html")
    short = plan.run_end_line(True, argv, "results", "results/summary.md", built=False)
    assert "The table" not in short and "up to the targets asked for" in short
    assert "Features: results/embeddings/" in plan.run_end_line(True, argv, "results", None)
    stopped = plan.run_end_line(False, argv, "results", "results/summary.md")
    assert stopped.startswith("moclip: the run stopped: a job failed")
    assert stopped.endswith("to resume: .venv/bin/snakemake --cores 2 --configfile c.yaml caches")  # /x: unknown
    forced = ["/x/snakemake", "-F", "caches", "--forcerun", "train_mvnet", "zeroshot", "--until", "x", "-f", "y"]
    interrupted = plan.run_end_line(False, forced, "results", "results/summary.md", interrupted=True)
    assert interrupted.startswith("moclip: the run was interrupted.")
    assert interrupted.endswith("to resume: .venv/bin/snakemake caches --until x y")  # targets and bounds kept
