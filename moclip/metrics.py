"""Classification metrics shared by every method: top-k, per-class top-1, prediction tables.

A video without a score (failed to decode) counts as a miss: its row of scores is NaN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moclip.io import write_tsv


def topk_hits(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """bool [N]: the true label is among the k highest scores (NaN rows: never)."""
    valid = ~np.isnan(scores).any(axis=1)
    top = np.argsort(-np.nan_to_num(scores, nan=-np.inf), axis=1, kind="stable")[:, :k]
    return valid & (top == labels[:, None]).any(axis=1)


def per_class_top1(scores: np.ndarray, labels: np.ndarray, n_classes: int) -> list[float | None]:
    """Top-1 of each class (None for a class with no test video)."""
    hit = topk_hits(scores, labels, 1)
    return [float(hit[labels == c].mean()) if (labels == c).any() else None for c in range(n_classes)]


def summarize(scores: np.ndarray, labels: np.ndarray, n_classes: int) -> dict:
    return {
        "top1": float(topk_hits(scores, labels, 1).mean()) if len(labels) else None,
        "top5": float(topk_hits(scores, labels, min(5, n_classes)).mean()) if len(labels) else None,
        "per_class_top1": per_class_top1(scores, labels, n_classes),
        "n_test": int(len(labels)),
        "n_failed": int(np.isnan(scores).any(axis=1).sum()),
    }


def write_predictions(
    path: Path | str, video_ids: list[str], labels: np.ndarray, scores: np.ndarray, class_names: list[str], top: int = 5
) -> None:
    """One row a video: id, true class, then the top classes with their scores (empty if failed)."""
    top = min(top, len(class_names))

    def rows():
        for vid, y, s in zip(video_ids, labels, scores):
            row = [vid, class_names[y]]
            if not np.isnan(s).any():
                for j in np.argsort(-s, kind="stable")[:top]:
                    row += [class_names[j], f"{s[j]:.4f}"]
            yield row

    write_tsv(
        path, ["video_id", "true_class"] + [c for i in range(1, top + 1) for c in (f"class{i}", f"score{i}")], rows()
    )


def sample_sd(values) -> float | None:
    """The sample standard deviation (n - 1), or None for fewer than two values."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def selection_key(epoch: int, val_top1: float | None, val_loss: float | None) -> tuple:
    """How every trained model picks its epoch: best val top-1, ties broken by lower val loss,
    then by the later epoch; without val, the last epoch."""
    if val_top1 is None:
        return (epoch,)
    return (val_top1, -val_loss, epoch)
