"""Reports: per-split metrics, the summary table, the random-weights warning, plots, costs."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from moclip.clip_stream import load_clip
from moclip.heads import HeadSettings, build_head
from moclip.mv_data import MVSettings
from moclip.mv_nets import MVNet
from moclip.report import (
    FULL_PLOT_CLASSES,
    count_gflops,
    method_costs,
    plot_confusion,
    plot_per_class,
    split_metrics,
    summarize_splits,
    summary_html,
    summary_markdown,
    top_confusions,
    worst_classes,
)


def _report(split, top1s):
    return {
        "split": split,
        "failed_videos": [f"bad{split}"],
        "methods": {m: {"top1": t, "top5": min(1, t + 0.1), "per_class_top1": [t]} for m, t in top1s.items()},
    }


def test_summary_mean_spread_and_warning():
    reports = [_report(1, {"mv_only": 0.3, "fusion": 0.9}), _report(2, {"mv_only": 0.5, "fusion": 0.8})]
    costs = {"fusion": {"trainable_parameters": 10, "gflops": 1.5}}
    s = summarize_splits(
        reports, costs, {"model": "m", "pretrained": "none", "weights_digest": "ab" * 8, "random_weights": True}
    )
    assert s["methods"]["fusion"]["top1_mean"] == pytest.approx(0.85)
    assert s["methods"]["fusion"]["top1_sd"] == pytest.approx(0.0707107)  # sample sd of 0.9 and 0.8
    assert s["methods"]["mv_only"]["splits"]["2"]["top1"] == 0.5
    assert s["failed_videos"] == ["bad1", "bad2"] and "random" in s["warning"]
    md = summary_markdown(s)
    assert "WARNING" in md and "| fusion | 0.900 / 1.000 | 0.800 / 0.900 | 0.850 ± 0.071 | 10 | 0.750 / 1.500 |" in md
    assert "Zero-shot: skipped" in md and "bad1, bad2" in md


def test_summary_of_seeded_heads_is_the_mean_over_seeds_with_their_sd():
    """A head's split value is the mean of its seeds (not the first seed), ± their sample sd."""
    reports = []
    for k, seeds in ((1, [0.370, 0.222, 0.241]), (2, [0.5, 0.4, 0.6])):
        m = {
            "top1": seeds[0],
            "top5": 1.0,
            "per_class_top1": [0.5],
            "seeds": [0, 1, 2],
            "top1_seeds": seeds,
            "top1_mean": float(np.mean(seeds)),
            "top1_sd": float(np.std(seeds, ddof=1)),
            "top5_mean": 1.0,
        }
        reports.append({"split": k, "failed_videos": [], "methods": {"clip_linear": m}})
    s = summarize_splits(reports, {}, {"model": "m", "pretrained": "x", "weights_digest": "ab" * 8})
    t = s["methods"]["clip_linear"]
    assert t["splits"]["1"]["top1"] == pytest.approx(0.27767, abs=1e-5)
    assert t["splits"]["1"]["top1_sd_seeds"] == pytest.approx(0.080525, abs=1e-5)
    assert t["top1_mean"] == pytest.approx((0.27767 + 0.5) / 2, abs=1e-5)
    md = summary_markdown(s)
    assert "| clip_linear | 0.278 ± 0.081 / 1.000 | 0.500 ± 0.100 / 1.000 | 0.389 ± 0.157 |" in md
    assert "clip_linear (3 seeds): the mean over seeds ± their sample sd" in md and "first seed" in md


def test_split_metrics_collect_methods_and_failures(tmp_path):
    (tmp_path / "f.tsv").write_text("video_id\tpath\terror\nv9\tx.avi\tempty file\n")
    (tmp_path / "m.json").write_text(
        json.dumps({"top1": 0.5, "top5": 1.0, "per_class_top1": [0.5], "n_test": 2, "secret": 1})
    )
    r = split_metrics(2, {"fusion": str(tmp_path / "m.json")}, tmp_path / "f.tsv", {"seed": 0})
    assert r["split"] == 2 and r["failed_videos"] == ["v9"] and r["methods"]["fusion"]["n_test"] == 2
    assert "secret" not in r["methods"]["fusion"]


def test_reencoded_videos_are_listed_in_split_reports_and_the_summary(tmp_path):
    """decode.reencode_unsupported: the videos cached from a re-encode are named as failed
    videos are; with dataset.reencode (every video) the summary says so in one line."""
    (tmp_path / "f.tsv").write_text("video_id\tpath\terror\n")
    (tmp_path / "r.tsv").write_text("video_id\tpath\tstatus\terror\nv_mjpeg\tA/v.avi\tok\t\nv_vp9\tB/v.mkv\tok\t\n")
    (tmp_path / "m.json").write_text(json.dumps({"top1": 0.5, "top5": 1.0, "per_class_top1": [0.5]}))
    settings = {"dataset": {"reencode": "none"}, "decode": {"reencode_unsupported": True}}
    r = split_metrics(1, {"fusion": str(tmp_path / "m.json")}, tmp_path / "f.tsv", settings, tmp_path / "r.tsv")
    assert r["reencoded_videos"] == ["v_mjpeg", "v_vp9"] and r["failed_videos"] == []
    clip = {"model": "m", "pretrained": "x", "weights_digest": "ab" * 8}
    s = summarize_splits([r], {}, clip)
    assert s["reencoded_videos"] == ["v_mjpeg", "v_vp9"]
    assert "Re-encoded videos (2, no motion vectors in the original): v_mjpeg, v_vp9" in summary_markdown(s)
    r["settings"]["dataset"]["reencode"] = "coviar"
    md = summary_markdown(summarize_splits([r], {}, clip))
    assert "Re-encoded videos (2): every video (dataset.reencode: coviar)" in md and "v_mjpeg" not in md
    # Nothing re-encoded: no line (old reports have no list at all).
    del r["reencoded_videos"]
    assert "Re-encoded" not in summary_markdown(summarize_splits([{**r, "settings": {}}], {}, clip))


def test_confusion_plot_is_a_png(tmp_path):
    p = tmp_path / "pred.tsv"
    p.write_text("video_id\ttrue_class\tclass1\tscore1\na\tA\tA\t1\nb\tB\tA\t1\nc\tB\n")
    plot_confusion(p, ["A", "B"], tmp_path / "c.png", "t")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """(width, height) in pixels, from the PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


MANY = [f"action {i:03d}" for i in range(400)]  # Kinetics' 400 classes


def many_predictions(path) -> tuple[list[str], list[str | None]]:
    """5 test videos a class of ``MANY``, all right but for planted confusions (4, 3, 3, 2 and
    three single ones) and failed videos; written as predictions.tsv, returned (true, pred)."""
    true = [c for c in MANY for _ in range(5)]
    pred: list[str | None] = list(true)
    planted = {  # (true, video of the class) -> predicted
        **{(10, v): 20 for v in range(4)},
        **{(300, v): 1 for v in range(3)},
        **{(5, v): 6 for v in range(3)},
        **{(399, v): 0 for v in range(2)},
        (7, 0): 8,
        (7, 1): 9,
        (2, 0): 399,
    }
    for (t, v), p in planted.items():
        pred[t * 5 + v] = MANY[p]
    for i in (6 * 5, 6 * 5 + 1, 10 * 5 + 4):
        pred[i] = None  # failed: no confusion, however many
    lines = ["video_id\ttrue_class\tclass1\tscore1"]
    lines += [f"v{i}\t{t}\t{p}\t1" if p else f"v{i}\t{t}" for i, (t, p) in enumerate(zip(true, pred))]
    path.write_text("\n".join(lines) + "\n")
    return true, pred


def test_top_confusions_are_the_most_frequent_pairs_in_class_order(tmp_path):
    true, pred = many_predictions(tmp_path / "p.tsv")
    assert top_confusions(true, pred, MANY, 6) == [
        ("action 010", "action 020", 4),
        ("action 005", "action 006", 3),  # ties: in (true, predicted) class order
        ("action 300", "action 001", 3),
        ("action 399", "action 000", 2),
        ("action 002", "action 399", 1),
        ("action 007", "action 008", 1),
    ]
    assert len(top_confusions(true, pred, MANY, 30)) == 7  # only pairs that happened
    assert top_confusions(["A", "B"], ["A", None], ["A", "B"]) == []


def test_worst_classes_are_the_lowest_by_fusion():
    rng = np.random.default_rng(0)
    fusion = list(rng.uniform(0.6, 1.0, 400))
    for i, v in ((17, 0.1), (399, 0.2), (3, 0.3), (250, 0.3), (42, 0.5)):
        fusion[i] = v
    fusion[9] = None  # no test video: not ranked
    mv = [0.0] * 400  # the streams do not rank
    report = {"methods": {"mv_only": {"per_class_top1": mv}, "fusion": {"per_class_top1": fusion}}}
    assert worst_classes(report, 5) == [17, 399, 3, 250, 42]
    assert 9 not in worst_classes(report, 399) and len(worst_classes(report, 400)) == 399
    assert worst_classes({"methods": {"mv_only": {"per_class_top1": [0.5, 0.2, None]}}}, 2) == [1, 0]


@pytest.mark.parametrize("n", [3, FULL_PLOT_CLASSES, 400])
def test_plots_stay_bounded_at_many_classes(tmp_path, n):
    """Up to FULL_PLOT_CLASSES every class is drawn; at Kinetics' 400 the top confusions and the
    worst classes, in a canvas no larger than at 40 classes."""
    classes = MANY[:n]
    true = [c for c in classes for _ in range(3)]
    pred = [classes[(i // 3 + (i % 3 == 0)) % n] for i in range(len(true))]
    (tmp_path / "p.tsv").write_text(
        "video_id\ttrue_class\tclass1\tscore1\n"
        + "".join(f"v{i}\t{t}\t{p}\t1\n" for i, (t, p) in enumerate(zip(true, pred)))
    )
    plot_confusion(tmp_path / "p.tsv", classes, tmp_path / "c.png", "fusion, split 1")
    rng = np.random.default_rng(n)
    report = {"methods": {m: {"per_class_top1": list(rng.random(n))} for m in ("mv_only", "clip_linear", "fusion")}}
    plot_per_class(report, classes, tmp_path / "pc.png", "per-class top-1, split 1")
    for name in ("c.png", "pc.png"):
        w, h = png_size(tmp_path / name)
        assert 300 < w <= 2000 and 250 < h <= 2000, (name, w, h)


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


def test_the_summary_names_the_dataset_and_the_views_it_charged():
    reports = [_report(1, {"mv_only": 0.3, "fusion": 0.9})]
    clip = {"model": "m", "pretrained": "x", "weights_digest": "ab" * 8, "frames_a_video": 1}
    mv = {"eval_segments": 25, "eval_crops": 10, "input_size": 224}
    s = summarize_splits(reports, {}, clip, mv)
    s["dataset"] = {
        "format": "hmdb51",
        "videos_root": "/data/hmdb51_org",
        "classes": 51,
        "videos": 6766,
        "validation": "whole groups named by the video files",
    }
    md = summary_markdown(s)
    assert "Dataset: hmdb51 at `/data/hmdb51_org`, 51 classes, 6,766 videos; validation: whole groups" in md
    assert "the 1 CLIP frame and the 25 segments x 10 crops of 224 px MV maps a method sees" in md
    assert "Dataset: hmdb51 at /data/hmdb51_org" in summary_html(s)
