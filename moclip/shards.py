"""Embedding shard files, one format for CLIP and MV features, and how a video's rows pool.

``video_id`` [N], ``features`` [N, K, D] (NaN rows for failed videos), ``valid`` bool [N],
and attributes naming what produced them. Written atomically, the numbers with checksums.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from moclip.io import atomic_path, reading

DRAWS = "train_draws"  # an MV feature shard's [N, draws, D] float16 dataset (NaN for other rows)


def write_shard(out: Path | str, video_ids: list[str], features: np.ndarray, valid: np.ndarray, **attrs) -> None:
    """Features and mask carry HDF5's Fletcher-32 checksum, so a flipped byte fails the read
    instead of passing as numbers (not the ids, variable-length strings: `moclip verify` checks them)."""
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h:
        h.create_dataset("video_id", data=np.array(video_ids, dtype=object), dtype=h5py.string_dtype())
        h.create_dataset("features", data=features, fletcher32=True)
        h.create_dataset("valid", data=np.asarray(valid, bool), fletcher32=True)
        h.attrs.update(attrs)


def read_shard(path: Path | str) -> tuple[list[str], np.ndarray, np.ndarray, dict]:
    """(video ids, features [N, K, D] float32, valid [N], attrs) of one shard."""
    with reading(path), h5py.File(path, "r") as h:
        ids = [v.decode() if isinstance(v, bytes) else v for v in h["video_id"][()]]
        return ids, h["features"][()].astype(np.float32), h["valid"][()], dict(h.attrs)


def shard_attrs(path: Path | str) -> dict:
    """The attrs of one shard (what made it), without reading its features."""
    with reading(path), h5py.File(path, "r") as h:
        return dict(h.attrs)


def read_shards(paths) -> dict[str, np.ndarray | None]:
    """video_id -> per-video features [K, D] (None for failed videos) over several shards."""
    out: dict[str, np.ndarray | None] = {}
    for p in paths:
        ids, feats, valid, _ = read_shard(p)
        out.update((v, feats[i] if valid[i] else None) for i, v in enumerate(ids))
    return out


def pool_frames(features: np.ndarray, normalize: bool = True) -> np.ndarray:
    """CLIP frames [..., K, D] -> [..., D]: the mean of the L2-normalised frame embeddings,
    or with ``normalize`` false of the raw ones (the authors': one frame, as it comes)."""
    f = features / np.linalg.norm(features, axis=-1, keepdims=True) if normalize else features
    return f.mean(axis=-2)


def pool_segments(features: np.ndarray) -> np.ndarray:
    """MV segments [..., S, D] -> [..., D]: their mean (TSN)."""
    return features.mean(axis=-2)
