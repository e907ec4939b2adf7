"""The report's plots, readable and bounded at any number of classes: confusions, per-class
top-1 of each stream against their fusion, training curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moclip.io import atomic_path, read_json, read_tsv
from moclip.methods import TRAINED


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path | str) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)


def read_predictions(path: Path | str) -> tuple[list[str], list[str | None]]:
    """(true classes, top-1 predicted classes or None for failed videos) from predictions.tsv."""
    rows = read_tsv(path)
    return [r["true_class"] for r in rows], [r.get("class1") or None for r in rows]


# Plots stay readable and bounded at any number of classes (Kinetics' 400 or more): up to
# FULL_PLOT_CLASSES, the whole labelled confusion matrix and every class's bars; above, the
# TOP_CONFUSIONS most frequent confusions and the WORST_CLASSES lowest classes, labelled
# (every class's numbers are in metrics.json and predictions.tsv).
FULL_PLOT_CLASSES = 40


TOP_CONFUSIONS = 30


WORST_CLASSES = 30


MAX_FIGURE_INCHES = 16


PER_CLASS_METHODS = TRAINED  # the streams alone, then the heads (moclip.methods)


FAILED_COLUMN = "(failed)"


def confusion_counts(true: list[str], pred: list[str | None], classes: list[str]) -> np.ndarray:
    """Videos [n, n + 1]: rows the true classes, columns the predicted ones, then the failed videos."""
    idx = {c: i for i, c in enumerate(classes)}
    cm = np.zeros((len(classes), len(classes) + 1), dtype=np.int64)
    for t, p in zip(true, pred):
        cm[idx[t], idx[p] if p else len(classes)] += 1
    return cm


def top_confusions(
    true: list[str], pred: list[str | None], classes: list[str], n: int = TOP_CONFUSIONS
) -> list[tuple[str, str, int]]:
    """The ``n`` most frequent confusions (true class, predicted class, videos), most first, ties
    in (true, predicted) class order; failed videos are no confusion."""
    cm = confusion_counts(true, pred, classes)[:, :-1]
    np.fill_diagonal(cm, 0)
    order = np.argsort(-cm, axis=None, kind="stable")[:n]  # row-major: ties stay in class order
    return [(classes[i], classes[j], int(cm[i, j])) for i, j in zip(*np.unravel_index(order, cm.shape)) if cm[i, j]]


def ranking_method(report: dict) -> str:
    """The method the worst classes are ranked by: fusion, else the last stream present."""
    return [m for m in PER_CLASS_METHODS if m in report["methods"]][-1]


def worst_classes(report: dict, n: int = WORST_CLASSES) -> list[int]:
    """Indices of the ``n`` classes with the lowest per-class top-1 of ``ranking_method``,
    lowest first, ties in class order; classes without test videos are left out."""
    values = report["methods"][ranking_method(report)]["per_class_top1"]
    return [i for _, i in sorted((v, i) for i, v in enumerate(values) if v is not None)[:n]]


def plot_confusion(predictions: Path | str, classes: list[str], out: Path | str, title: str) -> None:
    """The row-normalised confusion matrix, labelled, up to ``FULL_PLOT_CLASSES`` classes; above,
    the ``TOP_CONFUSIONS`` most frequent confusions as labelled bars."""
    true, pred = read_predictions(predictions)
    if len(classes) <= FULL_PLOT_CLASSES:
        _plot_matrix(confusion_counts(true, pred, classes), classes, out, title)
    else:
        support = dict(zip(classes, confusion_counts(true, pred, classes).sum(1)))
        failed = sum(p is None for p in pred)
        _plot_top_confusions(top_confusions(true, pred, classes), support, failed, out, title)


def _plot_matrix(cm: np.ndarray, classes: list[str], out: Path | str, title: str) -> None:
    """Every class against every class (and the failed column), rows normalised to 1."""
    cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    plt = _plt()
    n = len(classes)
    side = min(MAX_FIGURE_INCHES, n * 0.35 + 2)  # grows with the classes, up to a bounded canvas
    fig, ax = plt.subplots(figsize=(max(5, side), max(4, side - 1)))
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fontsize = max(6, 9 - n // 10)
    ax.set_xticks(range(n + 1), [*classes, FAILED_COLUMN], rotation=90, fontsize=fontsize)
    ax.set_yticks(range(n), classes, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}, rows normalised")
    fig.colorbar(im, ax=ax, fraction=0.04)
    _save(fig, out)


def _plot_top_confusions(
    pairs: list[tuple[str, str, int]], support: dict[str, int], failed: int, out: Path | str, title: str
) -> None:
    """One bar a confusion (true -> predicted, most frequent on top): its videos, and in the
    label their share of the true class's test videos."""
    plt = _plt()
    k = max(len(pairs), 1)
    fig, ax = plt.subplots(figsize=(9, min(MAX_FIGURE_INCHES, 0.3 * k + 1.5)))
    y = np.arange(len(pairs))
    counts = [c for _, _, c in pairs]
    ax.barh(y, counts, color="tab:blue")
    ax.set_yticks(y, [f"{t} → {p}" for t, p, _ in pairs], fontsize=8)
    for yi, (t, _, c) in zip(y, pairs):
        ax.text(c, yi, f" {c} ({c / max(support[t], 1):.0%})", va="center", fontsize=7)
    if not pairs:
        ax.text(0.5, 0.5, "no confusions", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylim(k - 0.5, -0.5)  # the most frequent on top
    ax.set_xlim(0, max(counts, default=1) * 1.25)
    ax.set_xlabel("test videos (share of the true class's)")
    note = f"; {failed} failed videos not shown" if failed else ""
    shown = f"the {len(pairs)} most frequent confusions (true → predicted) of {len(support)} classes{note}"
    ax.set_title(f"{title}\n{shown}")
    _save(fig, out)


def plot_per_class(report: dict, classes: list[str], out: Path | str, title: str) -> None:
    """Per-class top-1 of the streams and their fusion: every class up to ``FULL_PLOT_CLASSES``;
    above, the ``WORST_CLASSES`` lowest by fusion (``ranking_method``), labelled."""
    methods = [m for m in PER_CLASS_METHODS if m in report["methods"]]
    seeds = {report["methods"][m].get("seeds", [None])[0] for m in methods} - {None}
    if seeds:  # the heads' numbers are their first seed's model
        title += f" (heads: seed {', '.join(map(str, sorted(seeds)))})"
    values = {m: [v if v is not None else np.nan for v in report["methods"][m]["per_class_top1"]] for m in methods}
    if len(classes) <= FULL_PLOT_CLASSES:
        _plot_every_class(values, classes, out, title)
    else:
        worst = worst_classes(report)
        picked = {m: [v[i] for i in worst] for m, v in values.items()}
        caption = f"{title}\nthe {len(worst)} lowest of {len(classes)} classes by {ranking_method(report)} top-1"
        _plot_worst_classes(picked, [classes[i] for i in worst], out, caption)


def _plot_every_class(values: dict[str, list[float]], classes: list[str], out: Path | str, title: str) -> None:
    """One group of bars a class (one bar a method), classes along x."""
    plt = _plt()
    n = len(classes)
    fig, ax = plt.subplots(figsize=(max(6, min(MAX_FIGURE_INCHES, n * 0.3 + 2)), 4))
    w = 0.8 / max(len(values), 1)
    for j, (m, vals) in enumerate(values.items()):
        ax.bar(np.arange(n) + (j - (len(values) - 1) / 2) * w, vals, w, label=m)
    ax.set_xticks(range(n), classes, rotation=90, fontsize=max(6, 9 - n // 10))
    ax.set_ylabel("top-1")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)  # beside the bars, not on them
    _save(fig, out)


def _plot_worst_classes(values: dict[str, list[float]], classes: list[str], out: Path | str, title: str) -> None:
    """One group of horizontal bars a class (one bar a method), the lowest on top."""
    plt = _plt()
    k = max(len(classes), 1)
    fig, ax = plt.subplots(figsize=(9, min(MAX_FIGURE_INCHES, k * (0.1 * len(values) + 0.1) + 1.5)))
    h = 0.8 / max(len(values), 1)
    for j, (m, vals) in enumerate(values.items()):
        ax.barh(np.arange(len(classes)) + (j - (len(values) - 1) / 2) * h, vals, h, label=m)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_ylim(k - 0.5, -0.5)  # the lowest on top
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("top-1")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    _save(fig, out)


def plot_curves(mv_training: Path | str, head_training: dict[str, Path | str], out: Path | str, title: str) -> None:
    """Training loss and val top-1 a epoch of the MV network and each head's first seed; a
    dot marks the epoch each kept."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    mv = read_json(mv_training)
    curves = [("mv_only", mv["history"], mv["best_epoch"])]
    for name, path in head_training.items():
        first = next(iter(read_json(path).values()))  # the first seed in heads.seeds order
        curves.append((name, first["history"], first["best_epoch"]))
    for name, history, best in curves:
        for ax, key, label in ((axes[0], "loss", f"{name} loss"), (axes[1], "val_top1", name)):
            if not history or key not in history[0]:
                continue
            values = [h[key] for h in history]
            (line,) = ax.plot(values, label=label)
            if 0 <= best < len(values):
                ax.plot([best], [values[best]], "o", color=line.get_color(), markersize=5)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("training loss")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("val top-1")
    for a in axes:
        a.legend(fontsize=8)
    fig.suptitle(title + " (dots: the epoch kept)")
    _save(fig, out)
