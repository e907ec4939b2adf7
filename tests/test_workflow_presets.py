"""Both UCF101 presets as a user runs them, with their real architectures end to end on the
CPU: ViT-B-32 from the ``openai`` tag (QuickGELU) and EfficientNet-B0 from timm's ImageNet
tag, both through the libraries' own download paths pointed at a local Hugging Face cache
of random weights (nothing is downloaded), on a tiny UCF101-layout dataset.

Every value that is not a size of the data or a length of training is the preset's own: the
paper's re-encode, 25 x 10-view test, accumulation, augmentation and MV feature draws; ours
8 CLIP frames and 8 x 1 views. This is where shapes, dtypes and memory at the real sizes run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import pytest
import yaml
from conftest import PRESET_WEIGHTS, REPO, job_counts, merged, put_hub_file, snakemake

from moclip.dataset.demo import DemoSpec, make_demo_dataset

pytestmark = pytest.mark.workflow

# 2 classes x 4 groups: split 1 tests group 1, selects on one group, trains on two
REAL_DEMO = DemoSpec(appearances=("Ball",), motions=("Rise", "Fall"), groups=4, clips=1, frames=30)
SHORT = {  # only sizes of the data and lengths of training differ from the presets
    "dataset": {"splits": [1], "val_groups": 1, "shards": 2},
    "mvnet": {"epochs": 1, "milestones": [1]},
    "heads": {"epochs": 2, "seeds": [0]},
}


@pytest.fixture(scope="module")
def offline_weights(tmp_path_factory) -> dict[str, str]:
    """A Hugging Face cache holding random weights of the presets' real networks under the
    names open_clip and timm ask the hub for; the environment that points the runs at it."""
    import open_clip
    import timm
    import torch

    cache = tmp_path_factory.mktemp("hf-cache")
    torch.manual_seed(0)
    (clip_repo, clip_file), (rgb_repo, rgb_file) = PRESET_WEIGHTS
    assert open_clip.pretrained.get_pretrained_cfg("ViT-B-32", "openai")["hf_hub"].rstrip("/") == clip_repo
    put_hub_file(cache, clip_repo, clip_file, open_clip.create_model("ViT-B-32-quickgelu").state_dict())
    rgb = timm.create_model("efficientnet_b0", pretrained=False)
    assert rgb.pretrained_cfg["hf_hub_id"] == rgb_repo
    put_hub_file(cache, rgb_repo, rgb_file, rgb.state_dict())
    return {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def real_demo(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("real-demo")
    make_demo_dataset(root / "UCF-101", root / "ucfTrainTestlist", REAL_DEMO, threads=2)
    return root / "UCF-101", root / "ucfTrainTestlist"


@pytest.mark.parametrize("preset", ["ucf101-paper.yaml", "ucf101.yaml"])
def test_each_preset_runs_its_real_architectures_to_the_summary(preset, real_demo, offline_weights, tmp_path):
    config = yaml.safe_load((REPO / "config" / preset).read_text())
    config = merged(config, {**SHORT, "dataset": {**SHORT["dataset"], "videos": str(real_demo[0])}})
    config["dataset"]["lists"] = str(real_demo[1])
    paper = preset == "ucf101-paper.yaml"
    if paper:  # the paper's draws are one a head epoch: as many as the short run has epochs
        config["heads"]["mv_draws"] = SHORT["heads"]["epochs"]
    snakemake(tmp_path, config, env=offline_weights, timeout=600)
    res = tmp_path / config["results"]

    # CLIP: OpenAI's tag built as trained (QuickGELU), 512-d, the preset's frames a video.
    clip_dirs = [p.name for p in (res / "embeddings" / "clip").iterdir()]
    assert len(clip_dirs) == 1 and clip_dirs[0].startswith("ViT-B-32-quickgelu_openai"), clip_dirs
    clip_shards = sorted((res / "embeddings" / "clip" / clip_dirs[0]).glob("shard-*.h5"))
    assert sum(_rows(p) for p in clip_shards) == REAL_DEMO.n_videos()
    with h5py.File(clip_shards[-1]) as f:
        assert f["features"].shape[1:] == (config["frames"]["count"], 512)
        assert f.attrs["pretrained"] == "openai" and not f.attrs["random_weights"]
    # MV: EfficientNet-B0's 1280-d features at the preset's test segments (crops averaged),
    # and the paper's training draws (one a head epoch).
    mv_shards = sorted((res / "embeddings" / "mv").glob("efficientnet_b0-*/split1/shard-*.h5"))
    assert sum(_rows(p) for p in mv_shards) == REAL_DEMO.n_videos()
    with h5py.File(mv_shards[-1]) as f:
        assert f["features"].shape[1:] == (config["mvnet"]["eval_segments"], 1280), f["features"].shape
        assert f.attrs["eval_crops"] == config["mvnet"]["eval_crops"]
        assert ("train_draws" in f) == paper
        if paper:
            assert f["train_draws"].shape[1:] == (2, 1280)
    summary = json.loads((res / "summary.json").read_text())
    assert summary["failed_videos"] == []
    assert len(summary["reencoded_videos"]) == (REAL_DEMO.n_videos() if paper else 0)
    assert summary["clip"]["frames_a_video"] == config["frames"]["count"]
    assert set(summary["methods"]) == {"zeroshot", "mv_only", "clip_linear", "fusion"}
    fusion = json.loads(next(res.glob("heads/*/*/split1/fusion/metrics.json")).read_text())["settings"]
    assert (fusion["frame_norm"], fusion["mv_draws"]) == ((False, 2) if paper else (True, 0))
    assert os.path.getsize(res / "summary.html") > 0


def _rows(shard: Path) -> int:
    with h5py.File(shard) as f:
        return len(f["video_id"])


def test_the_ablation_builds_its_dag_on_a_ucf101_tree_sharing_what_its_rows_agree_on(
    real_demo, offline_weights, tmp_path
):
    """config/ucf101-ablation.yaml over the paper preset, on a UCF101-layout tree with the real
    weights' files in place: one DAG of 12 experiments that computes each re-encode, cache,
    CLIP embedding and MV network once for the experiments whose settings agree."""
    config = merged(
        yaml.safe_load((REPO / "config" / "ucf101-paper.yaml").read_text()),
        yaml.safe_load((REPO / "config" / "ucf101-ablation.yaml").read_text()),
    )
    config = merged(config, {"dataset": {**SHORT["dataset"], "videos": str(real_demo[0]), "lists": str(real_demo[1])}})
    out = snakemake(tmp_path, config, "-n", env=offline_weights, timeout=600)
    said = out.stdout + out.stderr
    counts, shards = job_counts(out.stdout), 2
    assert counts["cache_shard"] == 4 * shards  # the paper's, the original files', 8 frames', ours
    assert counts["clip_embed"] == 5 * shards  # those four's frames, and bicubic's resize
    # the paper's MV network serves 7 experiments; the original files, per-frame maps, the 8 x 1
    # test (train_mvnet also tests) and ours train their own
    assert counts["train_mvnet"] == 5 and counts["mv_features"] == 6 * shards
    assert counts["zeroshot"] == 7  # every CLIP embedding, and the two prompt rows'
    assert counts["train_head"] == 12 * 2 and counts["summary"] == 12 and counts["compare_experiments"] == 1
    frames = "adds cache, clip, zeroshot, heads, reports; shares reencode (paper), mvnet (paper), mv_features (paper)"
    assert f"moclip: experiment frames-8: {frames}" in said
