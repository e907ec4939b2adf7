"""Augmentation and test views of MV maps, batched on the maps' device: random crops and flips
that negate dx in training and feature draws, the authors' 10-crop test views."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from moclip.mv.data import EVAL_CROPS, MVSettings, resize_maps, video_key


def to_input(x: torch.Tensor, size: int) -> torch.Tensor:
    """[B, S, 2, h, w] maps -> the network input [B, S, 2, size, size] (on the maps' device)."""
    b, sg = x.shape[:2]
    return resize_maps(x.flatten(0, 1).float(), size).view(b, sg, 2, size, size)


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
    # the draws' copies to the card are queued, not waited for (a blocking copy waits for every step before it)
    grid = F.affine_grid(theta.to(x.device, x.dtype, non_blocking=True), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    sign = sign.to(x.device, x.dtype, non_blocking=True)
    return torch.cat([out[:, :1] * sign[:, None, None, None], out[:, 1:]], 1)


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


def augment_generator(s: MVSettings, epoch: int, step: int) -> torch.Generator:
    """The CPU generator of one training step's crops and flips: fixed by (seed, epoch, step)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([s.seed, epoch, step]).generate_state(1)[0]))


def draw_generator(s: MVSettings, draw: int, video_id: str) -> torch.Generator:
    """The CPU generator of one feature draw's crops and flips of one video."""
    state = np.random.SeedSequence([s.seed, draw, video_key(video_id)]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))
