"""Training the MV network on a split's ``train`` part, selecting its epoch on ``val``, scoring
videos under the test protocol, and its checkpoint (``weights_only`` loadable)."""

from __future__ import annotations

import itertools
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from moclip.io import atomic_path, reading
from moclip.metrics import selection_key
from moclip.mv.augment import augment, augment_generator, crop_views, to_input
from moclip.mv.budgets import EVAL_IMAGES  # network inputs a forward pass at test and feature time
from moclip.mv.data import OPTIMIZERS, EpochOrder, Kept, MVClips, MVItem, MVSettings, mv_loader, trace_on_device
from moclip.mv.nets import MVNet
from moclip.runtime import (
    Progress,
    autocast,
    autocast_dtype,
    log_startup,
    precision_name,
    resolve_device,
    set_determinism,
    synchronize,
)

log = logging.getLogger(__name__)


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in float32, as a product with one-hot targets: the same value as
    ``F.cross_entropy``, with a deterministic backward on CUDA (``nll_loss``'s is not)."""
    logp = F.log_softmax(logits.float(), -1)
    return -(logp * F.one_hot(y, logits.shape[-1]).to(logp.dtype)).sum(-1).mean()


def fuses(device: torch.device | str) -> bool:
    """Whether the optimiser's step is torch's fused kernel on ``device``: on a CUDA card
    (one kernel for all parameters, the step counts on the card: no host sync); elsewhere
    the per-parameter step, so that CPU results stay those of earlier runs bit for bit."""
    return torch.device(device).type == "cuda"


def make_optimizer(model: MVNet, s: MVSettings) -> torch.optim.Optimizer:
    """The optimiser over the model's parameter groups, each at ``lr`` x its multiplier
    (classifier x1), with weight decay on every parameter (as the authors); fused on a
    card (:func:`fuses`)."""
    mult = {"classifier": 1.0, "stem": s.stem_lr_mult, "backbone": s.backbone_lr_mult}
    groups = [
        {"params": ps, "name": k, "lr": s.lr * mult[k], "weight_decay": s.weight_decay}
        for k, ps in model.parameter_groups().items()
        if ps
    ]
    if s.optimizer not in OPTIMIZERS:
        raise ValueError(f"mvnet.optimizer: {s.optimizer!r} (one of {', '.join(OPTIMIZERS)})")
    fused = {"fused": True} if fuses(model_device(model)) else {}
    if s.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=s.lr, momentum=0.9, **fused)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[s.optimizer]
    return cls(groups, lr=s.lr, eps=s.eps, **fused)


@dataclass
class TrainResult:
    state_dict: dict
    best_epoch: int
    history: list[dict]
    seen: dict[str, set[str]] = field(default_factory=dict)  # video ids each loop touched
    precision: str = "float32"  # the arithmetic it trained in
    device: str = "cpu"  # the kind of device it trained on


def eval_images(device: torch.device | str) -> int:
    """Network inputs a forward pass at test and feature time on ``device``: 192 on a CPU
    (EfficientNet-B0 at 224 px: 3.3 GB), 1,000 on a GPU (four 25 x 10-view videos)."""
    return EVAL_IMAGES["cuda" if torch.device(device).type == "cuda" else "cpu"]


def eval_batch_videos(views: int, device: torch.device | str = "cpu") -> int:
    """Videos a loader batch at test and feature time: about :func:`eval_images` inputs, at
    least one video, so memory stays bounded whatever the protocol."""
    return max(1, eval_images(device) // views)


@torch.no_grad()
def view_features(model: MVNet, x: torch.Tensor, s: MVSettings, crops: int) -> torch.Tensor:
    """Maps [B, S, 2, h, w] -> pooled features [B, S, crops, D] (float32) of every test
    view, in forward passes of at most :func:`eval_images` inputs, under the network's
    ``precision`` on ``x``'s device."""
    amp = autocast_dtype(x.device, s.precision)
    v = crop_views(to_input(x, s.input_size), crops)
    with autocast(x.device, amp):
        f = torch.cat([model.features(c).float() for c in v.flatten(0, 2).split(eval_images(x.device))])
    return f.view(*v.shape[:3], -1)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _logits(model: MVNet, loader, s: MVSettings, crops: int) -> np.ndarray:
    """[N, C] video logits, each the mean of its views' logits (segments x crops)."""
    model.eval()
    dev = model_device(model)
    out = []
    for x, _ in loader:  # kept on the device, read once at the end: no batch waits for the card
        f = view_features(model, x.to(dev, non_blocking=True), s, crops)
        out.append(model.classifier(f.flatten(0, 2)).view(*f.shape[:3], -1).mean((1, 2)).float())
    return torch.cat(out).cpu().numpy() if out else np.zeros((0, model.classifier.out_features), np.float32)


def predict_logits(model: MVNet, items: list[MVItem], s: MVSettings, workers: int = 0) -> np.ndarray:
    """[N, C] video logits under the test protocol: ``eval_segments`` x ``eval_crops`` views,
    on the model's device."""
    dev = model_device(model)
    batch = eval_batch_videos(s.eval_views, dev)
    ds = MVClips(items, s, s.eval_segments, traces=trace_on_device(s, dev))
    loader = mv_loader(ds, batch, workers, pin=dev.type == "cuda")
    return _logits(model, loader, s, s.eval_crops)


def train_step(
    model: MVNet,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    x: torch.Tensor,
    y: torch.Tensor,
    s: MVSettings,
    g: torch.Generator | None,
    amp=None,
) -> torch.Tensor:
    """One optimisation step on a batch already on the model's device: maps [B, S, 2, h, w]
    resized to the input size, augmented with ``g``'s draws (None: not at all), the loss
    under autocast ``amp`` (scaled by ``scaler`` for float16). Returns the loss, on the
    device (reading it waits for the step)."""
    x = to_input(x, s.input_size)
    if g is not None:
        x = augment(x, g, s)
    with autocast(x.device, amp):
        loss = cross_entropy(model(x), y)
    opt.zero_grad()
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return loss.detach()


@dataclass
class Training:
    """What a training step needs, built alike for the real loop and its bare ceiling: the
    network on its device (compiled with ``s.compile``), the optimiser and its schedule,
    the gradient scaler (float16 only) and the autocast dtype (None: float32)."""

    model: MVNet
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    amp: torch.dtype | None

    @classmethod
    def build(cls, s: MVSettings, n_classes: int, dev: torch.device, pretrained: bool | str | None = None):
        """``s``'s network and optimiser on ``dev``, under its GPU settings (deterministic
        cuDNN or its benchmark search); ``pretrained`` None: ``s.pretrained``."""
        if dev.type == "cuda":
            set_determinism(s.deterministic)
        amp = autocast_dtype(dev, s.precision)
        model = MVNet(s.arch, n_classes, s.pretrained if pretrained is None else pretrained, s.input_bn).to(dev)
        if s.compile:
            model.compile()  # in place: the forward (and its backward) compiled, the state dict's keys unchanged
        opt = make_optimizer(model, s)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(s.milestones), s.gamma)
        return cls(model, opt, sched, torch.amp.GradScaler(dev.type, enabled=amp == torch.float16), amp)


def train_epoch(t: Training, loader, s: MVSettings, epoch: int) -> tuple[torch.Tensor, float]:
    """One pass over ``loader``'s batches: the steps' losses [steps] (float32, on the
    model's device: nothing in a step waits for the card, the caller reads them once) and
    the seconds spent waiting for batches (the loader, and the copy's start)."""
    dev = model_device(t.model)
    t.model.train()
    wait, losses = 0.0, []
    batches, steps = iter(loader), Progress(f"epoch {epoch} batches", len(loader), log, every=60)
    for step in itertools.count():
        td = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            break
        x, y = batch[0].to(dev, non_blocking=True), batch[1].to(dev, non_blocking=True)
        wait += time.perf_counter() - td
        g = augment_generator(s, epoch, step) if s.augment else None
        losses.append(train_step(t.model, t.opt, t.scaler, x, y, s, g, t.amp))
        if epoch == 0 and step == 0:
            synchronize(dev)  # the first step done: the job's start-up ends here
            log_startup(log)
        if step + 1 < len(loader):  # the epoch's own line says when it is done
            steps.update()  # a line a minute inside a long epoch (a CPU under load)
    return (torch.stack(losses) if losses else torch.zeros(0, device=dev)), wait


def fit_mvnet(
    train: list[MVItem],
    val: list[MVItem],
    n_classes: int,
    s: MVSettings,
    workers: int = 0,
    device: str = "auto",
) -> TrainResult:
    """Train on ``train``, keep the epoch with the best ``val`` top-1 (the last one if no val).

    The caches are read by ``workers`` DataLoader processes (0: in this one), a batch at a
    time; resizing and augmentation run batched on the training ``device``. The arithmetic
    is ``s.precision`` (:func:`moclip.runtime.autocast_dtype`): on a GPU by default
    bfloat16 where the card has it natively, else float16 with a gradient scaler.
    """
    torch.manual_seed(s.seed)
    dev = resolve_device(device)
    t = Training.build(s, n_classes, dev)
    model, opt = t.model, t.opt
    y_val = np.array([v.label for v in val], np.int64)
    best, best_key, best_epoch, history = None, None, -1, []
    seen = {"train": set(), "val": set()}
    pin = dev.type == "cuda"
    order = EpochOrder(len(train), s.seed)
    traces = trace_on_device(s, dev)  # the paper preset on a GPU: its workers ship vectors, traced on the card
    loader = mv_loader(MVClips(train, s, s.segments, s.seed, traces=traces), s.batch_size, workers, order, pin)
    # model selection once an epoch: the training segments' centres, whole maps (cheap, whatever the test
    # protocol), the same every epoch: read once and kept on the device where they fit
    val_batch = eval_batch_videos(s.segments, dev)
    val_loader = (
        Kept(mv_loader(MVClips(val, s, s.segments, traces=traces), val_batch, workers, pin=pin), dev) if val else None
    )
    progress = Progress("epochs", s.epochs, log, every=0)
    for epoch in range(s.epochs):
        t0 = time.perf_counter()
        order.epoch = epoch
        seen["train"].update(train[j].video_id for j in order.order())
        losses, wait = train_epoch(t, loader, s, epoch)
        rec = {
            "epoch": epoch,
            "loss": float(np.mean(losses.cpu().numpy().astype(np.float64))),  # the epoch's one read: it waits
            "lr": opt.param_groups[0]["lr"],  # the classifier's, this epoch
            "lr_groups": {g["name"]: g["lr"] for g in opt.param_groups},
            "seconds": time.perf_counter() - t0,
            "data_wait": wait,
        }
        t.sched.step()
        if val:
            seen["val"].update(v.video_id for v in val)
            logits = _logits(model, val_loader, s, crops=1)
            rec["val_top1"] = float((logits.argmax(1) == y_val).mean())
            rec["val_loss"] = float(cross_entropy(torch.from_numpy(logits), torch.from_numpy(y_val)))
        history.append(rec)
        val_note = f", val top-1 {rec['val_top1']:.4f}, val loss {rec['val_loss']:.4f}" if val else ""
        progress.update(
            note=f"epoch {epoch}: loss {rec['loss']:.4f}{val_note}, {rec['seconds']:.1f} s "
            f"({100 * wait / max(rec['seconds'], 1e-9):.0f}% waiting for data)"
        )
        key = selection_key(epoch, rec.get("val_top1"), rec.get("val_loss"))
        if best_key is None or key > best_key:
            best_key, best_epoch = key, epoch
            best = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return TrainResult(best, best_epoch, history, seen, precision_name(t.amp), dev.type)


# A UCF101-sized video's MV maps (340 x 256 px): the cell grid of 8 px blocks, or the
# pixels when accumulated (mvnet.accumulate); what the bare ceilings feed the network.
CEILING_FRAME = (256, 340)


def _ceiling_maps(s: MVSettings, n: int, segments: int, dev: torch.device, frame, seed: int) -> torch.Tensor:
    """Synthetic maps [n, segments, 2, h, w] on ``dev``, at the frame's cell grid (or its
    pixels with ``s.accumulate``), float32 within +-input_range, as the loader hands them over."""
    h, w = frame if s.accumulate else (frame[0] // 8, frame[1] // 8)
    g = torch.Generator().manual_seed(seed)
    return ((2 * torch.rand(n, segments, 2, h, w, generator=g) - 1) * s.input_range).to(dev)


def _rate(step, work: int, steps: int, warmup: int, dev: torch.device) -> float:
    """``work`` units a second of ``step()`` over ``steps`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(dev)
    return work * steps / max(time.perf_counter() - t0, 1e-9)


def train_ceiling(
    s: MVSettings,
    *,
    device: str = "auto",
    n_classes: int = 101,
    steps: int = 20,
    warmup: int = 5,
    frame: tuple[int, int] = CEILING_FRAME,
) -> float:
    """Training segments a second of the bare training step, the stage's ceiling: ``s``'s
    network (random weights), optimiser, precision, ``compile`` and ``deterministic`` as
    :func:`fit_mvnet` builds them, one :func:`train_step` (resize, augmentation, forward,
    loss, backward, step) at ``s.batch_size`` videos x ``s.segments`` on the same synthetic
    maps [B, S, 2, h, w] already on ``device`` (a ``frame`` = (H, W) video's cell grid, its
    pixels with ``s.accumulate``): no loader, no host sync but at the ends. Timed over
    ``steps`` after ``warmup`` untimed steps (cuDNN's search, ``torch.compile``)."""
    dev = resolve_device(device)
    torch.manual_seed(s.seed)
    t = Training.build(s, n_classes, dev, pretrained=False)
    x = _ceiling_maps(s, s.batch_size, s.segments, dev, frame, s.seed)
    y = torch.randint(n_classes, (s.batch_size,), generator=torch.Generator().manual_seed(s.seed)).to(dev)
    t.model.train()
    counter = itertools.count()

    def step() -> None:
        g = augment_generator(s, 0, next(counter)) if s.augment else None
        train_step(t.model, t.opt, t.scaler, x, y, s, g, t.amp)

    return _rate(step, s.batch_size * s.segments, steps, warmup, dev)


def feature_ceiling(
    s: MVSettings,
    *,
    device: str = "auto",
    n_classes: int = 101,
    steps: int = 10,
    warmup: int = 3,
    frame: tuple[int, int] = CEILING_FRAME,
) -> float:
    """Network inputs (views) a second of the bare feature pass, the ceiling of the test and
    of ``mv_features``: :func:`view_features` (resize, ``s.eval_crops`` views, forward in
    passes of :func:`eval_images`, under ``s.precision``) of ``s``'s network (random weights,
    eval mode) on one loader batch's worth of synthetic maps (:func:`eval_batch_videos`
    videos x ``s.eval_segments``) already on ``device``; timed as :func:`train_ceiling`."""
    dev = resolve_device(device)
    torch.manual_seed(s.seed)
    model = MVNet(s.arch, n_classes, False, s.input_bn).to(dev).eval()
    videos = eval_batch_videos(s.eval_views, dev)
    x = _ceiling_maps(s, videos, s.eval_segments, dev, frame, s.seed)
    return _rate(lambda: view_features(model, x, s, s.eval_crops), videos * s.eval_views, steps, warmup, dev)


def save_checkpoint(path: Path | str, result: TrainResult, s: MVSettings, n_classes: int, split: int) -> None:
    """State dict plus plain metadata: loadable with ``torch.load(..., weights_only=True)``."""
    meta = {
        "settings": json.dumps(asdict(s)),
        "n_classes": n_classes,
        "split": split,
        "best_epoch": result.best_epoch,
        "precision": result.precision,
        "device": result.device,
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: same weights, same bytes
        torch.save({"state_dict": result.state_dict, "meta": meta}, f)


def load_checkpoint(path: Path | str) -> tuple[MVNet, MVSettings, dict]:
    """The frozen network in eval mode (BatchNorm statistics fixed), its settings and metadata."""
    with reading(path):
        ck = torch.load(path, map_location="cpu", weights_only=True)
    settings = json.loads(ck["meta"]["settings"])
    settings.pop("device", None)  # recorded by checkpoints before the device became a machine setting
    s = MVSettings.from_config(settings)
    model = MVNet(s.arch, ck["meta"]["n_classes"], pretrained=False, input_bn=s.input_bn)
    model.load_state_dict(ck["state_dict"])
    model.eval().requires_grad_(False)
    return model, s, ck["meta"]
