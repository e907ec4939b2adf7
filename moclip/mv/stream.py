"""The motion stream's two stages: ``train_mvnet`` (a network a split, its 'MV only' result)
and ``mv_features`` (frozen features of every video, and the training videos' augmented draws,
for the fusion head).

Model selection uses the ``val`` part of a split's training list, never ``test``.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from moclip.dataset.videos import class_names, read_manifest, split_rows
from moclip.io import atomic_path, write_json
from moclip.metrics import summarize
from moclip.mv.augment import augment_params, crop_flip, draw_generator, to_input
from moclip.mv.data import MVClips, MVItem, MVSettings, mv_items, mv_loader, trace_on_device, video_status
from moclip.mv.nets import MVNet
from moclip.mv.train import (
    eval_batch_videos,
    eval_images,
    fit_mvnet,
    load_checkpoint,
    model_device,
    predict_logits,
    save_checkpoint,
    view_features,
)
from moclip.runtime import Progress, autocast, autocast_dtype, log_startup, precision_name, resolve_device, use_threads
from moclip.shards import DRAWS, write_shard
from moclip.video.cache import read_index, video_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureShard:
    """One shard's videos to extract features of, their ``valid`` mask (failed videos'
    caches are not read), the shard file to write, and which rows are the network's
    training videos (they get augmented draws: :func:`extract_draws`)."""

    items: list[MVItem]
    valid: np.ndarray
    out: Path
    train: np.ndarray | None = None


@torch.no_grad()
def extract_shards(
    model: MVNet, s: MVSettings, shards: list[FeatureShard], workers: int = 0, batch: int | None = None
) -> None:
    """Pooled features [N, S_eval, D] of every video of ``shards`` at the fixed evaluation
    segments, each the mean over the segment's ``eval_crops`` views (the fusion head sees
    the views the MV test scores), on the model's device, through one loader over all
    their valid videos; each shard's file (``video_id``, ``features`` with NaN rows for
    failed videos, ``valid``) is written as soon as its last video is done. ``batch``:
    videos a loader batch (None: about :func:`eval_images` inputs)."""
    model.eval()
    dev = model_device(model)
    d = model.backbone.num_features
    todo = [(k, int(i)) for k, sh in enumerate(shards) for i in np.flatnonzero(sh.valid)]  # (shard, row)
    feats = [np.full((len(sh.items), s.eval_segments, d), np.nan, np.float32) for sh in shards]
    last = {k: j for j, (k, _) in enumerate(todo)}  # a shard is done after its last valid video
    written, progress = set(), Progress("videos", len(todo), log)
    loader = mv_loader(
        MVClips([shards[k].items[i] for k, i in todo], s, s.eval_segments, traces=trace_on_device(s, dev)),
        batch or eval_batch_videos(s.eval_views, dev),
        workers,
        pin=dev.type == "cuda",
    )

    def write(k: int) -> None:
        sh = shards[k]
        ids = [it.video_id for it in sh.items]
        amp = precision_name(autocast_dtype(dev, s.precision))
        info = dict(eval_segments=s.eval_segments, eval_crops=s.eval_crops, dim=d, device=dev.type, precision=amp)
        write_shard(sh.out, ids, feats[k], np.asarray(sh.valid, bool), arch=s.arch, **info)
        written.add(k)

    done = 0
    for x, _ in loader:
        f = view_features(model, x.to(dev, non_blocking=True), s, s.eval_crops).mean(2).cpu().numpy()
        for j in range(len(f)):
            k, i = todo[done + j]
            feats[k][i] = f[j]
            if last[k] == done + j:
                write(k)
        log_startup(log)
        done += len(f)
        progress.update(len(f))
    progress.close()
    for k in range(len(shards)):  # shards without a valid video
        if k not in written:
            write(k)


@torch.no_grad()
def extract_draws(model: MVNet, s: MVSettings, shards: list[FeatureShard], draws: int, workers: int = 0) -> None:
    """Add to each shard file (written by :func:`extract_shards`) ``draws`` pooled
    features of each training video as the network saw it in training: the training
    segments drawn at random and augmented (crop scale and flip), the mean over the
    segments (what the fusion head sees), in eval mode. A draw depends on (seed, draw,
    video id) alone, never on the shard or batch. The fusion head trains on draw e mod
    ``draws`` in epoch e: the authors ran the frozen network on fresh segments every epoch.
    Each file is rewritten atomically: until every draw is in, it holds no draws at all."""
    model.eval()
    dev = model_device(model)
    rows = [(k, int(i)) for k, sh in enumerate(shards) for i in np.flatnonzero(sh.train & sh.valid)]
    items = [shards[k].items[i] for k, i in rows]
    of_shard = {k: [j for j, (kk, _) in enumerate(rows) if kk == k] for k in range(len(shards))}
    d_out = model.backbone.num_features
    with contextlib.ExitStack() as stack:
        files = []
        for sh in shards:  # a copy each, renamed over the shard when all draws are in
            tmp = stack.enter_context(atomic_path(sh.out))
            shutil.copyfile(sh.out, tmp)
            files.append(stack.enter_context(h5py.File(tmp, "r+")))
        for f in files:
            n = len(f["video_id"])
            layout = dict(chunks=(n, 1, d_out), fletcher32=True) if n else {}  # a draw a chunk
            f.create_dataset(DRAWS, (n, draws, d_out), np.float16, fillvalue=np.nan, **layout)
        if not rows:
            return
        size = max(1, eval_images(dev) // s.segments)
        starts = range(0, len(items), size)
        batches = [[(d, j) for j in range(i, min(i + size, len(items)))] for d in range(draws) for i in starts]
        ds = MVClips(items, s, s.segments, s.seed, by_id=True, traces=trace_on_device(s, dev))
        loader = mv_loader(ds, size, workers, pin=dev.type == "cuda", batches=batches)
        amp = autocast_dtype(dev, s.precision)
        column = np.empty((len(items), d_out), np.float16)
        progress = Progress("draws", draws, log, every=30)
        for keys, (x, _) in zip(batches, loader):  # a batch never straddles two draws
            params = [augment_params(1, s.segments, s, draw_generator(s, d, items[j].video_id)) for d, j in keys]
            x = to_input(x.to(dev, non_blocking=True), s.input_size).flatten(0, 1)
            x = crop_flip(x, *(torch.cat(p) for p in zip(*params)))
            with autocast(dev, amp):
                z = model.features(x).float().view(len(keys), s.segments, -1).mean(1)
            column[[j for _, j in keys]] = z.cpu().numpy()
            d, last = keys[-1]
            if last == len(items) - 1:  # draw d complete: into every shard's file
                for k, f in enumerate(files):
                    if of_shard[k]:
                        f[DRAWS][[rows[j][1] for j in of_shard[k]], d, :] = column[of_shard[k]]
                progress.update()
        progress.close()


def extract_features(
    model: MVNet,
    s: MVSettings,
    items: list[MVItem],
    valid: np.ndarray,
    out: Path | str,
    workers: int = 0,
    batch: int | None = None,
) -> None:
    """:func:`extract_shards` for one shard (``items`` -> ``out``)."""
    extract_shards(model, s, [FeatureShard(items, np.asarray(valid, bool), Path(out))], workers, batch)


def train_mvnet(
    *,
    manifest: Path | str,
    mv: list[Path | str],
    index: list[Path | str],
    split: int,
    settings: MVSettings,
    model: Path | str,
    training: Path | str,
    metrics: Path | str,
    device: str = "auto",
    threads: int = 1,
) -> dict:
    """Rule ``train_mvnet``: train on the split's ``train`` part, select on ``val``, report
    ``test`` once (the 'MV only' result), on ``device``. ``mv[k]`` and ``index[k]`` are
    shard k's MV cache directory and index; torch computes with ``settings.cpu_threads``
    threads and ``threads - 1`` processes read the caches (neither changes a number)."""
    use_threads(settings.cpu_threads, "mvnet.cpu_threads", threads)
    workers = max(0, threads - 1)
    s = settings
    rows = read_manifest(manifest)
    parts = split_rows(rows, split)
    n_classes = len(class_names(rows))
    status = video_status(index)
    train = [v for v in mv_items(parts["train"], mv) if status[v.video_id] == "ok"]
    val = [v for v in mv_items(parts["val"], mv) if status[v.video_id] == "ok"]
    log.info(
        "split %d: %d train, %d val videos (failed ones left out), %d test",
        split,
        len(train),
        len(val),
        len(parts["test"]),
    )
    result = fit_mvnet(train, val, n_classes, s, workers, device)
    save_checkpoint(model, result, s, n_classes, split)
    net, _, _ = load_checkpoint(model)
    test = mv_items(parts["test"], mv)
    ok = [i for i, v in enumerate(test) if status[v.video_id] == "ok"]
    scores = np.full((len(test), n_classes), np.nan, np.float32)
    if ok:
        scores[ok] = predict_logits(net.to(resolve_device(device)), [test[i] for i in ok], s, workers=workers)
    labels = np.array([r.label for r in parts["test"]], np.int64)
    m = {
        "method": "mv_only",
        "split": split,
        **summarize(scores, labels, n_classes),
        "failed_videos": [v.video_id for v in test if status[v.video_id] != "ok"],
        "best_epoch": result.best_epoch,
        "selected_on": "val" if val else "last epoch (no val videos)",
    }
    write_json(
        training,
        {
            "history": result.history,
            "best_epoch": result.best_epoch,
            "n_train": len(train),
            "n_val": len(val),
            "device": result.device,
            "precision": result.precision,
        },
    )
    write_json(metrics, m)
    return m


def mv_features(
    *,
    models: list[Path | str],
    mv: list[Path | str],
    index: list[Path | str],
    out: list[Path | str],
    device: str = "auto",
    manifest: Path | str | None = None,
    draws: int = 0,
    threads: int = 1,
) -> None:
    """Rule ``mv_features``: frozen features of each shard (``mv[j]``, ``index[j]``) under
    each network (``models[i]``) into ``out[i * len(mv) + j]``, on ``device``: on the CPU
    one shard a job under every split's network, on a GPU every shard in a job a network
    (one start-up); torch computes with the network's ``cpu_threads`` (its checkpoint's
    settings) and ``threads - 1`` processes read the caches. With ``draws``, each
    network's training videos (its split's, from ``manifest``) also get that many
    augmented draws (:func:`extract_draws`)."""
    if draws and manifest is None:
        raise ValueError("mv_features: draws need the manifest (which videos each network trained on)")
    rows = read_manifest(manifest) if draws else []
    if len(out) != len(models) * len(mv):
        raise ValueError(f"mv_features: {len(out)} outputs for {len(models)} networks x {len(mv)} shards")
    dev = resolve_device(device)
    shards = []
    for d, ix in zip(mv, index, strict=True):
        records = read_index(ix)
        items = [MVItem(r.video_id, video_file(d, r.video_id)) for r in records]
        shards.append((items, np.array([r.status == "ok" for r in records], bool)))
    for i, model_file in enumerate(models):
        net, settings, meta = load_checkpoint(model_file)
        use_threads(settings.cpu_threads, "mvnet.cpu_threads", threads)
        trained = {r.video_id for r in rows if r.split(meta["split"]) == "train"}
        outs = out[i * len(mv) : (i + 1) * len(mv)]
        work = [
            FeatureShard(items, valid, Path(o), np.array([it.video_id in trained for it in items], bool))
            for (items, valid), o in zip(shards, outs)
        ]
        extract_shards(net.to(dev), settings, work, workers=max(0, threads - 1))
        if draws:
            extract_draws(net, settings, work, draws, workers=max(0, threads - 1))
