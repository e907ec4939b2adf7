"""Resource estimates: measured peaks and rates, scaled by a job's work, doubled on retry."""

from __future__ import annotations

from types import SimpleNamespace

import yaml
from conftest import DEFAULTS, REPO, merged

from moclip.resources import BACKBONES, GPU_HOST_MB, RATES, Workload, memory_mb, minutes, unmeasured

PAPER = merged(DEFAULTS, yaml.safe_load((REPO / "config" / "ucf101-paper.yaml").read_text()))


def test_memory_adds_threads_and_margin_and_doubles_on_retry():
    mb = memory_mb(1000, per_thread=200)
    assert mb(None, threads=2, attempt=1) == 2100 and mb(None, threads=2, attempt=2) == 4200


def test_runtime_is_the_work_with_a_margin_at_least_ten_minutes():
    assert minutes(60)(None, None, 1, 1) == 10  # 3 minutes of margin-scaled work: the floor
    assert minutes(lambda input, threads: 3600 / threads)(None, None, 2, 1) == 90  # 3 x 30 min
    assert minutes(3600)(None, None, 1, 3) == 4 * 180


def test_time_grows_with_the_work_and_memory_does_not():
    small, large = Workload(PAPER, 1332, 6), Workload(PAPER, 13320, 52)
    for stage in ("train_mvnet_seconds", "train_head_seconds"):
        ratio = getattr(large, stage)(None, 2) / getattr(small, stage)(None, 2)
        assert abs(ratio - 10) < 1e-9, stage
    assert large.train_mvnet_mb() == small.train_mvnet_mb()
    size = SimpleNamespace(size_mb=100)
    assert large.cache_seconds(size, 2) == 100 * 2**20 / 2600 / (RATES["cache_frames"] * 2)


def test_efficientnet_on_the_cpu_asks_for_its_measured_activations_and_a_gpu_for_host_memory():
    cpu, gpu = Workload(PAPER, 13320, 52), Workload(PAPER, 13320, 52, clip_gpu=True, mv_gpu=True)
    assert cpu.train_mvnet_mb() == 1100 + 85 * 80 * 3  # 21.5 GB: bench_mv peaked at 21.6
    assert cpu.mv_features_mb() == 500 + 14.8 * 192  # 3,342 MB: 3,341 measured
    assert gpu.train_mvnet_mb() == gpu.mv_features_mb() == gpu.clip_embed_mb() == GPU_HOST_MB
    # A GPU job takes every shard: its CLIP work is the whole dataset's, at the GPU's rate.
    assert gpu.clip_seconds(None, 5) == 13320 * PAPER["frames"]["count"] / RATES["clip_images"]["gpu"]
    assert gpu.mv_features_seconds(None, 5) == 13320 * 250 / BACKBONES["efficientnet_b0"].gpu_feature_rate
    # On the CPU a job is a shard under the 3 splits' networks, at 3x the training rate:
    # EfficientNet-B0 at 224 px, 3 segments a second a thread.
    assert cpu.mv_features_seconds(None, 2) == cpu.videos_a_shard * 3 * 250 / (3 * 3.0 * 2)


def test_each_backbone_is_sized_by_its_own_figures_and_an_unmeasured_one_says_so():
    from moclip.mv_nets import OWN_NETS

    assert {k for k, b in BACKBONES.items() if not b.timm} == set(OWN_NETS)  # one registry a kind, in step
    tiny = merged(PAPER, {"mvnet": {"arch": "tiny", "input_size": 64}})
    w = Workload(tiny, 13320, 52)
    assert w.train_mvnet_mb() == 1100 and w.mv_features_mb() == 800
    assert w.mv_rate(2) == 150 * 2  # at the size it was measured at
    assert Workload(merged(tiny, {"mvnet": {"input_size": 128}}), 13320, 52).mv_rate(2) == 150 * 2 / 4
    other = merged(PAPER, {"mvnet": {"arch": "resnet18"}})
    assert Workload(other, 13320, 52).train_mvnet_mb() == Workload(PAPER, 13320, 52).train_mvnet_mb()
    assert unmeasured("efficientnet_b0") is None and unmeasured("tiny") is None
    assert "resnet18 has no measured resource figures" in unmeasured("resnet18")
    assert "efficientnet_b0" in unmeasured("resnet18") and "bench_mv.py --arch resnet18" in unmeasured("resnet18")


def test_check_models_warns_of_an_unmeasured_backbone(caplog):
    from moclip.checks import check_models

    check_models(merged(PAPER, {"mvnet": {"arch": "resnet18", "pretrained": False}}))
    assert "mvnet.arch: resnet18 has no measured resource figures" in caplog.text
