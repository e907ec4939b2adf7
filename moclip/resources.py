"""What a job asks of a cluster: mem_mb (sbatch --mem) and runtime (sbatch -t, minutes).

Memory does not grow with the dataset (the caches are streamed; benchmarks/bench_scale.py
measures every rule at 1,332 and 13,320 videos), so mem_mb is a measured peak with a
margin. Time grows with a job's work (frames, images, samples, epochs) at the rates below,
measured on this project's CPU cores (docs/scale.md, "Resources") and on an H200 (benchmarks/gpu).
Both double with each retry (--retries), so an estimate that falls short costs one
resubmission, never the run. The workflow's rules read every figure from :class:`Workload`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RATES = {
    "cache_frames": 3700,  # frames decoded and cached a second, a thread (bench_scale: 2.46 M frames, 329 s x 2)
    # frames re-encoded a second by CoViAR's recipe, a thread: 1,000 from a 640x272 H.264 camera
    # clip, 1,800 from its 320x240 MPEG-4 re-encode, 2,250 from the demo's videos
    "reencode_frames": 1000,
    # ViT-B-32 images a second: a thread (bench_clip: 20 on 2 threads) / a GPU
    # images/s, gpu: the stage on an H200, bf16, 1-4 loader workers: 1,900-3,200 (benchmarks/gpu)
    "clip_images": {"cpu": 10, "gpu": 2000},
    "head_samples": 6000,  # training samples x epochs a second, fusion MLP, one thread (bench_heads)
}
BYTES_A_FRAME = 2600  # UCF101's XviD: the fewest bytes a frame of the usual datasets, so the most frames a MB
TIME_MARGIN = 3


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
        f"(measure it with benchmarks/bench_mv.py --arch {arch} and add it to moclip.resources.BACKBONES)"
    )


# Host memory of a job that runs its network on a GPU (torch and CUDA's libraries; the
# activations are GPU memory), before its loader workers: 1,281-1,779 MB measured
# (ViT-B-32, EfficientNet-B0 at 224 px, benchmarks/gpu).
GPU_HOST_MB = 1800


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
    not have run yet), and which stages run on a GPU, one job for every shard."""

    config: dict
    n_videos: int
    n_shards: int
    clip_gpu: bool = False
    mv_gpu: bool = False

    @property
    def videos_a_shard(self) -> int:
        """Videos a shard, with a margin for the hash's imbalance."""
        return math.ceil(1.2 * self.n_videos / self.n_shards)

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
        """Training and the selection on val (every video once an epoch, the training
        segments), then the test videos under the test protocol (fewer than all videos)."""
        m = self.config["mvnet"]
        train = m["epochs"] * self.n_videos * m["segments"] / self.mv_rate(threads)
        return train + self.n_videos * self.eval_views() / (3 * self.mv_rate(threads))

    def mv_features_seconds(self, input, threads: int) -> float:
        """A job's videos x networks x views, at the GPU's measured inference rate (scaled by
        the input area), or 3x the CPU's training rate."""
        if self.mv_gpu:
            rate = self.backbone.gpu_feature_rate * min(1, 1 / self.area())
            return self.n_videos * self.eval_views() / rate
        splits = len(self.config["dataset"]["splits"]) if self.config["dataset"]["format"] != "folder" else 1
        return self.videos_a_shard * splits * self.eval_views() / (3 * self.mv_rate(threads))

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
        px, batch 80 x 3: 21.6 GB in bench_mv)."""
        if self.mv_gpu:
            return GPU_HOST_MB
        m, b = self.config["mvnet"], self.backbone
        return b.train_mb + b.activation_mb * m["batch_size"] * m["segments"] * self.area()

    def mv_features_mb(self) -> float:
        """mv_features' peak: on the CPU the backbone's process and model plus a forward over
        192 inputs at a time (EfficientNet-B0 at 224 px: 3,341 MB measured); on a GPU, the
        process's host memory."""
        if self.mv_gpu:
            return GPU_HOST_MB
        b = self.backbone
        return b.feature_mb + b.feature_input_mb * 192 * self.area()


class Workloads:
    """The Workload of each experiment of a run, by output root (a job's ``exp`` wildcard):
    the rules' resource functions for the job's experiment."""

    def __init__(self, configs: dict[str, dict], n_videos: int, n_shards: int, clip_gpu: bool, mv_gpu: bool):
        self.by_root = {root: Workload(c, n_videos, n_shards, clip_gpu, mv_gpu) for root, c in configs.items()}

    def runtime(self, work: str) -> Callable[..., int]:
        """A rule's runtime: Workload.<work> (seconds) of the job's experiment, in minutes."""

        def estimate(wildcards, input, threads, attempt):
            return minutes(getattr(self.by_root[wildcards.exp], work))(wildcards, input, threads, attempt)

        return estimate

    def mem_mb(self, work: str, per_thread: float = 300) -> Callable[..., int]:
        """A rule's mem_mb: the largest Workload.<work>() (MB) of the experiments."""
        return memory_mb(max(getattr(w, work)() for w in self.by_root.values()), per_thread=per_thread)
