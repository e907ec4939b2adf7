"""MV augmentation: flips that negate dx, crops, clip-level draws, the 10-crop views."""

from __future__ import annotations

import pytest
import torch

import moclip.mv.augment as mv_augment
from moclip.mv.augment import augment, crop_flip, hflip_mv
from moclip.mv.data import MVSettings


def test_flip_negates_dx_and_mirrors():
    x = torch.zeros(1, 2, 4, 4)
    x[0, 0, 1, 0] = 0.5  # content moving right, on the left edge
    x[0, 1, 1, 0] = 0.25
    y = hflip_mv(x)
    assert y[0, 0, 1, 3] == -0.5 and y[0, 1, 1, 3] == 0.25 and y[0, :, 1, 0].abs().sum() == 0
    g = torch.Generator().manual_seed(0)
    z = augment(torch.ones(16, 4, 2, 8, 8), g, MVSettings()).flatten(0, 1)
    assert ((z[:, 0] < 0).all(dim=(1, 2)).sum() > 10) and (z[:, 1] > 0).all()  # some flipped, dy untouched


def test_crop_flip_is_identity_or_mirror_at_full_scale():
    x = torch.randn(3, 2, 6, 8)
    ones, zeros = torch.ones(3, 2), torch.zeros(3, 2)
    torch.testing.assert_close(crop_flip(x, ones, zeros, torch.zeros(3, dtype=torch.bool)), x)
    torch.testing.assert_close(crop_flip(x, ones, zeros, torch.ones(3, dtype=torch.bool)), hflip_mv(x))
    # A half-width crop at the left edge, resized back: column 0 of the output samples the input's left quarter.
    half = crop_flip(x, torch.tensor([[0.5, 1.0]] * 3), zeros, torch.zeros(3, dtype=torch.bool))
    torch.testing.assert_close(half[..., 0], x[..., 0])


def test_clip_level_augmentation_shares_scale_and_flip_across_segments():
    x = torch.zeros(64, 3, 2, 16, 16)
    x[..., 0, :, :] = torch.linspace(0, 1, 16)  # dx grows to the right: scale and flip are visible
    x[..., 1, :, :] = 1
    s = MVSettings(augment_scales=(1.0, 0.875, 0.75), augment_unit="video")
    y = augment(x, torch.Generator().manual_seed(0), s)
    flipped = y[..., 0, :, :].mean((2, 3)) < 0  # [B, S]
    assert (flipped == flipped[:, :1]).all() and 5 < flipped[:, 0].sum() < 59
    span = (y[..., 0, 8, -1] - y[..., 0, 8, 0]).abs()  # the dx range a crop keeps: its scale
    scale = (span[..., None] - torch.tensor([1.0, 0.875, 0.75])).abs().argmin(-1)  # the nearest (edges resample)
    assert (scale == scale[:, :1]).all() and len(torch.unique(scale)) == 3  # one of the three, a video
    seg = augment(x, torch.Generator().manual_seed(0), MVSettings(augment_scales=(1.0, 0.875, 0.75)))
    seg_flipped = seg[..., 0, :, :].mean((2, 3)) < 0
    assert (seg_flipped != seg_flipped[:, :1]).any()  # a flip a segment otherwise


def test_ten_crops_are_corners_centre_and_their_mirrors():
    x = torch.zeros(1, 2, 16, 16)
    x[0, 0] = torch.arange(16.0)[None, :]  # dx = column
    x[0, 1] = torch.arange(16.0)[:, None]  # dy = row
    v = mv_augment.ten_crops(x)[0]
    assert v.shape == (10, 2, 16, 16)
    col, row = v[:, 0].mean((1, 2)), v[:, 1].mean((1, 2))
    # top-left, top-right, bottom-left, bottom-right, centre: 7/8 of a side, resized back
    assert col[0] < col[4] < col[1] and row[0] < row[4] < row[2] and col[0] == pytest.approx(col[2])
    assert torch.allclose(v[5:, 1], v[:5, 1].flip(-1))  # mirrored: dy mirrored
    assert torch.allclose(v[5:, 0], -v[:5, 0].flip(-1))  # and dx negated
    assert mv_augment.crop_views(x[None], 1).shape == (1, 1, 1, 2, 16, 16)
