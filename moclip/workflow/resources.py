"""What a job asks of a cluster: mem_mb (sbatch --mem) and runtime (sbatch -t, minutes).

Memory does not grow with the dataset (the caches are streamed; benchmarks/bench_scale.py
measures every rule at 1,332 and 13,320 videos) but for a CPU training's kept validation
inputs (at most KEPT_HOST_MB), so mem_mb is a measured peak with a margin, plus the loader's
batches as shipped. Time grows with a job's work (frames, images, samples, epochs) at the rates below,
measured on a 2-core x86-64 server's CPU cores (docs/scale.md, "Resources") and on an H200 (benchmarks/gpu).
Both double with each retry (--retries), so an estimate that falls short costs one
resubmission, never the run. The workflow's rules read every figure from :class:`Workload`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moclip.dataset.manifest import VAL_SHARE  # validation's most of a training list (val_groups auto: 0.2)
from moclip.mv.budgets import EVAL_IMAGES, KEPT_HOST_MB

RATES = {
    "cache_frames": 3700,  # frames decoded and cached a second, a thread (bench_scale: 2.46 M frames, 329 s x 2)
    # frames re-encoded a second by CoViAR's recipe, a thread: 1,000 from a 640x272 H.264 camera
    # clip, 1,800 from its 320x240 MPEG-4 re-encode, 2,250 from the demo's videos
    "reencode_frames": 1000,
    # ViT-B-32 images a second: a thread (bench_clip: 20 on 2 threads) / a GPU
    # images/s, gpu: the stage on an H200, bf16, 1-4 loader workers: 1,900-3,200 (benchmarks/gpu)
    "clip_images": {"cpu": 10, "gpu": 2000},
    "head_samples": 6000,  # training samples x epochs a second, fusion MLP, one thread (bench_heads)
    # MV segments a loader worker delivers a second (bench_accumulate, 2 loaded cores): the paper
    # preset's maps traced per pixel in the worker (a CPU job: 3.6-17.3 ms a segment, the slowest
    # taken), or the cell-grid vectors a GPU job's workers ship (995-1,084; the per-frame recipe's
    # one frame a segment reads less)
    "mv_loader_segments": {"traced": 58, "vectors": 1000},
}
BYTES_A_FRAME = 2600  # UCF101's XviD: the fewest bytes a frame of the usual datasets, so the most frames a MB
TIME_MARGIN = 3
# The MV frames the memory estimates assume (the caches' size is not known at parse time):
# CoViAR's re-encode, 340x256 (UCF101's own 320x240 is smaller), GOP 12, 8-pixel cells.
# Larger frames or longer GOPs with mvnet.accumulate take more: a retry doubles the request.
FRAME, GOP, CELL = (256, 340), 12, 8
PREFETCH = 2  # batches a loader worker holds ahead (torch's prefetch_factor), in shared memory


@dataclass(frozen=True)
class Backbone:
    """An MV backbone's jobs as measured: rates and memory at input side ``size`` (the work
    and activations scale with the input's area). Adding a backbone is one entry of
    :data:`BACKBONES`, measured with ``benchmarks/bench_mv.py --arch NAME`` (CPU) and
    ``make gpu-check`` (GPU)."""

    size: int  # the input side the figures were measured at
    train_rate: float  # training segments a second, a CPU thread
    train_mb: float  # train_mvnet's CPU peak before loader workers and activations
    activation_mb: float  # training activations an input (batch x segments) on the CPU
    feature_mb: float  # mv_features' CPU process and model
    feature_input_mb: float  # inference activations an input (192 a forward pass on the CPU)
    gpu_train_rate: float  # training segments a second on a GPU
    gpu_feature_rate: float  # inference inputs a second on a GPU
    timm: bool = True  # built by timm (may start from ImageNet); False: the project's own network


BACKBONES = {
    # EfficientNet-B0, NHWC: bench_mv --arch efficientnet_b0 --input-size 224 (batch 80): 6.1 segments/s on 2
    # threads, 21.6 GB peak (85 MB an input beyond 1,100); features: 3,341 MB over 192 inputs. H200, bf16,
    # batch 80 x 3, 4 workers: 1,418 segments/s; 25 x 10 views: 11,500 inputs/s (benchmarks/gpu).
    "efficientnet_b0": Backbone(224, 3.0, 1100, 85, 500, 14.8, 1400, 11000),
    # The tiny CNN at 64 px: bench_mv 388-395 segments/s with 2 threads; 1,100 MB training, 800 MB features
    # (activations included). Never measured on a GPU: EfficientNet-B0's figures, an upper bound on its time.
    "tiny": Backbone(64, 150, 1100, 0, 800, 0, 1400, 11000, timm=False),
}
REFERENCE_BACKBONE = "efficientnet_b0"  # how a timm backbone without figures of its own is sized


def backbone(arch: str) -> Backbone:
    """``arch``'s measured figures; a timm architecture without any is sized as
    :data:`REFERENCE_BACKBONE` (the config check says so: :func:`unmeasured`)."""
    return BACKBONES.get(arch, BACKBONES[REFERENCE_BACKBONE])


def unmeasured(arch: str) -> str | None:
    """A warning when ``arch``'s jobs are sized by another backbone's figures, else None."""
    if arch in BACKBONES:
        return None
    return (
        f"mvnet.arch: {arch} has no measured resource figures; its jobs are sized as {REFERENCE_BACKBONE}'s "
        f"(measure it with benchmarks/bench_mv.py --arch {arch} and add it to moclip.workflow.resources.BACKBONES)"
    )


# Host memory of a job that runs its network on a GPU (torch and CUDA's libraries; the
# activations are GPU memory), before its loader workers: 1,281-1,779 MB measured
# (ViT-B-32, EfficientNet-B0 at 224 px, benchmarks/gpu).
GPU_HOST_MB = 1800
LOADER_WORKER_MB = 300  # a loader worker process (torch imported, a cache open), before its batches


def retry(value: float, attempt: int) -> int:
    return int(value * 2 ** (attempt - 1))


def memory_mb(mb: float, per_thread: float = 0) -> Callable[..., int]:
    """mem_mb: a measured peak in MB plus ``per_thread`` a thread (decode processes,
    loader workers), with half again as margin; doubled on each retry."""
    return lambda wildcards, threads, attempt: retry(1.5 * (mb + per_thread * threads), attempt)


def minutes(seconds: float | Callable[[Any, int], float]) -> Callable[..., int]:
    """runtime in minutes: TIME_MARGIN x the job's work in seconds at the measured rates
    (a number, or a function of the job's input and threads), at least 10 minutes;
    doubled on each retry."""

    def estimate(wildcards, input, threads, attempt):
        work = seconds(input, threads) if callable(seconds) else seconds
        return retry(max(10, math.ceil(TIME_MARGIN * work / 60)), attempt)

    return estimate


@dataclass(frozen=True)
class Workload:
    """A run's work as the rules size their jobs: the config, the videos and shards counted
    at parse time (a resource function must not read the manifest, a checkpoint that may
    not have run yet), which stages run on a GPU, one job for every shard, and the most
    videos a split lists for training (validation included) and testing (None: every video)."""

    config: dict
    n_videos: int
    n_shards: int
    clip_gpu: bool = False
    mv_gpu: bool = False
    split_videos: tuple[int, int] | None = None

    @property
    def videos_a_shard(self) -> int:
        """Videos a shard, with a margin for the hash's imbalance."""
        return math.ceil(1.2 * self.n_videos / self.n_shards)

    @property
    def train_videos(self) -> int:
        """A split's training list, its validation part included (an upper bound of each)."""
        return self.split_videos[0] if self.split_videos else self.n_videos

    @property
    def test_videos(self) -> int:
        return self.split_videos[1] if self.split_videos else self.n_videos

    @property
    def n_splits(self) -> int:
        """Networks a run trains (one a split; a folder run's given one)."""
        return len(self.config["dataset"]["splits"]) if self.config["dataset"]["format"] != "folder" else 1

    def eval_views(self) -> int:
        """MV network inputs a video at test and feature time: segments x crops."""
        return self.config["mvnet"]["eval_segments"] * self.config["mvnet"]["eval_crops"]

    @property
    def backbone(self) -> Backbone:
        return backbone(self.config["mvnet"]["arch"])

    def area(self) -> float:
        """The MV input's area against the one the backbone's figures were measured at."""
        return (self.config["mvnet"]["input_size"] / self.backbone.size) ** 2

    def mv_rate(self, threads: int) -> float:
        """MV network segments a second (training); inference is about 3x that."""
        b = self.backbone
        if self.mv_gpu:
            return b.gpu_train_rate * min(1, 1 / self.area())
        return b.train_rate * threads / self.area()

    def mv_inference_rate(self, threads: int) -> float:
        """MV network inputs a second at test and feature time: the GPU's measured rate (scaled
        by the input area), or 3x the CPU's training rate."""
        if self.mv_gpu:
            return self.backbone.gpu_feature_rate * min(1, 1 / self.area())
        return 3 * self.mv_rate(threads)

    def loader_rate(self, threads: int) -> float:
        """MV segments a second the job's ``threads - 1`` loader workers deliver (the main
        process's own reading where there are none): maps traced per pixel on a CPU job with
        ``accumulate``, else vectors or cell-grid maps (moclip.mv.data.trace_on_device)."""
        traced = self.config["mvnet"]["accumulate"] and not self.mv_gpu
        return RATES["mv_loader_segments"]["traced" if traced else "vectors"] * max(1, threads - 1)

    def mv_seconds(self, segments: float, threads: int, crops: int = 1, train: bool = False) -> float:
        """``segments`` through the loader and the network, ``crops`` inputs each, at the
        slower of the two."""
        net = self.mv_rate(threads) if train else self.mv_inference_rate(threads)
        return segments / min(net / crops, self.loader_rate(threads))

    def segment_mb(self) -> float:
        """MB of one segment as the loader ships it: the GOP's vectors (int16) on a GPU job
        with ``accumulate``, maps a pixel (float32) on a CPU one, else maps a cell."""
        h, w = FRAME
        hc, wc = -(-h // CELL), -(-w // CELL)
        if not self.config["mvnet"]["accumulate"]:
            return 2 * hc * wc * 4 / 2**20
        return ((GOP - 1) * hc * wc * 2 * 2 if self.mv_gpu else 2 * h * w * 4) / 2**20

    def feature_batch_mb(self) -> float:
        """The largest loader batch of mv_features, MB: a test batch (about EVAL_IMAGES inputs,
        at least a video) or, with draws, a draw batch (EVAL_IMAGES // segments videos)."""
        m = self.config["mvnet"]
        images = EVAL_IMAGES["cuda" if self.mv_gpu else "cpu"]
        test = max(1, images // self.eval_views()) * m["eval_segments"]
        draws = max(1, images // m["segments"]) * m["segments"] if self.config["heads"]["mv_draws"] else 0
        return max(test, draws) * self.segment_mb()

    def train_batch_mb(self) -> float:
        m = self.config["mvnet"]
        return m["batch_size"] * m["segments"] * self.segment_mb()

    # ----------------------------------------------------------------------- seconds of work

    def cache_seconds(self, input, threads: int) -> float:
        """Decoding the shard's videos: their size in frames, estimated from their bytes."""
        return input.size_mb * 2**20 / BYTES_A_FRAME / (RATES["cache_frames"] * threads)

    def reencode_seconds(self, input, threads: int) -> float:
        """Re-encoding the shard's videos: their frames, estimated from their bytes."""
        return input.size_mb * 2**20 / BYTES_A_FRAME / (RATES["reencode_frames"] * threads)

    def clip_seconds(self, input, threads: int) -> float:
        """A job's videos (every shard's on a GPU) x the frames cached a video."""
        images = (self.n_videos if self.clip_gpu else self.videos_a_shard) * self.config["frames"]["count"]
        rate = RATES["clip_images"]
        return images / (rate["gpu"] if self.clip_gpu else rate["cpu"] * threads)

    def train_mvnet_seconds(self, input, threads: int) -> float:
        """A split's network: every epoch its training list trained on (validation included,
        an upper bound) and the validation part's segments scored (at most VAL_SHARE[2] of the
        list); then the split's test videos under the test protocol."""
        m = self.config["mvnet"]
        train = self.mv_seconds(self.train_videos * m["segments"], threads, train=True)
        val = self.mv_seconds(VAL_SHARE[2] * self.train_videos * m["segments"], threads)
        test = self.mv_seconds(self.test_videos * m["eval_segments"], threads, crops=m["eval_crops"])
        return m["epochs"] * (train + val) + test

    def mv_features_seconds(self, input, threads: int) -> float:
        """A job's videos under its networks, every view of the test protocol; with draws,
        as many passes over each network's training videos at its training segments. On a
        GPU a job is a network over every shard; on the CPU a shard under every network."""
        m = self.config["mvnet"]
        videos, networks = (self.n_videos, 1) if self.mv_gpu else (self.videos_a_shard, self.n_splits)
        train = self.train_videos * videos / self.n_videos  # the job's videos some network trained on
        test = self.mv_seconds(videos * m["eval_segments"], threads, crops=m["eval_crops"])
        draws = self.mv_seconds(self.config["heads"]["mv_draws"] * train * m["segments"], threads)
        return networks * (test + draws)

    def train_head_seconds(self, input, threads: int) -> float:
        h = self.config["heads"]
        return len(h["seeds"]) * h["epochs"] * self.n_videos / RATES["head_samples"]

    # ----------------------------------------------------------------------- memory (MB)

    def clip_embed_mb(self) -> float:
        """clip_embed's peak before its loader workers: ViT-B-32's CPU job, measured with a
        margin; on a GPU the process's host memory."""
        return GPU_HOST_MB if self.clip_gpu else 2500

    def train_mvnet_mb(self) -> float:
        """train_mvnet's peak before its loader workers: on a GPU the process's host memory
        (the activations are GPU memory); on the CPU the backbone's measured base plus its
        activations, an input of a batch (batch x segments) at a time (EfficientNet-B0 at 224
        px, batch 80 x 3: 21.6 GB in bench_mv), and the kept validation inputs (up to
        KEPT_HOST_MB). Both plus the batch in hand and its pinned copy."""
        batches = 2 * self.train_batch_mb()
        if self.mv_gpu:
            return GPU_HOST_MB + batches
        m, b = self.config["mvnet"], self.backbone
        kept = min(KEPT_HOST_MB, VAL_SHARE[2] * self.train_videos * m["segments"] * self.segment_mb())
        return b.train_mb + b.activation_mb * m["batch_size"] * m["segments"] * self.area() + kept + batches

    def train_mvnet_thread_mb(self) -> float:
        """A loader worker of train_mvnet: its process and the batches it holds ahead."""
        return LOADER_WORKER_MB + PREFETCH * self.train_batch_mb()

    def mv_features_mb(self) -> float:
        """mv_features' peak: on the CPU the backbone's process and model plus a forward over
        192 inputs at a time (EfficientNet-B0 at 224 px: 3,341 MB measured); on a GPU, the
        process's host memory. Both plus the batch in hand and its pinned copy."""
        batches = 2 * self.feature_batch_mb()
        if self.mv_gpu:
            return GPU_HOST_MB + batches
        b = self.backbone
        return b.feature_mb + b.feature_input_mb * EVAL_IMAGES["cpu"] * self.area() + batches

    def mv_features_thread_mb(self) -> float:
        """A loader worker of mv_features: its process and the batches it holds ahead (draw
        batches of the paper preset's maps were 663 MB each)."""
        return LOADER_WORKER_MB + PREFETCH * self.feature_batch_mb()


class Workloads:
    """The Workload of each experiment of a run, by output root (a job's ``exp`` wildcard):
    the rules' resource functions for the job's experiment."""

    def __init__(
        self,
        configs: dict[str, dict],
        n_videos: int,
        n_shards: int,
        clip_gpu: bool,
        mv_gpu: bool,
        split_videos: tuple[int, int] | None = None,
    ):
        self.by_root = {
            root: Workload(c, n_videos, n_shards, clip_gpu, mv_gpu, split_videos) for root, c in configs.items()
        }

    def runtime(self, work: str) -> Callable[..., int]:
        """A rule's runtime: Workload.<work> (seconds) of the job's experiment, in minutes."""

        def estimate(wildcards, input, threads, attempt):
            return minutes(getattr(self.by_root[wildcards.exp], work))(wildcards, input, threads, attempt)

        return estimate

    def mem_mb(self, work: str, per_thread: float | str = LOADER_WORKER_MB) -> Callable[..., int]:
        """A rule's mem_mb: the largest Workload.<work>() (MB) of the experiments, and
        ``per_thread`` MB a thread (a number, or the name of a Workload method)."""
        ws = self.by_root.values()
        thread = per_thread if not isinstance(per_thread, str) else max(getattr(w, per_thread)() for w in ws)
        return memory_mb(max(getattr(w, work)() for w in ws), per_thread=thread)


# The dense stage (moclip.dense; benchmarks/bench_dense.py, docs/dense.md): 320x240 MPEG-4 at
# 25 fps streamed through one decode pass, one-second windows. Peak RSS whatever the length:
# 1,198 MB on a two-hour video with the tiny networks, 1,743 MB with ViT-B-32 (its weights).
DENSE_MB = 1800
# Video frames a second through the stage with ViT-B-32 on 2 CPU threads (63 measured: CLIP's
# one image a window dominates; the tiny networks: 1,432 on one thread).
DENSE_FRAMES_A_SECOND = 60


def dense_seconds(input, threads: int) -> float:
    """A dense job's work in seconds: its videos' frames (their bytes at BYTES_A_FRAME, the
    most frames a MB) at DENSE_FRAMES_A_SECOND (one video at a time: threads do not add);
    none while the manifest has not named them (a dry run's pending jobs)."""
    size = sum(os.path.getsize(v) for v in getattr(input, "videos", []) if os.path.exists(v))
    return size / BYTES_A_FRAME / DENSE_FRAMES_A_SECOND
