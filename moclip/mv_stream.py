"""The motion stream: TSN segments of cached MV maps, a small 2-channel CNN, its training and features.

Everything reads the MV caches; nothing decodes video again. Model selection uses the
``val`` part of a split's training list, never ``test``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from moclip.cache import read_index, read_mv, video_file
from moclip.io import atomic_path, write_json
from moclip.manifest import Video, class_names, read_manifest, split_rows
from moclip.metrics import summarize
from moclip.runtime import resolve_device, use_threads
from moclip.settings import FromConfig
from moclip.shards import write_shard

log = logging.getLogger(__name__)
P, I = ord("P"), ord("I")


@dataclass(frozen=True)
class MVSettings(FromConfig):
    """Everything that shapes the MV network and its features (each a workflow param)."""

    arch: str = "tiny"  # tiny | efficientnet_b0 (timm) | any timm model name
    pretrained: bool = False  # ImageNet weights through timm (needs them in the local cache)
    input_size: int = 64
    segments: int = 3
    eval_segments: int = 3
    max_displacement: float = 20.0  # px; larger displacements are clipped, then scaled to [-1, 1]
    per_frame: bool = True
    accumulate: bool = False
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 30
    milestones: tuple[int, ...] = (20, 25)
    gamma: float = 0.1
    batch_size: int = 32
    augment: bool = True
    seed: int = 0
    device: str = "auto"  # auto: a GPU when there is one (mixed precision), else the CPU


# --------------------------------------------------------------------------- sampling


def candidate_frames(frame_type: np.ndarray) -> np.ndarray:
    """Frames whose vectors are usable: P-frames (I-frames have none; FFmpeg exports zeros
    for MPEG-4 Part 2 B-frames). Videos without any P-frame fall back to every frame."""
    c = np.flatnonzero(frame_type == P)
    return c if len(c) else np.arange(len(frame_type))


def sample_segments(frame_type: np.ndarray, n_segments: int, rng: np.random.Generator | None) -> np.ndarray:
    """One candidate frame in each of ``n_segments`` equal segments of the video.

    Training (``rng`` given): a random candidate of the segment; evaluation (``rng`` None):
    the candidate nearest the segment's centre. A segment without a candidate takes the
    candidate nearest its centre.
    """
    n = len(frame_type)
    cand = candidate_frames(frame_type)
    edges = np.linspace(0, n, n_segments + 1)
    out = np.empty(n_segments, np.int64)
    for s in range(n_segments):
        inside = cand[(cand >= edges[s]) & (cand < edges[s + 1])]
        centre = (edges[s] + edges[s + 1]) / 2
        if rng is not None and len(inside):
            out[s] = inside[rng.integers(len(inside))]
        else:
            pool = inside if len(inside) else cand
            out[s] = pool[np.argmin(np.abs(pool + 0.5 - centre))]
    return out


def motion_map(
    mv: np.ndarray, frame_type: np.ndarray, ref_distance: np.ndarray, t: int, s: MVSettings, cell: int = 8
) -> np.ndarray:
    """float32 [2, Hc, Wc] for frame ``t``: per-frame displacement (or accumulated back to the
    GOP's I-frame), clipped to +-max_displacement px and scaled to [-1, 1]."""
    if s.accumulate:
        d = accumulate(mv, frame_type, t, cell)
    else:
        d = mv[t].astype(np.float32)
        if s.per_frame and ref_distance[t] > 0:
            d = d / float(ref_distance[t])
    m = s.max_displacement
    return np.clip(d, -m, m).transpose(2, 0, 1) / m


def accumulate(mv: np.ndarray, frame_type: np.ndarray, t: int, cell: int) -> np.ndarray:
    """Displacement of each cell of frame ``t`` since the GOP's I-frame (CoViAR): follow the
    vectors back through the P-frames, looking up the cell each trace lands in."""
    hc, wc = mv.shape[1:3]
    py, px = (a.astype(np.float32) for a in np.mgrid[0:hc, 0:wc])
    total = np.zeros((hc, wc, 2), np.float32)
    for j in range(t, -1, -1):
        if frame_type[j] == I:
            break
        if frame_type[j] != P:
            continue
        cy = np.clip(np.rint(py), 0, hc - 1).astype(int)
        cx = np.clip(np.rint(px), 0, wc - 1).astype(int)
        d = mv[j, cy, cx].astype(np.float32)
        total += d
        px, py = px - d[..., 0] / cell, py - d[..., 1] / cell
    return total


# --------------------------------------------------------------------------- data


@dataclass
class VideoMV:
    """What training needs of one video: its candidate maps, in memory."""

    video_id: str
    label: int
    mv: np.ndarray  # float16 [T, Hc, Wc, 2]
    frame_type: np.ndarray
    ref_distance: np.ndarray
    cell: int = 8


def load_video_mv(path: Path | str, video_id: str, label: int) -> VideoMV | None:
    """One MV cache, or None when the video failed to decode."""
    mv, frame_type, ref_distance, attrs = read_mv(path)
    if attrs["status"] != "ok":
        return None
    return VideoMV(video_id, label, mv, frame_type, ref_distance, int(attrs["mv_cell"]))


def video_inputs(v: VideoMV, s: MVSettings, n_segments: int, rng: np.random.Generator | None) -> np.ndarray:
    """float32 [S, 2, Hc, Wc]: the segments' motion maps (augmentation happens on the batch)."""
    idx = sample_segments(v.frame_type, n_segments, rng)
    return np.stack([motion_map(v.mv, v.frame_type, v.ref_distance, int(t), s, v.cell) for t in idx])


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random crop (80-100% of each side, resized back) and horizontal flip that negates dx."""
    n, _, h, w = x.shape
    out = torch.empty_like(x)
    for i in range(n):
        sh = int(h * (0.8 + 0.2 * torch.rand(1, generator=g).item()))
        sw = int(w * (0.8 + 0.2 * torch.rand(1, generator=g).item()))
        top = int(torch.randint(0, h - sh + 1, (1,), generator=g))
        left = int(torch.randint(0, w - sw + 1, (1,), generator=g))
        crop = x[i : i + 1, :, top : top + sh, left : left + sw]
        out[i] = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)[0]
    flip = torch.rand(n, generator=g) < 0.5
    return torch.where(flip[:, None, None, None], hflip_mv(out), out)


def hflip_mv(x: torch.Tensor) -> torch.Tensor:
    """Mirror MV maps [N, 2, H, W] left-right: the content moves the other way, so dx flips sign."""
    y = x.flip(-1).clone()
    y[:, 0] = -y[:, 0]
    return y


# --------------------------------------------------------------------------- network


class TinyMVNet(nn.Module):
    """A small CNN for CPUs and tests: 2 -> 32 -> 64 -> 128 channels, global average pool."""

    def __init__(self, width: int = 32):
        super().__init__()
        layers, c_in = [], 2
        for c in (width, width * 2, width * 4):
            layers += [
                nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.Conv2d(c, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
            ]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.num_features = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean((2, 3))


class MVNet(nn.Module):
    """Backbone on 2-channel MV maps -> pooled feature -> linear classifier; TSN averages
    the logits of a video's segments."""

    def __init__(self, arch: str, n_classes: int, pretrained: bool = False):
        super().__init__()
        if arch == "tiny":
            self.backbone = TinyMVNet()
        else:
            import timm

            self.backbone = timm.create_model(arch, pretrained=pretrained, in_chans=2, num_classes=0)
        self.classifier = nn.Linear(self.backbone.num_features, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, S, 2, H, W] -> video logits [B, C] (mean over segments)."""
        b, s = x.shape[:2]
        return self.classifier(self.features(x.flatten(0, 1))).view(b, s, -1).mean(1)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    state_dict: dict
    best_epoch: int
    history: list[dict]
    seen: dict[str, set[str]] = field(default_factory=dict)  # video ids each loop touched


def _batches(n: int, size: int, rng: np.random.Generator | None):
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, size):
        yield order[i : i + size]


def stack_segments(videos: list[VideoMV], s: MVSettings, segments: int, rng) -> torch.Tensor:
    """[B, S, 2, size, size]: the videos' segment maps, resized to the network input."""
    x = torch.from_numpy(np.stack([video_inputs(v, s, segments, rng) for v in videos]))
    b, sg = x.shape[:2]
    return _resize(x.flatten(0, 1), s.input_size).view(b, sg, 2, s.input_size, s.input_size)


@torch.no_grad()
def predict_logits(model: MVNet, videos: list[VideoMV], s: MVSettings, batch: int = 64) -> np.ndarray:
    """[N, C] video logits from the fixed evaluation segments."""
    model.eval()
    dev = next(model.parameters()).device
    out = [
        model(stack_segments([videos[j] for j in idx], s, s.eval_segments, None).to(dev)).float().cpu().numpy()
        for idx in _batches(len(videos), batch, None)
    ]
    return np.concatenate(out) if out else np.zeros((0, model.classifier.out_features), np.float32)


def fit_mvnet(train: list[VideoMV], val: list[VideoMV], n_classes: int, s: MVSettings) -> TrainResult:
    """Train on ``train``, keep the epoch with the best ``val`` top-1 (the last one if no val)."""
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    g = torch.Generator().manual_seed(s.seed)
    dev = resolve_device(s.device)
    model = MVNet(s.arch, n_classes, s.pretrained).to(dev)
    params = [{"params": model.parameters(), "lr": s.lr, "weight_decay": s.weight_decay}]
    opt = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": lambda p: torch.optim.SGD(p, momentum=0.9)}[
        s.optimizer
    ](params)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(s.milestones), s.gamma)
    y_val = np.array([v.label for v in val])
    best, best_acc, best_epoch, history = None, -1.0, -1, []
    seen = {"train": set(), "val": set()}
    for epoch in range(s.epochs):
        model.train()
        t0, wait, losses = time.perf_counter(), 0.0, []
        for idx in _batches(len(train), s.batch_size, rng):
            td = time.perf_counter()
            vids = [train[j] for j in idx]
            seen["train"].update(v.video_id for v in vids)
            x = stack_segments(vids, s, s.segments, rng)
            if s.augment:
                b, sg = x.shape[:2]
                x = augment(x.flatten(0, 1), g).view(b, sg, *x.shape[2:])
            y = torch.tensor([v.label for v in vids])
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            wait += time.perf_counter() - td
            with torch.autocast(dev.type, enabled=dev.type == "cuda"):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        sched.step()
        rec = {
            "epoch": epoch,
            "loss": float(np.mean(losses)),
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0,
            "data_wait": wait,
        }
        if val:
            seen["val"].update(v.video_id for v in val)
            acc = float((predict_logits(model, val, s).argmax(1) == y_val).mean())
            rec["val_top1"] = acc
        history.append(rec)
        log.info(
            "epoch %d loss %.4f val_top1 %s (%.1f s, %.0f%% waiting for data)",
            epoch,
            rec["loss"],
            rec.get("val_top1"),
            rec["seconds"],
            100 * wait / max(rec["seconds"], 1e-9),
        )
        score = rec.get("val_top1", epoch)  # without val: the last epoch
        if score > best_acc:
            best_acc, best_epoch = score, epoch
            best = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return TrainResult(best, best_epoch, history, seen)


def save_checkpoint(path: Path | str, result: TrainResult, s: MVSettings, n_classes: int, split: int) -> None:
    """State dict plus plain metadata: loadable with ``torch.load(..., weights_only=True)``."""
    meta = {"settings": json.dumps(asdict(s)), "n_classes": n_classes, "split": split, "best_epoch": result.best_epoch}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: same weights, same bytes
        torch.save({"state_dict": result.state_dict, "meta": meta}, f)


def load_checkpoint(path: Path | str) -> tuple[MVNet, MVSettings, dict]:
    """The frozen network in eval mode (BatchNorm statistics fixed), its settings and metadata."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    s = MVSettings.from_config(json.loads(ck["meta"]["settings"]))
    model = MVNet(s.arch, ck["meta"]["n_classes"], pretrained=False)
    model.load_state_dict(ck["state_dict"])
    model.eval().requires_grad_(False)
    return model, s, ck["meta"]


@torch.no_grad()
def extract_features(
    model: MVNet, s: MVSettings, mv_files: list[Path], video_ids: list[str], out: Path | str, batch: int = 64
) -> np.ndarray:
    """Pooled features [N, S_eval, D] of every video at the fixed evaluation segments, written to
    ``out`` with ``video_id`` and a ``valid`` mask (NaN rows for failed videos)."""
    model.eval()
    videos = [load_video_mv(p, v, -1) for p, v in zip(mv_files, video_ids)]
    ok = [i for i, v in enumerate(videos) if v is not None]
    d = model.backbone.num_features
    feats = np.full((len(videos), s.eval_segments, d), np.nan, np.float32)
    for idx in _batches(len(ok), batch, None):
        x = stack_segments([videos[ok[j]] for j in idx], s, s.eval_segments, None)
        b, sg = x.shape[:2]
        feats[[ok[j] for j in idx]] = model.features(x.flatten(0, 1)).view(b, sg, d).numpy()
    valid = np.array([v is not None for v in videos], bool)
    write_shard(out, video_ids, feats, valid, arch=s.arch, eval_segments=s.eval_segments, dim=d)
    return valid


def load_rows(rows: list[Video], mv_dirs: list[Path | str]) -> list[VideoMV | None]:
    """MV caches of manifest rows (None for failed videos); ``mv_dirs[k]`` is shard k's directory."""
    return [load_video_mv(video_file(mv_dirs[r.shard], r.video_id), r.video_id, r.label) for r in rows]


# --------------------------------------------------------------------------- stage entry points


def train_mvnet(
    *,
    manifest: Path | str,
    mv: list[Path | str],
    split: int,
    settings: MVSettings,
    model: Path | str,
    training: Path | str,
    metrics: Path | str,
    threads: int = 1,
) -> dict:
    """Rule ``train_mvnet``: train on the split's ``train`` part, select on ``val``, report
    ``test`` once (the 'MV only' result). ``mv[k]`` is shard k's MV cache directory."""
    use_threads(threads)
    s = settings
    rows = read_manifest(manifest)
    parts = split_rows(rows, split)
    n_classes = len(class_names(rows))
    train = [v for v in load_rows(parts["train"], mv) if v is not None]
    val = [v for v in load_rows(parts["val"], mv) if v is not None]
    log.info(
        "split %d: %d train, %d val videos (failed ones left out), %d test",
        split,
        len(train),
        len(val),
        len(parts["test"]),
    )
    result = fit_mvnet(train, val, n_classes, s)
    save_checkpoint(model, result, s, n_classes, split)
    net, _, _ = load_checkpoint(model)
    test = load_rows(parts["test"], mv)
    ok = [i for i, v in enumerate(test) if v is not None]
    scores = np.full((len(test), n_classes), np.nan, np.float32)
    if ok:
        scores[ok] = predict_logits(net, [test[i] for i in ok], s)
    labels = np.array([r.label for r in parts["test"]], np.int64)
    m = {
        "method": "mv_only",
        "split": split,
        **summarize(scores, labels, n_classes),
        "failed_videos": [parts["test"][i].video_id for i, v in enumerate(test) if v is None],
        "best_epoch": result.best_epoch,
        "selected_on": "val" if val else "last epoch (no val videos)",
    }
    write_json(
        training, {"history": result.history, "best_epoch": result.best_epoch, "n_train": len(train), "n_val": len(val)}
    )
    write_json(metrics, m)
    return m


def mv_features(
    *, models: list[Path | str], mv: Path | str, index: Path | str, out: list[Path | str], threads: int = 1
) -> None:
    """Rule ``mv_features``: one shard's frozen features under each split's network
    (``models[i]`` -> ``out[i]``), reading the shard's caches once a network."""
    use_threads(threads)
    ids = [r.video_id for r in read_index(index)]
    files = [video_file(mv, v) for v in ids]
    for model_file, o in zip(models, out, strict=True):
        net, settings, _ = load_checkpoint(model_file)
        extract_features(net, settings, files, ids, o)
