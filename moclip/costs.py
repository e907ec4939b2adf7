"""What a method costs a video: trainable parameters and inference GFLOPs, counted by
``torch.utils.flop_counter`` over the real networks."""

from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from moclip.clip.stream import Clip
from moclip.methods import HEADS


def count_gflops(fn, *args) -> float:
    """GFLOPs of one call, counted by torch's FlopCounterMode (a multiply-add counts 2 FLOPs,
    1 MAC). Attention is counted: nn.MultiheadAttention's inference fast path and the fused
    attention kernels are invisible to the counter (ViT-B-32 counted 5.9 GFLOPs instead of
    8.8), so they are turned off while counting and attention runs as plain matrix products."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            fn(*args)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return counter.get_total_flops() / 1e9


def method_costs(clip: Clip, mvnet, mv_settings, frames: int, heads: dict) -> dict:
    """Trainable parameters and inference GFLOPs a video of each method.

    A video's CLIP cost is ``frames`` images; its MV cost is the test protocol's views,
    ``eval_segments`` x ``eval_crops`` maps (one counted, all alike).
    """
    x = torch.zeros(1, 3, clip.image_size, clip.image_size)
    clip_g = count_gflops(clip.model.encode_image, x) * frames
    m = torch.zeros(1, 1, 2, mv_settings.input_size, mv_settings.input_size)
    mv_g = count_gflops(mvnet, m) * mv_settings.eval_views
    out = {
        "zeroshot": {"trainable_parameters": 0, "gflops": clip_g},
        "mv_only": {"trainable_parameters": sum(p.numel() for p in mvnet.parameters()), "gflops": mv_g},
    }
    for name, (head, dims) in heads.items():
        h_g = count_gflops(head, torch.zeros(1, sum(dims)))
        params = sum(p.numel() for p in head.net.parameters())
        streams = {"clip": clip_g, "mv": mv_g}
        gflops = h_g + sum(g for s, g in streams.items() if HEADS[name].reads(s))
        out[name] = {"trainable_parameters": params, "gflops": gflops}
    return out
