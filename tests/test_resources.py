"""Resource estimates: measured peaks and rates, scaled by a job's work, doubled on retry."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from conftest import DEFAULTS, REPO, merged

from moclip.dataset.formats import split_sizes
from moclip.mv.train import eval_batch_videos, eval_images
from moclip.workflow.layout import CPU_THREADS, GPU_THREADS
from moclip.workflow.resources import (
    BACKBONES,
    GPU_HOST_MB,
    KEPT_HOST_MB,
    RATES,
    Workload,
    Workloads,
    memory_mb,
    minutes,
    unmeasured,
)

PAPER = merged(DEFAULTS, yaml.safe_load((REPO / "config" / "ucf101-paper.yaml").read_text()))
UCF101 = merged(DEFAULTS, yaml.safe_load((REPO / "config" / "ucf101.yaml").read_text()))
UCF101_SPLITS = (9624, 3783)  # the largest training list (split 3) and test list (split 1) of UCF101's 13,320


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
    assert large.mv_features_mb() == small.mv_features_mb()
    assert 0 < large.train_mvnet_mb() - small.train_mvnet_mb() <= KEPT_HOST_MB  # the kept validation inputs
    assert Workload(PAPER, 10**6, 99).train_mvnet_mb() == large.train_mvnet_mb() + KEPT_HOST_MB - min(
        KEPT_HOST_MB, 0.2 * 13320 * 3 * large.segment_mb()
    )  # bounded
    size = SimpleNamespace(size_mb=100)
    assert large.cache_seconds(size, 2) == 100 * 2**20 / 2600 / (RATES["cache_frames"] * 2)


def test_efficientnet_on_the_cpu_asks_for_its_measured_activations_and_a_gpu_for_host_memory():
    cpu, gpu = Workload(PAPER, 13320, 52), Workload(PAPER, 13320, 52, clip_gpu=True, mv_gpu=True)
    batch = 80 * 3 * cpu.segment_mb()  # maps a pixel on the CPU: 0.66 MB a segment at 340x256
    assert cpu.segment_mb() == 2 * 256 * 340 * 4 / 2**20 and cpu.train_batch_mb() == batch
    kept = min(KEPT_HOST_MB, 0.2 * 13320 * 3 * cpu.segment_mb())
    assert cpu.train_mvnet_mb() == 1100 + 85 * 80 * 3 + kept + 2 * batch  # 21.5 GB: bench_mv peaked at 21.6
    draws = 64 * 3 * cpu.segment_mb()  # 192 // 3 videos a draw batch
    assert cpu.mv_features_mb() == 500 + 14.8 * 192 + 2 * draws  # 3,342 MB measured before the batches
    assert cpu.mv_features_thread_mb() == 300 + 2 * draws
    # On a GPU the paper preset's loader ships the GOPs' vectors (int16), the activations are GPU memory.
    assert gpu.segment_mb() == 11 * 32 * 43 * 2 * 2 / 2**20
    assert gpu.mv_features_mb() == GPU_HOST_MB + 2 * 333 * 3 * gpu.segment_mb() and gpu.clip_embed_mb() == GPU_HOST_MB
    # A GPU job takes every shard: its CLIP work is the whole dataset's, at the GPU's rate.
    assert gpu.clip_seconds(None, 5) == 13320 * PAPER["frames"]["count"] / RATES["clip_images"]["gpu"]
    rate = BACKBONES["efficientnet_b0"].gpu_feature_rate
    draws_s = 100 * 13320 * 3 / min(rate, 4 * RATES["mv_loader_segments"]["vectors"])  # 4 workers' vectors
    assert gpu.mv_features_seconds(None, 5) == pytest.approx(13320 * 250 / rate + draws_s)
    # On the CPU a job is a shard under the 3 splits' networks, at 3x the training rate (EfficientNet-B0
    # at 224 px, 3 segments a second a thread), its draws at the worker's per-pixel trace.
    test_s = cpu.videos_a_shard * 25 / min(3 * 3.0 * 2 / 10, 58)
    draws_s = 100 * cpu.videos_a_shard * 3 / min(3 * 3.0 * 2, 58)
    assert cpu.mv_features_seconds(None, 2) == pytest.approx(3 * (test_s + draws_s))


def test_each_backbone_is_sized_by_its_own_figures_and_an_unmeasured_one_says_so():
    from moclip.mv.nets import OWN_NETS

    assert {k for k, b in BACKBONES.items() if not b.timm} == set(OWN_NETS)  # one registry a kind, in step
    tiny = merged(PAPER, {"mvnet": {"arch": "tiny", "input_size": 64}})
    w = Workload(tiny, 13320, 52)
    assert w.train_mvnet_mb() == 1100 + min(KEPT_HOST_MB, 0.2 * 13320 * 3 * w.segment_mb()) + 2 * w.train_batch_mb()
    assert w.mv_features_mb() == 800 + 2 * w.feature_batch_mb()
    assert w.mv_rate(2) == 150 * 2  # at the size it was measured at
    assert Workload(merged(tiny, {"mvnet": {"input_size": 128}}), 13320, 52).mv_rate(2) == 150 * 2 / 4
    other = merged(PAPER, {"mvnet": {"arch": "resnet18"}})
    assert Workload(other, 13320, 52).train_mvnet_mb() == Workload(PAPER, 13320, 52).train_mvnet_mb()
    assert unmeasured("efficientnet_b0") is None and unmeasured("tiny") is None
    assert "resnet18 has no measured resource figures" in unmeasured("resnet18")
    assert "efficientnet_b0" in unmeasured("resnet18") and "bench_mv.py --arch resnet18" in unmeasured("resnet18")


def test_check_models_warns_of_an_unmeasured_backbone(caplog):
    from moclip.workflow.checks import check_models

    check_models(merged(PAPER, {"mvnet": {"arch": "resnet18", "pretrained": False}}))
    assert "mvnet.arch: resnet18 has no measured resource figures" in caplog.text


def requests(config: dict, gpu: bool) -> dict[str, tuple[int, int]]:
    """(minutes, MB) the workflow asks for each MV job at UCF101's size on its first attempt."""
    ws = Workloads({"": config}, 13320, 52, gpu, gpu, UCF101_SPLITS)
    job, threads = SimpleNamespace(exp=""), GPU_THREADS if gpu else CPU_THREADS
    return {
        rule: (
            ws.runtime(f"{rule}_seconds")(job, None, threads, 1),
            ws.mem_mb(f"{rule}_mb", per_thread=f"{rule}_thread_mb")(job, threads, 1),
        )
        for rule in ("train_mvnet", "mv_features")
    }


@pytest.mark.parametrize("gpu", [False, True])
@pytest.mark.parametrize("name", ["config.yaml", "config/ucf101.yaml", "config/ucf101-paper.yaml"])
def test_mv_requests_at_ucf101_size_cover_the_work_at_the_measured_rates(name, gpu):
    """Each preset's MV jobs at UCF101's size (13,320 videos; a split trains on at most 9,624,
    validation included, and tests on at most 3,783), the work counted here from the measured
    rates: the request covers it twice over on the first attempt, time and host memory."""
    c = {"config.yaml": DEFAULTS, "config/ucf101.yaml": UCF101, "config/ucf101-paper.yaml": PAPER}[name]
    m, draws = c["mvnet"], c["heads"]["mv_draws"]
    b = BACKBONES.get(m["arch"], BACKBONES["efficientnet_b0"])
    area = (m["input_size"] / b.size) ** 2
    threads = GPU_THREADS if gpu else CPU_THREADS
    workers = threads - 1
    if gpu:
        train_rate, infer_rate = b.gpu_train_rate * min(1, 1 / area), b.gpu_feature_rate * min(1, 1 / area)
    else:
        train_rate = b.train_rate * threads / area
        infer_rate = 3 * train_rate
    traced = m["accumulate"] and not gpu  # a CPU job traces per pixel in its workers
    loader = workers * RATES["mv_loader_segments"]["traced" if traced else "vectors"]
    train, test = UCF101_SPLITS
    val = 3 / 18 * train  # 3 of a split's 18 training groups (val_groups: auto holds out at most 0.2)
    epoch = (train - val) * m["segments"] / min(train_rate, loader) + val * m["segments"] / min(infer_rate, loader)
    test_s = test * m["eval_segments"] / min(infer_rate / m["eval_crops"], loader)
    work = {"train_mvnet": m["epochs"] * epoch + test_s}
    # mv_features: a GPU job is one split's network over every video, a CPU job one shard (52) under the 3
    views = 13320 * m["eval_segments"] / min(infer_rate / m["eval_crops"], loader)
    draw_s = draws * (train - val) * m["segments"] / min(infer_rate, loader)
    work["mv_features"] = (views + draw_s) if gpu else 3 * (views + draw_s) / 52
    # Host memory: the process, a worker's process, and the batches as shipped (in hand and pinned, two
    # ahead a worker): traces of the GOPs' vectors with accumulate on a GPU, maps a pixel on a CPU,
    # else maps a cell; frames of CoViAR's re-encode, 340x256, GOP 12.
    dev = "cuda" if gpu else "cpu"
    if not m["accumulate"]:
        segment = np.zeros((2, 32, 43), np.float32).nbytes
    elif gpu:
        segment = np.zeros((11, 32, 43, 2), np.int16).nbytes
    else:
        segment = np.zeros((2, 256, 340), np.float32).nbytes
    feature_batch = max(
        eval_batch_videos(m["eval_segments"] * m["eval_crops"], dev) * m["eval_segments"],
        (eval_images(dev) // m["segments"]) * m["segments"] if draws else 0,
    )
    train_batch = m["batch_size"] * m["segments"]
    base = {"train_mvnet": GPU_HOST_MB if gpu else b.train_mb + b.activation_mb * train_batch * area}
    base["mv_features"] = GPU_HOST_MB if gpu else b.feature_mb + b.feature_input_mb * 192 * area
    batch = {"train_mvnet": train_batch * segment / 2**20, "mv_features": feature_batch * segment / 2**20}
    asked = requests(c, gpu)
    for rule, (minutes_asked, mb_asked) in asked.items():
        assert minutes_asked * 60 >= 2 * work[rule], (rule, minutes_asked, work[rule] / 60)
        host = base[rule] + 2 * batch[rule] + workers * (300 + 2 * batch[rule])
        assert mb_asked >= 1.5 * host, (rule, mb_asked, host)  # half again, as memory_mb promises


def test_the_paper_presets_feature_job_counts_its_draws_and_train_mvnet_its_split():
    """The paper preset's GPU mv_features asks for its 100 draws of each training video (the
    ~25 minutes of work its 16-minute request missed, twice over) and for the memory of its draw
    batches; train_mvnet counts a split's videos, not the whole dataset's."""
    minutes_asked, mb_asked = requests(PAPER, gpu=True)["mv_features"]
    assert minutes_asked >= 2 * 25
    no_draws = requests(merged(PAPER, {"heads": {"mv_draws": 0}}), gpu=True)["mv_features"]
    assert no_draws[0] < minutes_asked / 2
    w = Workload(PAPER, 13320, 52, True, True, UCF101_SPLITS)
    whole = Workload(PAPER, 13320, 52, True, True)
    assert w.train_mvnet_seconds(None, 5) == pytest.approx(whole.train_mvnet_seconds(None, 5) * 9624 / 13320, 0.03)
    assert w.mv_features_thread_mb() == 300 + 2 * (1000 // 3) * 3 * 11 * 32 * 43 * 2 * 2 / 2**20


def test_split_sizes_are_counted_from_the_lists(tmp_path):
    (tmp_path / "ucf").mkdir()
    for k, (n_train, n_test) in {1: (5, 2), 2: (4, 3)}.items():
        (tmp_path / "ucf" / f"trainlist0{k}.txt").write_text(
            "".join(f"A/v_A_g0{i}_c01.avi 1\r\n" for i in range(n_train))
        )
        (tmp_path / "ucf" / f"testlist0{k}.txt").write_text("".join(f"A/v_A_g1{i}_c01.avi\n" for i in range(n_test)))
    assert split_sizes("ucf101", tmp_path / "ucf", [1, 2]) == (5, 3) and split_sizes(
        "ucf101", tmp_path / "ucf", [2]
    ) == (4, 3)
    (tmp_path / "hmdb").mkdir()
    (tmp_path / "hmdb" / "run_test_split1.txt").write_text("a.avi 1\nb.avi 2\nc.avi 0\nd.avi 1\n")
    (tmp_path / "hmdb" / "jump_test_split1.txt").write_text("e.avi 1\nf.avi 2\n")
    assert split_sizes("hmdb51", tmp_path / "hmdb", [1]) == (3, 2)
    assert split_sizes("csv", tmp_path / "t.csv", [1]) is None and split_sizes("folder", None, [1]) is None
