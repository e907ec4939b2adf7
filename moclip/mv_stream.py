"""The motion stream: TSN segments of cached MV maps, a small 2-channel CNN, its training and features.

Everything reads the MV caches; nothing decodes video again. Model selection uses the
``val`` part of a split's training list, never ``test``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import shutil
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from moclip.cache import open_cache, read_index, video_file
from moclip.io import atomic_path, reading, write_json
from moclip.metrics import selection_key, summarize
from moclip.runtime import (
    Progress,
    autocast,
    autocast_dtype,
    log_startup,
    make_deterministic,
    precision_name,
    resolve_device,
    use_threads,
)
from moclip.settings import FromConfig, default, did_you_mean
from moclip.shards import DRAWS, write_shard
from moclip.videos import Video, class_names, read_manifest, split_rows

log = logging.getLogger(__name__)
P, I = ord("P"), ord("I")


OPTIMIZERS = ("adam", "adamw", "sgd")  # mvnet.optimizer
AUGMENT_UNITS = ("segment", "video")  # mvnet.augment_unit: a crop and flip a segment, or one a video
EVAL_CROPS = (1, 10)  # mvnet.eval_crops: the whole map, or 4 corners + centre and their mirrors


@dataclass(frozen=True)
class MVSettings(FromConfig):
    """Everything that shapes the MV network and its features (each a workflow param;
    defaults: config.yaml's ``mvnet``)."""

    arch: str = default("mvnet", "arch")
    pretrained: bool | str = default("mvnet", "pretrained")
    input_bn: bool = default("mvnet", "input_bn")
    input_size: int = default("mvnet", "input_size")
    segments: int = default("mvnet", "segments")
    eval_segments: int = default("mvnet", "eval_segments")
    eval_crops: int = default("mvnet", "eval_crops")
    max_displacement: float = default("mvnet", "max_displacement")
    input_range: float = default("mvnet", "input_range")
    per_frame: bool = default("mvnet", "per_frame")
    accumulate: bool = default("mvnet", "accumulate")
    optimizer: str = default("mvnet", "optimizer")
    lr: float = default("mvnet", "lr")
    stem_lr_mult: float = default("mvnet", "stem_lr_mult")
    backbone_lr_mult: float = default("mvnet", "backbone_lr_mult")
    eps: float = default("mvnet", "eps")
    weight_decay: float = default("mvnet", "weight_decay")
    epochs: int = default("mvnet", "epochs")
    milestones: tuple[int, ...] = default("mvnet", "milestones")
    gamma: float = default("mvnet", "gamma")
    batch_size: int = default("mvnet", "batch_size")
    augment: bool = default("mvnet", "augment")
    augment_scales: tuple[float, ...] | None = default("mvnet", "augment_scales")
    augment_unit: str = default("mvnet", "augment_unit")
    seed: int = 0
    precision: str = default("mvnet", "precision")

    @property
    def eval_views(self) -> int:
        """Network inputs a video at test and feature time: segments x crops."""
        return self.eval_segments * self.eval_crops


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
    mv: np.ndarray,
    frame_type: np.ndarray,
    ref_distance: np.ndarray,
    t: int,
    s: MVSettings,
    cell: int = 8,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """float32 [2, Hc, Wc] for frame ``t``: per-frame displacement on the cell grid; or
    [2, H, W] accumulated back to the GOP's I-frame a pixel (CoViAR's trace, frame size
    ``size``); clipped to +-max_displacement px and scaled to +-input_range."""
    if s.accumulate:
        d = accumulate(mv, frame_type, t, cell, size)
    else:
        d = mv[t].astype(np.float32)
        if s.per_frame and ref_distance[t] > 0:
            d = d / float(ref_distance[t])
    m = s.max_displacement
    return np.clip(d, -m, m).transpose(2, 0, 1) / m * np.float32(s.input_range)


def accumulate(mv: np.ndarray, frame_type: np.ndarray, t: int, cell: int, size: tuple[int, int] | None = None):
    """Displacement of each pixel of frame ``t`` since the GOP's I-frame, traced as CoViAR
    does (``coviar_data_loader.c``): a pixel steps back through each P-frame by the
    whole-pixel vector of the block it sits in (the cached vector truncated toward zero,
    as FFmpeg's integer ``src_x``), and stays put where that step would leave the frame.
    float32 [H, W, 2] for the frame size ``size`` (default: the cell grid's). Vectorised
    over the pixels: ~4 ms for 11 P-frames at 340x256 on one core."""
    hc, wc = mv.shape[1:3]
    h, w = size or (hc * cell, wc * cell)
    y0 = np.repeat(np.arange(h, dtype=np.int32), w)
    x0 = np.tile(np.arange(w, dtype=np.int32), h)
    qy, qx = y0, x0
    for j in range(t, -1, -1):
        if frame_type[j] == I:
            break
        step = np.trunc(mv[j].astype(np.float32)).astype(np.int32).reshape(-1, 2)
        if frame_type[j] != P or not step.any():
            continue
        at = (qy // cell) * wc + qx // cell  # the cell each pixel's trace sits in
        ny, nx = qy - np.take(step[:, 1], at), qx - np.take(step[:, 0], at)
        out = (ny < 0) | (ny >= h) | (nx < 0) | (nx >= w)
        if out.any():
            ny[out], nx[out] = qy[out], qx[out]
        qy, qx = ny, nx
    return np.stack([x0 - qx, y0 - qy], -1).reshape(h, w, 2).astype(np.float32)


# --------------------------------------------------------------------------- data


def gop_start(frame_type: np.ndarray, t: int) -> int:
    """Index of the I-frame that opens frame ``t``'s GOP (0 when there is none before it)."""
    before = np.flatnonzero(frame_type[: t + 1] == I)
    return int(before[-1]) if len(before) else 0


def read_segments(path: Path | str, n_segments: int, s: MVSettings, rng: np.random.Generator | None) -> np.ndarray:
    """float32 [S, 2, Hc, Wc]: the motion maps of one video's segments (see
    :func:`sample_segments`), reading from its MV cache only the frames they need: one frame
    a segment, or with ``accumulate`` the frames back to the segment's I-frame ([S, 2, H, W]:
    a pixel each). Memory is bounded by the segments, whatever the video's length."""
    with open_cache(path) as f:
        frame_type, ref_distance = f["frame_type"][()], f["ref_distance"][()]
        cell, mv = int(f.attrs["mv_cell"]), f["mv"]
        idx = [int(t) for t in sample_segments(frame_type, n_segments, rng)]
        if s.accumulate:
            size = (int(f.attrs["height"]), int(f.attrs["width"]))
            maps = []
            for t in idx:
                a = gop_start(frame_type, t)
                d = slice(a, t + 1)
                maps.append(motion_map(mv[d], frame_type[d], ref_distance[d], t - a, s, cell, size))
            return np.stack(maps)
        frames = sorted(set(idx))
        held = mv[frames]  # h5py reads just these frames (their chunks)
        at = {t: j for j, t in enumerate(frames)}
        return np.stack([motion_map(held, frame_type[frames], ref_distance[frames], at[t], s, cell) for t in idx])


@dataclass(frozen=True)
class MVItem:
    """One video for the motion stream: its MV cache file and label (-1 when unknown)."""

    video_id: str
    path: Path
    label: int = -1


class MVClips(torch.utils.data.Dataset):
    """Videos as TSN samples [S, 2, Hc, Wc], read from their caches by DataLoader workers.

    With a ``seed``, each item's segments are drawn from a generator seeded by (seed, epoch,
    index), so a batch is the same whatever the number of workers; without, the segment
    centres (evaluation and features).
    """

    def __init__(self, items: list[MVItem], s: MVSettings, segments: int, seed: int | None = None, by_id: bool = False):
        self.items, self.s, self.segments, self.seed, self.by_id = items, s, segments, seed, by_id

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        """Item ``key``: (epoch, index) from :class:`EpochOrder`, or an index (epoch 0). With
        ``by_id`` the draws are keyed by the video's id instead of its index, so that they do
        not depend on which other videos share the dataset (feature draws)."""
        epoch, i = key if isinstance(key, tuple) else (0, key)
        it = self.items[i]
        at = video_key(it.video_id) if self.by_id else i
        rng = None if self.seed is None else np.random.default_rng([self.seed, epoch, at])
        return torch.from_numpy(read_segments(it.path, self.segments, self.s, rng)), it.label


def video_key(video_id: str) -> int:
    """A video's stable number for seeding its own draws."""
    return zlib.crc32(video_id.encode("utf-8"))


def _collate(batch: list[tuple[torch.Tensor, int]], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack a batch's maps [B, S, 2, Hc, Wc]; videos of different grids are resized to the
    network input first (on the CPU: the rare mixed-resolution batch)."""
    maps = [m for m, _ in batch]
    if len({m.shape for m in maps}) > 1:
        maps = [_resize(m, size) for m in maps]
    return torch.stack(maps), torch.tensor([y for _, y in batch])


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers read and compute maps; the main process owns the cores for the model


class EpochOrder(torch.utils.data.Sampler):
    """A seeded permutation a training epoch, as (epoch, index) keys: set ``epoch`` before each
    pass, and one loader (and its worker processes) serves every epoch."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def __len__(self) -> int:
        return self.n

    def order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch, self.n]).permutation(self.n)

    def __iter__(self):
        return iter([(self.epoch, int(i)) for i in self.order()])


def mv_loader(
    ds: MVClips, batch_size: int, workers: int, order: EpochOrder | None = None, pin: bool = False, batches=None
):
    """A DataLoader over ``ds`` in ``order`` (None: as listed), or in the given ``batches``
    of keys; its workers live as long as it does."""
    sampling = {"batch_sampler": batches} if batches is not None else {"batch_size": batch_size, "sampler": order}
    return torch.utils.data.DataLoader(
        ds,
        **sampling,
        num_workers=workers,
        collate_fn=functools.partial(_collate, size=ds.s.input_size),
        pin_memory=pin,
        worker_init_fn=_worker_init if workers else None,
        persistent_workers=workers > 0,
    )


def to_input(x: torch.Tensor, size: int) -> torch.Tensor:
    """[B, S, 2, h, w] maps -> the network input [B, S, 2, size, size] (on the maps' device)."""
    b, sg = x.shape[:2]
    return _resize(x.flatten(0, 1).float(), size).view(b, sg, 2, size, size)


def crop_flip(x: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Crop each map of [N, 2, H, W] to ``scale`` (N x 2: width and height fractions) at
    ``offset`` (N x 2: where in the free margin, 0-1), resize it back, and mirror where
    ``flip`` (dx negated): one batched resampling on the maps' device."""
    n = x.shape[0]
    sign = 1.0 - 2.0 * flip.float()
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale[:, 0] * sign
    theta[:, 1, 1] = scale[:, 1]
    theta[:, :, 2] = 2 * offset * (1 - scale) + scale - 1  # the crop's centre, in [-1, 1]
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return torch.cat([out[:, :1] * sign.to(x.device, x.dtype)[:, None, None, None], out[:, 1:]], 1)


def augment(x: torch.Tensor, g: torch.Generator, s: MVSettings) -> torch.Tensor:
    """Random crop (resized back) and horizontal flip that negates dx, for a batch of videos'
    segments [B, S, 2, H, W] on its device; the draws come from ``g`` (a CPU generator).

    The crop takes a fraction of each side: 0.8-1.0 drawn a side, or one of
    ``augment_scales`` for both sides (the authors: 1, 0.875, 0.75). With ``augment_unit:
    video`` a video's segments share the scale and the flip (the authors' clip-level
    augmentation); the crop's position is drawn a segment in both cases.
    """
    return crop_flip(x.flatten(0, 1), *augment_params(*x.shape[:2], s, g)).view(x.shape)


def augment_params(b: int, sg: int, s: MVSettings, g: torch.Generator) -> tuple[torch.Tensor, ...]:
    """The draws of :func:`augment` for ``b`` videos of ``sg`` segments, from ``g``: crop
    scale [b * sg, 2], offset [b * sg, 2] and flip [b * sg]."""
    per = b if s.augment_unit == "video" else b * sg
    if s.augment_scales:
        scales = torch.tensor(s.augment_scales, dtype=torch.float32)
        scale = scales[torch.randint(len(scales), (per,), generator=g)][:, None].expand(per, 2)
    else:
        scale = 0.8 + 0.2 * torch.rand(per, 2, generator=g)
    offset = torch.rand(b * sg, 2, generator=g)
    flip = torch.rand(per, generator=g) < 0.5
    if per != b * sg:
        scale, flip = scale.repeat_interleave(sg, 0), flip.repeat_interleave(sg)
    return scale, offset, flip


CROP_SIDE = 7 / 8  # a test crop's side, as a fraction of the map's: the authors' 224 of 256


def ten_crops(x: torch.Tensor) -> torch.Tensor:
    """[N, 2, H, W] -> [N, 10, 2, H, W]: the 4 corner crops and the centre crop (CROP_SIDE of
    each side, resized back), then the same 5 mirrored (dx negated); the authors' 10-crop test,
    with the mirrors always taken."""
    n = x.shape[0]
    corners = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1], [0.5, 0.5]], dtype=torch.float32)
    offset = corners.repeat(2, 1).repeat(n, 1)
    flip = torch.tensor([False] * 5 + [True] * 5).repeat(n)
    scale = torch.full((n * 10, 2), CROP_SIDE)
    return crop_flip(x.repeat_interleave(10, 0), scale, offset, flip).view(n, 10, *x.shape[1:])


def crop_views(x: torch.Tensor, crops: int) -> torch.Tensor:
    """A batch [B, S, 2, H, W] of network inputs -> its test views [B, S, crops, 2, H, W]."""
    if crops == 1:
        return x[:, :, None]
    if crops == 10:
        return ten_crops(x.flatten(0, 1)).view(*x.shape[:2], 10, *x.shape[2:])
    raise ValueError(f"mvnet.eval_crops: {crops} (one of {EVAL_CROPS})")


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


class MVWeightsError(RuntimeError):
    """ImageNet weights for the MV backbone that cannot be had; the message says how to provide them."""


def check_arch(arch: str, pretrained: bool | str = False) -> None:
    """ValueError unless ``arch`` is ``tiny`` or a timm architecture (naming the nearest) and
    ``pretrained`` names weights timm knows for it or an existing file; cheap (timm's
    registry only): run at parse time."""
    if arch == "tiny":
        if pretrained is not False:
            raise ValueError("mvnet.pretrained: the tiny network has no pretrained weights (set false, or a timm arch)")
        return
    import timm

    names = timm.list_models()
    if arch not in names:
        raise ValueError(f"mvnet.arch: {arch!r} is neither tiny nor a timm architecture{did_you_mean(arch, names)}")
    if pretrained is False:
        return
    if pretrained is True:
        if not timm.list_pretrained(arch):
            raise ValueError(f"mvnet.pretrained: timm has no pretrained weights for {arch}")
        return
    if isinstance(pretrained, str) and _looks_like_file(pretrained):
        if not Path(pretrained).is_file():
            raise ValueError(f"mvnet.pretrained: no such checkpoint file {pretrained!r}")
        return
    tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{arch}.*")]
    if pretrained not in tags:
        raise ValueError(
            f"mvnet.pretrained: {pretrained!r} is neither a file nor a timm tag of {arch}"
            f"{did_you_mean(str(pretrained), tags)} (tags: {', '.join(tags) or 'none'})"
        )


def _looks_like_file(value: str) -> bool:
    return "/" in value or Path(value).suffix in (".pth", ".pt", ".bin", ".safetensors") or Path(value).is_file()


def imagenet_backbone(arch: str, pretrained: bool | str) -> nn.Module:
    """timm ``arch`` with ImageNet weights (``True``: timm's default tag; a tag; or a local
    checkpoint file) and a 2-channel stem initialised as the authors (and CoViAR) do: the
    mean of the pretrained RGB kernels, for both channels."""
    import timm

    if isinstance(pretrained, str) and _looks_like_file(pretrained):
        name, kw = arch, {"pretrained_cfg_overlay": {"file": str(pretrained)}}
    else:
        name, kw = (arch if pretrained is True else f"{arch}.{pretrained}"), {}
    try:
        rgb = timm.create_model(name, pretrained=True, num_classes=0, **kw)
    except Exception as e:  # offline: huggingface_hub / urllib errors; a bad file: torch / safetensors errors
        raise MVWeightsError(
            f"mvnet.pretrained: could not load ImageNet weights {pretrained!r} for {arch}: {type(e).__name__}: {e}\n"
            f"Without network access, on a machine that has it run\n"
            f"  python -c \"import timm, torch; m = timm.create_model('{name}', pretrained=True); "
            f"torch.save(m.state_dict(), '{arch}.pth')\"\n"
            f"then copy {arch}.pth here and set mvnet.pretrained to its path (or copy the Hugging Face cache, "
            "~/.cache/huggingface/hub); or set mvnet.pretrained: false to train from scratch."
        ) from e
    stem = rgb.pretrained_cfg["first_conv"] + ".weight"
    state = rgb.state_dict()
    state[stem] = state[stem].mean(1, keepdim=True).repeat(1, 2, 1, 1)
    net = timm.create_model(arch, pretrained=False, in_chans=2, num_classes=0)
    net.load_state_dict(state)
    return net


def mean_pool(net: nn.Module) -> None:
    """Give a timm backbone's global average pool as a plain mean: the same numbers, and a
    deterministic backward on CUDA (``adaptive_avg_pool2d``'s is not)."""
    from timm.layers import SelectAdaptivePool2d

    pool = getattr(net, "global_pool", None)
    if isinstance(pool, SelectAdaptivePool2d) and pool.pool_type == "avg" and pool.flatten is not None:
        net.global_pool = SelectAdaptivePool2d(pool_type="fast", flatten=not isinstance(pool.flatten, nn.Identity))


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in float32, as a product with one-hot targets: the same value as
    ``F.cross_entropy``, with a deterministic backward on CUDA (``nll_loss``'s is not)."""
    logp = F.log_softmax(logits.float(), -1)
    return -(logp * F.one_hot(y, logits.shape[-1]).to(logp.dtype)).sum(-1).mean()


class MVNet(nn.Module):
    """(Input BatchNorm ->) backbone on 2-channel MV maps -> pooled feature -> linear
    classifier; TSN averages the logits of a video's segments."""

    def __init__(self, arch: str, n_classes: int, pretrained: bool | str = False, input_bn: bool = False):
        super().__init__()
        self.input_bn = nn.BatchNorm2d(2) if input_bn else nn.Identity()
        if arch == "tiny":
            if pretrained is not False:
                raise MVWeightsError("mvnet.pretrained: the tiny network has no pretrained weights (set false)")
            self.backbone = TinyMVNet()
            self.stem = "body.0"
        else:
            import timm

            if pretrained is False:
                self.backbone = timm.create_model(arch, pretrained=False, in_chans=2, num_classes=0)
            else:
                self.backbone = imagenet_backbone(arch, pretrained)
            mean_pool(self.backbone)
            # NHWC weights (and so activations): EfficientNet-B0 on 2 CPU threads ran 1.7x the
            # inputs/s in inference and 1.65x in training against NCHW (same outputs to 2e-11);
            # the layout of timm's and NVIDIA's mixed-precision recipes on GPUs.
            self.backbone.to(memory_format=torch.channels_last)
            self.stem = self.backbone.pretrained_cfg["first_conv"]
        self.classifier = nn.Linear(self.backbone.num_features, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.input_bn(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, S, 2, H, W] -> video logits [B, C] (mean over segments)."""
        b, s = x.shape[:2]
        return self.classifier(self.features(x.flatten(0, 1))).view(b, s, -1).mean(1)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The authors' learning-rate groups: ``classifier``; ``stem`` (the first convolution
        and the input BN); ``backbone`` (every other layer)."""
        groups: dict[str, list[nn.Parameter]] = {"classifier": [], "stem": [], "backbone": []}
        for name, p in self.named_parameters():
            if name.startswith("classifier."):
                groups["classifier"].append(p)
            elif name.startswith(("input_bn.", f"backbone.{self.stem}.")):
                groups["stem"].append(p)
            else:
                groups["backbone"].append(p)
        return groups


def make_optimizer(model: MVNet, s: MVSettings) -> torch.optim.Optimizer:
    """The optimiser over the model's parameter groups, each at ``lr`` x its multiplier
    (classifier x1), with weight decay on every parameter (as the authors)."""
    mult = {"classifier": 1.0, "stem": s.stem_lr_mult, "backbone": s.backbone_lr_mult}
    groups = [
        {"params": ps, "name": k, "lr": s.lr * mult[k], "weight_decay": s.weight_decay}
        for k, ps in model.parameter_groups().items()
        if ps
    ]
    if s.optimizer not in OPTIMIZERS:
        raise ValueError(f"mvnet.optimizer: {s.optimizer!r} (one of {', '.join(OPTIMIZERS)})")
    if s.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=s.lr, momentum=0.9)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[s.optimizer]
    return cls(groups, lr=s.lr, eps=s.eps)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    state_dict: dict
    best_epoch: int
    history: list[dict]
    seen: dict[str, set[str]] = field(default_factory=dict)  # video ids each loop touched
    precision: str = "float32"  # the arithmetic it trained in
    device: str = "cpu"  # the kind of device it trained on


EVAL_IMAGES = {"cpu": 192, "cuda": 1000}  # network inputs a forward pass at test and feature time


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
    for x, _ in loader:
        f = view_features(model, x.to(dev, non_blocking=True), s, crops)
        out.append(model.classifier(f.flatten(0, 2)).view(*f.shape[:3], -1).mean((1, 2)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.classifier.out_features), np.float32)


def predict_logits(model: MVNet, items: list[MVItem], s: MVSettings, workers: int = 0) -> np.ndarray:
    """[N, C] video logits under the test protocol: ``eval_segments`` x ``eval_crops`` views,
    on the model's device."""
    dev = model_device(model)
    batch = eval_batch_videos(s.eval_views, dev)
    loader = mv_loader(MVClips(items, s, s.eval_segments), batch, workers, pin=dev.type == "cuda")
    return _logits(model, loader, s, s.eval_crops)


def augment_generator(s: MVSettings, epoch: int, step: int) -> torch.Generator:
    """The CPU generator of one training step's crops and flips: fixed by (seed, epoch, step)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([s.seed, epoch, step]).generate_state(1)[0]))


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
    if dev.type == "cuda":
        make_deterministic()
    amp = autocast_dtype(dev, s.precision)
    model = MVNet(s.arch, n_classes, s.pretrained, s.input_bn).to(dev)
    opt = make_optimizer(model, s)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(s.milestones), s.gamma)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp == torch.float16)
    y_val = np.array([v.label for v in val], np.int64)
    best, best_key, best_epoch, history = None, None, -1, []
    seen = {"train": set(), "val": set()}
    pin = dev.type == "cuda"
    order = EpochOrder(len(train), s.seed)
    loader = mv_loader(MVClips(train, s, s.segments, s.seed), s.batch_size, workers, order, pin)
    # model selection once an epoch: the training segments' centres, whole maps (cheap, whatever the test protocol)
    val_batch = eval_batch_videos(s.segments, dev)
    val_loader = mv_loader(MVClips(val, s, s.segments), val_batch, workers, pin=pin) if val else None
    progress = Progress("epochs", s.epochs, log, every=0)
    for epoch in range(s.epochs):
        model.train()
        t0, wait, losses = time.perf_counter(), 0.0, []
        order.epoch = epoch
        seen["train"].update(train[j].video_id for j in order.order())
        batches = iter(loader)
        for step in itertools.count():
            td = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break
            x, y = batch[0].to(dev, non_blocking=True), batch[1].to(dev, non_blocking=True)
            wait += time.perf_counter() - td
            g = augment_generator(s, epoch, step) if s.augment else None
            losses.append(train_step(model, opt, scaler, x, y, s, g, amp))  # read once an epoch: no wait a step
            if epoch == 0 and step == 0:
                losses[0].item()  # waits for the first step: the job's start-up ends here
                log_startup(log)
        rec = {
            "epoch": epoch,
            "loss": float(np.mean([float(v) for v in losses])),
            "lr": opt.param_groups[0]["lr"],  # the classifier's, this epoch
            "lr_groups": {g["name"]: g["lr"] for g in opt.param_groups},
            "seconds": time.perf_counter() - t0,
            "data_wait": wait,
        }
        sched.step()
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
    return TrainResult(best, best_epoch, history, seen, precision_name(amp), dev.type)


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
        MVClips([shards[k].items[i] for k, i in todo], s, s.eval_segments),
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
        ds = MVClips(items, s, s.segments, s.seed, by_id=True)
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


def draw_generator(s: MVSettings, draw: int, video_id: str) -> torch.Generator:
    """The CPU generator of one feature draw's crops and flips of one video."""
    state = np.random.SeedSequence([s.seed, draw, video_key(video_id)]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


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


def video_status(indexes: list[Path | str]) -> dict[str, str]:
    """video_id -> cache status (``ok`` or ``failed``) from shard indexes: no cache file opened."""
    return {r.video_id: r.status for p in indexes for r in read_index(p)}


def mv_items(rows: list[Video], mv_dirs: list[Path | str]) -> list[MVItem]:
    """Manifest rows as MV items; ``mv_dirs[k]`` is shard k's cache directory."""
    return [MVItem(r.video_id, video_file(mv_dirs[r.shard], r.video_id), r.label) for r in rows]


# --------------------------------------------------------------------------- stage entry points


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
    shard k's MV cache directory and index; ``threads - 1`` processes read the caches."""
    use_threads(threads)
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
    (one start-up); ``threads - 1`` processes read the caches. With ``draws``, each
    network's training videos (its split's, from ``manifest``) also get that many
    augmented draws (:func:`extract_draws`)."""
    use_threads(threads)
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
        trained = {r.video_id for r in rows if r.split(meta["split"]) == "train"}
        outs = out[i * len(mv) : (i + 1) * len(mv)]
        work = [
            FeatureShard(items, valid, Path(o), np.array([it.video_id in trained for it in items], bool))
            for (items, valid), o in zip(shards, outs)
        ]
        extract_shards(net.to(dev), settings, work, workers=max(0, threads - 1))
        if draws:
            extract_draws(net, settings, work, draws, workers=max(0, threads - 1))
