"""The frames of a frame cache back as uint8 tensors [K, H, W, 3], one way wherever they are
used (the CLIP stage's loader, ``moclip predict``, the benchmarks and tests).

A cache stores them raw or as JPEG (:class:`moclip.video.cache.FrameStorage`). Reading
(:func:`stored_frames`) is apart from decoding (:func:`decode_frames`), so that JPEG is
decoded where the frames are used: in batches on the device that embeds them (nvJPEG on
CUDA: ``torchvision.io.decode_jpeg`` takes a list and a device), or on the CPU in the
loader's workers. The cache stage writes them and never imports this module or torch.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg

from moclip.io import reading, rebuild
from moclip.video.cache import ENDS_DATASET, JPEG_DATASET, open_cache

# torchvision 0.29 (pinned) warns on every image call that its decoders will move to
# TorchCodec; they are what runs here until then.
warnings.filterwarnings("ignore", "The image decoding and encoding capabilities of TorchVision", DeprecationWarning)


@dataclass
class StoredFrames:
    """One video's frames as its cache ``path`` holds them: ``raw`` uint8 [K, H, W, 3], or
    ``jpeg``, one 1-D uint8 tensor of JPEG bytes a frame; ``shape`` is (K, H, W)."""

    path: str
    shape: tuple[int, int, int]
    raw: torch.Tensor | None = None
    jpeg: list[torch.Tensor] | None = None

    @property
    def encoding(self) -> str:
        return "raw" if self.raw is not None else "jpeg"


def stored_frames(f: h5py.File) -> StoredFrames:
    """The frames of open cache ``f`` as stored, read and not decoded (a cache without an
    ``encoding`` attr was written before JPEG: raw)."""
    if f.attrs.get("encoding", "raw") == "raw":
        raw = torch.from_numpy(f["frames"][()])
        return StoredFrames(f.filename, tuple(raw.shape[:3]), raw=raw)
    data, ends = f[JPEG_DATASET][()], f[ENDS_DATASET][()]
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    if len(ends) and (ends[-1] != len(data) or (ends <= starts).any()):
        raise ValueError(f"{ENDS_DATASET} {ends.tolist()} do not cut {JPEG_DATASET} of {len(data)} bytes")
    data = torch.from_numpy(data)
    jpeg = [data[a:b] for a, b in zip(starts, ends)]
    return StoredFrames(f.filename, (len(jpeg), int(f.attrs["frame_height"]), int(f.attrs["frame_width"])), jpeg=jpeg)


def _decoded(video: StoredFrames, images: list[torch.Tensor]) -> torch.Tensor:
    """A video's decoded images [3, H, W] as uint8 [K, H, W, 3]; a size other than the
    cache's attrs say is an error."""
    k, h, w = video.shape
    bad = [tuple(x.shape) for x in images if tuple(x.shape) != (3, h, w)]
    if len(images) != k:
        raise ValueError(f"{len(images)} JPEG frames decoded where the cache holds {k}")
    if bad:
        raise ValueError(f"a JPEG frame decodes to {bad[0]}, the cache's attrs say (3, {h}, {w})")
    if not images:
        return torch.zeros((0, h, w, 3), dtype=torch.uint8)
    return torch.stack(images).permute(0, 2, 3, 1)


def _reading(video: StoredFrames):
    """A failure in the block names the video's cache and the rebuild of its shard (its
    directory: rule cache_shard's output), as :func:`moclip.video.cache.open_cache` does."""
    return reading(video.path, rebuild(Path(video.path).parent))


def _decode_one(video: StoredFrames, device: torch.device) -> torch.Tensor:
    with _reading(video):
        return _decoded(video, decode_jpeg(video.jpeg, mode=ImageReadMode.RGB, device=device) if video.jpeg else [])


def decode_frames(videos: list[StoredFrames], device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """Each video's frames as uint8 [K, H, W, 3] on ``device``: raw ones moved there, JPEG
    ones decoded there, every frame of every video in one call off the CPU (nvJPEG's batch),
    video by video on the CPU. A frame that does not decode is a BrokenFileError naming its
    cache (found by decoding the batch's videos one by one on the CPU)."""
    device = torch.device(device)
    out: list[torch.Tensor | None] = [
        v.raw.to(device, non_blocking=True) if v.raw is not None else None for v in videos
    ]
    jpeg = [k for k, v in enumerate(videos) if v.raw is None]
    if device.type == "cpu":
        for k in jpeg:
            out[k] = _decode_one(videos[k], device)
        return out
    images = [x for k in jpeg for x in videos[k].jpeg]
    try:
        decoded = decode_jpeg(images, mode=ImageReadMode.RGB, device=device) if images else []
    except RuntimeError:
        for k in jpeg:  # name the broken cache; a failure of the device itself goes on as it was
            _decode_one(videos[k], torch.device("cpu"))
        raise
    start = 0
    for k in jpeg:
        n = videos[k].shape[0]
        with _reading(videos[k]):
            out[k] = _decoded(videos[k], decoded[start : start + n])
        start += n
    return out


def read_frames(path: Path | str, device: torch.device | str = "cpu") -> tuple[torch.Tensor, np.ndarray, dict]:
    """(frames uint8 [K, H, W, 3] on ``device``, frame_index int32 [K], attrs) of one frame cache."""
    with open_cache(path) as f:
        stored, index, attrs = stored_frames(f), f["frame_index"][()], dict(f.attrs)
    return decode_frames([stored], device)[0], index, attrs


__all__ = ["StoredFrames", "decode_frames", "read_frames", "stored_frames"]
