"""Heads trained on precomputed features only: the fusion MLP and the CLIP linear probe.

Features are pooled per video (CLIP: mean of the frame embeddings, each L2-normalised by
default; MV: mean over segments), normalised per stream, and held in memory as tensors: a UCF101-sized set
(13k x 1.8k floats) trains in seconds on a CPU. The best epoch is chosen on ``val``;
``test`` is scored once, with the selected weights.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from moclip.dataset.videos import class_names, read_manifest, split_rows
from moclip.io import BrokenFileError, atomic_path, reading, rebuild, write_json
from moclip.methods import HEADS, STREAMS
from moclip.metrics import sample_sd, selection_key, summarize, write_predictions
from moclip.runtime import use_threads
from moclip.settings import FromConfig, default
from moclip.shards import DRAWS, pool_frames, pool_segments, read_shards

log = logging.getLogger(__name__)


NORMALIZATIONS = ("none", "l2", "standardize")  # heads.normalize: of each stream, statistics of train


@dataclass(frozen=True)
class HeadSettings(FromConfig):
    """Everything that shapes a head (each a workflow param; defaults: config.yaml's ``heads``)."""

    hidden: int = default("heads", "hidden")
    dropout: float = default("heads", "dropout")
    lr: float = default("heads", "lr")
    weight_decay: float = default("heads", "weight_decay")
    epochs: int = default("heads", "epochs")
    batch_size: int = default("heads", "batch_size")
    cpu_threads: int = default("heads", "cpu_threads")
    normalize: str = default("heads", "normalize")
    frame_norm: bool = default("heads", "frame_norm")
    mv_draws: int = default("heads", "mv_draws")


def stream_matrix(rows, feats: dict, pool) -> tuple[np.ndarray, np.ndarray]:
    """([N, D] pooled features, NaN rows where missing; valid [N]) for manifest rows."""
    d = next(pool(f).shape[0] for f in feats.values() if f is not None)
    x = np.full((len(rows), d), np.nan, np.float32)
    ok = np.zeros(len(rows), bool)
    for i, r in enumerate(rows):
        f = feats.get(r.video_id)
        if f is not None:
            x[i], ok[i] = pool(f), True
    return x, ok


class Normalizer(nn.Module):
    """Per-stream normalisation whose statistics come from the training rows and travel
    with the checkpoint. Standardising is the default: CLIP's pooled embedding and the MV
    network's ReLU features differ in scale by orders of magnitude, and without it the
    larger stream dominates the first layer."""

    def __init__(self, dims: list[int], mode: str):
        super().__init__()
        if mode not in NORMALIZATIONS:
            raise ValueError(f"heads.normalize: {mode!r} (one of {', '.join(NORMALIZATIONS)})")
        self.mode = mode
        self.register_buffer("mean", torch.zeros(sum(dims)))
        self.register_buffer("std", torch.ones(sum(dims)))
        self.dims = dims

    def fit(self, x: torch.Tensor) -> Normalizer:
        if self.mode == "standardize":
            self.mean.copy_(x.mean(0))
            self.std.copy_(x.std(0).clamp_min(1e-6))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "l2":
            return torch.cat([F.normalize(p, dim=-1) for p in x.split(self.dims, dim=-1)], -1)
        return (x - self.mean) / self.std


def build_head(kind: str, dims: list[int], n_classes: int, s: HeadSettings) -> nn.Module:
    """Head ``kind``'s network (:data:`moclip.methods.HEADS`) over features of ``dims``
    (one a stream it reads), behind their normalisation."""
    if kind not in HEADS:
        raise ValueError(f"unknown head {kind!r} (choose from {', '.join(HEADS)})")
    d = sum(dims)
    if HEADS[kind].net == "mlp":  # the paper's head: Linear -> ReLU -> Dropout -> Linear
        net = nn.Sequential(nn.Linear(d, s.hidden), nn.ReLU(), nn.Dropout(s.dropout), nn.Linear(s.hidden, n_classes))
    else:
        net = nn.Linear(d, n_classes)
    return nn.Sequential(OrderedDict(norm=Normalizer(dims, s.normalize), net=net))  # .norm, then the trained .net


def fit_head(
    kind: str,
    dims: list[int],
    n_classes: int,
    s: HeadSettings,
    seed: int,
    x_train: torch.Tensor | Callable[[int], torch.Tensor],
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
):
    """Full-batch-in-memory AdamW training; returns (best model, best epoch, history).
    ``x_train`` is the training matrix, or a function of the epoch giving it (the fusion
    head's MV draws); the normalisation's statistics come from epoch 0's."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    train_at = x_train if callable(x_train) else lambda epoch: x_train
    model = build_head(kind, dims, n_classes, s)
    model.norm.fit(train_at(0))
    opt = torch.optim.AdamW(model.net.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    best, best_key, best_epoch, history = None, None, -1, []
    for epoch in range(s.epochs):
        model.train()
        x_train = train_at(epoch)
        perm = torch.randperm(len(x_train), generator=g)
        total = 0.0
        for i in range(0, len(perm), s.batch_size):
            idx = perm[i : i + s.batch_size]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        rec = {"epoch": epoch, "loss": total / max(len(perm), 1)}
        model.eval()
        with torch.no_grad():
            if len(x_val):
                out = model(x_val)
                rec["val_top1"] = float((out.argmax(1) == y_val).float().mean())
                rec["val_loss"] = float(F.cross_entropy(out, y_val))
        history.append(rec)
        key = selection_key(epoch, rec.get("val_top1"), rec.get("val_loss"))
        if best_key is None or key > best_key:
            best_key, best_epoch, best = key, epoch, copy.deepcopy(model.state_dict())
    model.load_state_dict(best)
    model.eval()
    return model, best_epoch, history


class DrawReader:
    """The training videos' MV feature draws (``train_draws`` of the feature shards, written
    by :func:`moclip.mv.stream.extract_draws`), one draw a time: [N, D] float32 in the
    order of ``video_ids`` (NaN for a video no shard holds). A shard that cannot be read,
    or holds no draws, is a :class:`~moclip.io.BrokenFileError` naming it."""

    def __init__(self, shards: list[Path | str], video_ids: list[str]):
        self.shards, self.video_ids, self.dataset = [Path(p) for p in shards], video_ids, DRAWS
        where = {}
        for k, path in enumerate(self.shards):
            with reading(path), h5py.File(path, "r") as f:
                if DRAWS not in f:
                    raise BrokenFileError(path, f"no {DRAWS} (heads.mv_draws > 0 needs them)", rebuild(path))
                for i, v in enumerate(f["video_id"][()]):
                    where[v.decode() if isinstance(v, bytes) else v] = (k, i)
        self.at = [where.get(v) for v in video_ids]

    def matrix(self, draw: int) -> np.ndarray:
        cols = []
        for path in self.shards:  # one chunk a shard: a draw's column
            with reading(path), h5py.File(path, "r") as f:
                cols.append(f[self.dataset][:, draw, :])
        out = np.full((len(self.at), cols[0].shape[-1]), np.nan, np.float32)
        for j, at in enumerate(self.at):
            if at is not None:
                out[j] = cols[at[0]][at[1]]
        return out


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_head(
    path: Path | str, model: nn.Module, kind: str, dims: list[int], classes: list[str], s: HeadSettings, meta: dict
) -> None:
    """Loadable with ``torch.load(..., weights_only=True)``: tensors and plain values only."""
    # Saved through a file object: the archive inside is then named "archive", not after the
    # temp file, so the same weights give the same bytes.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(
            {
                "state_dict": model.state_dict(),
                "kind": kind,
                "dims": dims,
                "classes": classes,
                "settings": json.dumps(asdict(s)),
                "meta": json.dumps(meta),
            },
            f,
        )


def load_head(path: Path | str) -> tuple[nn.Module, dict]:
    with reading(path):
        ck = torch.load(path, map_location="cpu", weights_only=True)
    s = HeadSettings.from_config(json.loads(ck["settings"]))
    model = build_head(ck["kind"], list(ck["dims"]), len(ck["classes"]), s)
    model.load_state_dict(ck["state_dict"])
    model.eval().requires_grad_(False)
    return model, {
        "kind": ck["kind"],
        "dims": list(ck["dims"]),
        "classes": list(ck["classes"]),
        "settings": s,
        **json.loads(ck["meta"]),
    }


# --------------------------------------------------------------------------- stage entry point


@dataclass
class Part:
    """One part of a split as a head reads it: the features [N, D] (one block of columns a
    stream, ``dims`` wide), which rows have every stream (failed videos do not), the labels."""

    x: np.ndarray
    ok: np.ndarray
    y: np.ndarray
    dims: list[int]


@dataclass
class SeedRun:
    """A head trained with one seed: its model, the epoch it kept, its test scores and metrics."""

    seed: int
    model: nn.Module
    best_epoch: int
    scores: np.ndarray
    metrics: dict


def train_head(
    *,
    head: str,
    manifest: Path | str,
    split: int,
    clip: list[Path | str],
    mv: list[Path | str],
    settings: HeadSettings,
    seeds: list[int],
    model: Path | str,
    predictions: Path | str,
    training: Path | str,
    metrics: Path | str,
) -> dict:
    """Rule ``train_head``: train ``head`` on the split's train part once a seed, select on
    val, score test. ``clip`` and ``mv`` are the feature shards of the streams it reads.

    ``model`` and ``predictions`` are the first seed's; ``metrics`` holds the first seed's
    numbers plus the mean and spread over seeds; ``training`` every seed's history.
    """
    use_threads(settings.cpu_threads, "heads.cpu_threads")
    kind, s = head, settings
    rows = read_manifest(manifest)
    parts = split_rows(rows, split)
    classes = class_names(rows)
    readers = {
        "clip": lambda: (read_shards(clip), functools.partial(pool_frames, normalize=s.frame_norm)),
        "mv": lambda: (read_shards(mv), pool_segments),
    }
    reads = [st for st in STREAMS if HEADS[kind].reads(st)]
    streams = [readers[st]() for st in reads]
    draws = DrawReader(mv, [r.video_id for r in parts["train"]]) if "mv" in reads and s.mv_draws else None

    def part(rows) -> Part:
        mats = [stream_matrix(rows, f, p) for f, p in streams]
        x = np.concatenate([m for m, _ in mats], 1)
        ok = np.logical_and.reduce([v for _, v in mats])
        return Part(x, ok, np.array([r.label for r in rows], np.int64), [m.shape[1] for m, _ in mats])

    train, val, test = (part(parts[p]) for p in ("train", "val", "test"))
    dims, t = train.dims, torch.from_numpy
    x_train = t(train.x[train.ok])
    if draws is not None:  # the MV columns of the training rows: draw e mod N in epoch e
        at = int(np.sum(dims[: reads.index("mv")]))  # the MV columns' first
        width = dims[reads.index("mv")]

        def x_train(epoch: int) -> torch.Tensor:
            mv = draws.matrix(epoch % s.mv_draws)[train.ok]
            if np.isnan(mv).any():
                missing = [v for v, bad in zip(np.array(draws.video_ids)[train.ok], np.isnan(mv).any(1)) if bad]
                raise ValueError(f"{len(missing)} training videos have no MV draw {epoch % s.mv_draws}: {missing[:3]}")
            x = train.x[train.ok]
            return t(np.concatenate([x[:, :at], mv, x[:, at + width :]], 1))

    runs: list[SeedRun] = []
    history = {}
    for seed in seeds:
        y_train, x_val, y_val = t(train.y[train.ok]), t(val.x[val.ok]), t(val.y[val.ok])
        net, best_epoch, hist = fit_head(kind, dims, len(classes), s, seed, x_train, y_train, x_val, y_val)
        scores = np.full((len(test.y), len(classes)), np.nan, np.float32)
        with torch.no_grad():
            if test.ok.any():
                scores[test.ok] = net(t(test.x[test.ok])).numpy()
        m = summarize(scores, test.y, len(classes))
        runs.append(SeedRun(seed, net, best_epoch, scores, m))
        history[str(seed)] = {"best_epoch": best_epoch, "history": hist}
        log.info("%s split %d seed %d: best epoch %d, test top1 %.4f", kind, split, seed, best_epoch, m["top1"])
    first = runs[0]  # its model and predictions are saved
    top1 = [r.metrics["top1"] for r in runs]
    top5 = [r.metrics["top5"] for r in runs]
    summary = {
        "method": kind,
        "split": split,
        **first.metrics,
        "failed_videos": [r.video_id for r, ok in zip(parts["test"], test.ok) if not ok],
        "seeds": seeds,
        "top1_seeds": top1,
        "top5_seeds": top5,
        "top1_mean": float(np.mean(top1)),
        "top1_sd": sample_sd(top1),  # over seeds, n - 1; None with one seed
        "top5_mean": float(np.mean(top5)),
        "top5_sd": sample_sd(top5),
        "best_epoch": first.best_epoch,  # the first seed's, whose model is saved
        "best_epochs": [r.best_epoch for r in runs],
        "trainable_parameters": trainable_parameters(first.model.net),
        "n_train": int(train.ok.sum()),
        "n_val": int(val.ok.sum()),
        "settings": asdict(s),
    }
    save_head(model, first.model, kind, dims, classes, s, {"split": split, "seed": first.seed})
    write_predictions(predictions, [r.video_id for r in parts["test"]], test.y, first.scores, classes)
    write_json(training, history)
    write_json(metrics, summary)
    return summary
