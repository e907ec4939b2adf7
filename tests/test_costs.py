"""Costs: real FLOPs against hand counts, the paper protocol's 16.9 GMACs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moclip.clip.stream import load_clip
from moclip.costs import count_gflops, method_costs
from moclip.heads import HeadSettings, build_head
from moclip.mv.data import MVSettings
from moclip.mv.nets import MVNet


def vit_macs(image: int, patch: int, width: int, layers: int, heads: int, out_dim: int, mlp_ratio: int = 4) -> int:
    """Multiply-adds of a CLIP ViT image tower, by hand: patch embedding, then each layer's
    QKV projection, attention scores (QK^T), attention-weighted values, output projection
    and MLP, then the class token's projection."""
    n = (image // patch) ** 2 + 1  # patches + class token
    embed = (n - 1) * 3 * patch * patch * width
    layer = n * width * 3 * width + 2 * n * n * width + n * width * width + 2 * n * width * mlp_ratio * width
    return embed + layers * layer + width * out_dim


def test_flops_include_attention_against_a_hand_count():
    """The counter misses nn.MultiheadAttention's inference fast path and fused attention
    kernels unless they are turned off: the project's tiny ViT must count exactly its hand
    count (2 FLOPs a multiply-add), and the setting is restored afterwards."""
    clip = load_clip("moclip-tiny", "none")  # 64 px, patch 8, width 64, 2 layers, 2 heads, 64-d output
    macs = vit_macs(image=64, patch=8, width=64, layers=2, heads=2, out_dim=64)
    assert count_gflops(clip.model.encode_image, torch.zeros(1, 3, 64, 64)) * 1e9 == 2 * macs == 16_523_776
    assert torch.backends.mha.get_fastpath_enabled()


def test_costs_count_real_flops():
    lin = torch.nn.Linear(100, 10)
    assert count_gflops(lin, torch.zeros(1, 100)) == pytest.approx(2 * 100 * 10 / 1e9)
    clip = load_clip("moclip-tiny", "none")
    s = MVSettings(input_size=32)
    mv = MVNet("tiny", 9).eval()
    fusion = build_head("fusion", [64, mv.backbone.num_features], 9, HeadSettings(hidden=32)).eval()
    c = method_costs(clip, mv, s, frames=8, heads={"fusion": (fusion, [64, mv.backbone.num_features])})
    assert c["zeroshot"]["trainable_parameters"] == 0
    per_image = count_gflops(clip.model.encode_image, torch.zeros(1, 3, 64, 64))
    assert c["zeroshot"]["gflops"] == pytest.approx(8 * per_image)
    assert c["fusion"]["gflops"] > c["zeroshot"]["gflops"] + c["mv_only"]["gflops"]
    assert c["fusion"]["trainable_parameters"] == (64 + 128) * 32 + 32 + 32 * 9 + 9
    assert np.isfinite(c["mv_only"]["gflops"]) and c["mv_only"]["gflops"] > 0


def test_the_paper_protocol_costs_the_papers_16_9_in_macs():
    """The paper's "0.97 M trainable parameters, 16.9 GFLOPs": its 32 x 1 MV protocol
    (EfficientNet-B0, 224 px, 2-channel stem) plus one ViT-B-32 frame and the fusion head
    counts 16.6 GMACs (33.2 GFLOPs) here: the paper's figure is MACs. Every test view is
    charged: 25 x 10 costs ten times the MV network's share of 25 x 1."""
    clip = load_clip("ViT-B-32", "none")
    mv = MVNet("efficientnet_b0", 101, input_bn=True).eval()
    dims = [512, mv.backbone.num_features]
    fusion = build_head("fusion", dims, 101, HeadSettings(hidden=512)).eval()
    c32 = method_costs(clip, mv, MVSettings(input_size=224, eval_segments=32), 1, {"fusion": (fusion, dims)})
    assert c32["fusion"]["trainable_parameters"] == 969_829  # the paper's 0.97 M
    assert c32["fusion"]["gflops"] / 2 == pytest.approx(16.6, abs=0.05)
    c250 = method_costs(clip, mv, MVSettings(input_size=224, eval_segments=25, eval_crops=10), 1, {})
    c25 = method_costs(clip, mv, MVSettings(input_size=224, eval_segments=25), 1, {})
    assert c250["mv_only"]["gflops"] == pytest.approx(10 * c25["mv_only"]["gflops"])
    assert c25["mv_only"]["gflops"] / 25 / 2 == pytest.approx(0.381, abs=0.002)  # EfficientNet-B0: 0.38 GMACs
