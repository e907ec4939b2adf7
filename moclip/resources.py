"""What a job asks of a cluster: mem_mb (sbatch --mem) and runtime (sbatch -t, minutes).

Memory does not grow with the dataset (the caches are streamed; benchmarks/bench_scale.py
measures every rule at 1,332 and 13,320 videos), so mem_mb is a measured peak with a
margin. Time grows with a job's work (frames, images, samples, epochs) at the rates below,
measured on this project's CPU cores (README, "Resources") and on an H200 (benchmarks/gpu).
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
    "mv_samples": {  # MV network training segments a second: a thread (tiny at 64 px, timm at 224 px) / a GPU
        "tiny": 150,  # bench_mv: 388-395 with 2 threads (1 loader worker)
        "timm": 3.0,  # EfficientNet-B0, NHWC: bench_mv --arch efficientnet_b0 --input-size 224 (batch 80): 6.1 on 2
        "gpu": 1400,  # EfficientNet-B0 at 224 px, batch 80 x 3, bf16, 4 workers, H200: 1,418 (benchmarks/gpu)
    },
    "mv_feature_inputs_gpu": 11000,  # EfficientNet-B0 at 224 px, 25 x 10 views, H200: 11,500 (benchmarks/gpu)
    "head_samples": 6000,  # training samples x epochs a second, fusion MLP, one thread (bench_heads)
}
BYTES_A_FRAME = 2600  # UCF101's XviD: the fewest bytes a frame of the usual datasets, so the most frames a MB
TIME_MARGIN = 3
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

    def mv_rate(self, threads: int) -> float:
        """MV network segments a second (training); inference is about 3x that."""
        m, rate = self.config["mvnet"], RATES["mv_samples"]
        if self.mv_gpu:
            return rate["gpu"] * min(1, (224 / m["input_size"]) ** 2)
        kind, ref = ("tiny", 64) if m["arch"] == "tiny" else ("timm", 224)
        return rate[kind] * threads * (ref / m["input_size"]) ** 2

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
            scale = min(1, (224 / self.config["mvnet"]["input_size"]) ** 2)
            return self.n_videos * self.eval_views() / (RATES["mv_feature_inputs_gpu"] * scale)
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
        """train_mvnet's peak before its loader workers: on a GPU the process's host memory;
        on the CPU the tiny network's measured 1,100 MB plus a timm network's activations."""
        return GPU_HOST_MB if self.mv_gpu else 1100 + self.mvnet_activations_mb()

    def mvnet_activations_mb(self) -> float:
        """What a timm MV network trained on the CPU adds to train_mvnet's peak: its
        activations, 85 MB an image at 224 px (EfficientNet-B0, batch 80 x 3 segments: 21.6 GB
        peak in bench_mv). The tiny network's are in its measured 1,100 MB; on a GPU they are
        GPU memory, not the job's."""
        m = self.config["mvnet"]
        if m["arch"] == "tiny" or self.mv_gpu:
            return 0
        return 85 * m["batch_size"] * m["segments"] * (m["input_size"] / 224) ** 2

    def mv_features_mb(self) -> float:
        """mv_features' peak: on the CPU the network's forward over 192 inputs at a time
        (EfficientNet-B0 at 224 px: 3,341 MB measured; 14.8 MB an input beyond the 500 MB of
        the process and its model, scaled with the input's area); the tiny network's 800 MB,
        measured; on a GPU, the process's host memory."""
        m = self.config["mvnet"]
        if self.mv_gpu:
            return GPU_HOST_MB
        if m["arch"] == "tiny":
            return 800
        return 500 + 14.8 * 192 * (m["input_size"] / 224) ** 2
