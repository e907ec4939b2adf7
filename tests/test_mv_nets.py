"""MV networks: the ImageNet start and its 2-channel stem, weights checked, deterministic ops."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import moclip.mv.nets as mv_nets
import moclip.mv.train as mv_train
from moclip.mv.nets import MVNet


def test_imagenet_start_has_the_mean_rgb_stem_and_the_input_bn(rgb_checkpoint):
    path, rgb = rgb_checkpoint
    model = mv_nets.MVNet("efficientnet_b0", 5, pretrained=str(path), input_bn=True)
    stem = model.backbone.conv_stem.weight
    assert stem.shape[1] == 2
    expect = rgb["conv_stem.weight"].mean(1)
    assert torch.equal(stem[:, 0], expect) and torch.equal(stem[:, 1], expect)
    assert torch.equal(model.backbone.blocks[3][0].conv_pw.weight, rgb["blocks.3.0.conv_pw.weight"])  # the rest loaded
    assert isinstance(model.input_bn, torch.nn.BatchNorm2d) and model.input_bn.num_features == 2
    x = torch.randn(1, 1, 2, 32, 32)
    assert model.eval()(x).shape == (1, 5)
    # the BN normalises each channel of the maps before the stem: in training mode, the
    # stem sees zero-mean unit-variance input whatever the maps' scale
    seen = []
    model.backbone.conv_stem.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    model.train()(torch.randn(4, 2, 2, 32, 32) * 7 + 3)
    assert seen[0].mean((0, 2, 3)).abs().max() < 1e-5 and (seen[0].std((0, 2, 3)) - 1).abs().max() < 1e-2


def test_a_broken_weights_file_says_how_to_provide_the_weights(tmp_path):
    bad = tmp_path / "efficientnet_b0.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(mv_nets.MVWeightsError) as e:
        mv_nets.MVNet("efficientnet_b0", 5, pretrained=str(bad))
    assert "mvnet.pretrained" in str(e.value) and "torch.save" in str(e.value) and "efficientnet_b0" in str(e.value)


def test_weights_checked_against_timm_at_parse_time(tmp_path):
    mv_nets.check_arch("efficientnet_b0", True)
    mv_nets.check_arch("efficientnet_b0", "ra_in1k")
    with pytest.raises(ValueError, match="tag of efficientnet_b0.*ra_in1k"):
        mv_nets.check_arch("efficientnet_b0", "ra_in1kk")
    with pytest.raises(ValueError, match="no such checkpoint file"):
        mv_nets.check_arch("efficientnet_b0", str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="tiny network has no pretrained"):
        mv_nets.check_arch("tiny", True)


def test_deterministic_ops_give_the_same_numbers_as_torchs():
    """The CUDA-deterministic forms used in training (mean pool, one-hot cross-entropy)
    compute what torch's own ops do."""
    z, y = torch.randn(6, 4, requires_grad=True), torch.randint(4, (6,))
    torch.testing.assert_close(mv_train.cross_entropy(z, y), F.cross_entropy(z, y))
    g1 = torch.autograd.grad(mv_train.cross_entropy(z, y), z)[0]
    g2 = torch.autograd.grad(F.cross_entropy(z, y), z)[0]
    torch.testing.assert_close(g1, g2)
    net = MVNet("efficientnet_b0", 3)
    assert net.backbone.global_pool.pool_type == "fast"
