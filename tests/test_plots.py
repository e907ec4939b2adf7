"""Plots: PNGs, bounded and labelled at any number of classes (Kinetics' 400)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from moclip.plots import FULL_PLOT_CLASSES, plot_confusion, plot_per_class, top_confusions, worst_classes


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
