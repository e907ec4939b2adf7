"""Reports a person reads: per-split metrics, the method x split summary, plots, costs."""

from __future__ import annotations

import html
import logging
from pathlib import Path

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from moclip.cache import read_index
from moclip.clip_stream import Clip, load_clip
from moclip.heads import load_head
from moclip.io import atomic_path, read_json, read_tsv, relative_to, write_json, write_text
from moclip.methods import HEADS, METHODS
from moclip.metrics import sample_sd
from moclip.mv_train import load_checkpoint
from moclip.videos import class_names, read_manifest

log = logging.getLogger(__name__)

RANDOM_CLIP_WARNING = (
    "WARNING: the CLIP weights are random (clip.pretrained: none). Zero-shot is skipped and the "
    "CLIP numbers say nothing about CLIP; set clip.model: ViT-B-32 and clip.pretrained: openai "
    "(or a local checkpoint) for real results."
)


def split_metrics(
    split: int,
    method_files: dict[str, str],
    failures_tsv: Path | str,
    settings: dict,
    reencoded_tsv: Path | str | None = None,
) -> dict:
    """One split's metrics.json: each method present, the failed videos, the videos cached
    from a re-encode (``reencoded_tsv``: rule cache_failures'), the settings."""
    failed = [r.video_id for r in read_index(failures_tsv)]
    reencoded = [r.video_id for r in read_index(reencoded_tsv)] if reencoded_tsv else []
    methods = {}
    for name, path in method_files.items():
        m = read_json(path)
        keep = (
            "top1",
            "top5",
            "per_class_top1",
            "n_test",
            "n_failed",
            "failed_videos",
            "seeds",
            "top1_mean",
            "top1_sd",
            "top1_seeds",
            "top5_mean",
            "top5_sd",
            "top5_seeds",
            "best_epoch",
            "trainable_parameters",
        )
        methods[name] = {k: m[k] for k in keep if k in m}
    return {
        "split": split,
        "methods": methods,
        "failed_videos": failed,
        "reencoded_videos": reencoded,
        "settings": settings,
    }


def split_value(m: dict) -> dict:
    """One method's result on one split: the mean over seeds for a method trained once a
    seed (the heads), with the sample sd over seeds (None with one seed); else its value."""
    return {
        "top1": m.get("top1_mean", m["top1"]),
        "top5": m.get("top5_mean", m["top5"]),
        "top1_sd_seeds": m.get("top1_sd"),
        "seeds": len(m.get("seeds", [0])),
    }


def summarize_splits(reports: list[dict], costs: dict, clip_info: dict, mv_info: dict | None = None) -> dict:
    """Method x split table, costs, the CLIP weights used and the MV test protocol.

    A split's value is the mean over seeds for a method trained once a seed (the heads),
    with the sample sd over seeds; the summary over splits is the mean of the split values
    with their sample sd (None where there is one value).
    """
    table = {}
    for method in METHODS:
        rows = [(r["split"], r["methods"][method]) for r in reports if method in r["methods"]]
        if not rows:
            continue
        splits = {str(k): split_value(m) for k, m in rows}
        top1 = [v["top1"] for v in splits.values()]
        top5 = [v["top5"] for v in splits.values()]
        table[method] = {
            "splits": splits,
            "top1_mean": float(np.mean(top1)),
            "top1_sd": sample_sd(top1),
            "top5_mean": float(np.mean(top5)),
            "top5_sd": sample_sd(top5),
            **costs.get(method, {}),
        }
    failed = sorted({v for r in reports for v in r["failed_videos"]})
    reencoded = sorted({v for r in reports for v in r.get("reencoded_videos", [])})
    out = {
        "methods": table,
        "clip": clip_info,
        "failed_videos": failed,
        "reencoded_videos": reencoded,
        "splits": [r["split"] for r in reports],
    }
    recipes = {r.get("settings", {}).get("dataset", {}).get("reencode", "none") for r in reports} - {"none"}
    if recipes:  # every video re-encoded by this recipe (dataset.reencode)
        out["reencode"] = ", ".join(sorted(recipes))
    if mv_info:
        out["mv"] = mv_info
    if clip_info.get("random_weights"):
        out["warning"] = RANDOM_CLIP_WARNING
    return out


def _pm(value: float, sd: float | None) -> str:
    return f"{value:.3f}" if sd is None else f"{value:.3f} ± {sd:.3f}"


def summary_table(summary: dict) -> tuple[list[str], list[list[str]], list[str]]:
    """The summary as (header, rows of cells, notes): one table model for Markdown and HTML."""
    splits = summary["splits"]
    header = ["method", *(f"split {k} top-1 / top-5" for k in splits)]
    header += ["mean top-1 over splits (± sd)", "trainable params", "GMACs / GFLOPs a video"]
    rows, seeds = [], set()
    for method, t in summary["methods"].items():
        cells = [method]
        for k in map(str, splits):
            v = t["splits"].get(k)
            cells.append(f"{_pm(v['top1'], v['top1_sd_seeds'])} / {v['top5']:.3f}" if v else "-")
            if v and v["seeds"] > 1:
                seeds.add((method, v["seeds"]))
        cells.append(_pm(t["top1_mean"], t["top1_sd"]))
        cells.append(f"{t['trainable_parameters']:,}" if "trainable_parameters" in t else "-")
        cells.append(f"{t['gflops'] / 2:.3f} / {t['gflops']:.3f}" if "gflops" in t else "-")
        rows.append(cells)
    trained = ", ".join(f"{m} ({n} seeds)" for m, n in sorted(seeds))
    notes = [
        "Top-1 / top-5 on each split's test videos. "
        + (
            f"Methods trained once a seed, {trained}: the mean over seeds ± their sample sd (n - 1); "
            "`moclip predict` uses the first seed's model. "
            if seeds
            else ""
        )
        + "Other methods: one model a split. Last column: the mean of the split values ± their sample sd."
    ]
    frames, mv = summary["clip"].get("frames_a_video"), summary.get("mv")
    views = (
        f"{mv['eval_segments']} segments x {mv['eval_crops']} crop{'s' if mv['eval_crops'] > 1 else ''} "
        f"of {mv['input_size']} px MV maps"
        if mv
        else "the MV network's evaluation segments"
    )
    notes.append(
        f"Cost a video: the {frames} CLIP frame{'s' if frames != 1 else ''} and the {views} a method sees, "
        "attention included; a multiply-add is 1 MAC, 2 FLOPs."
    )
    if "zeroshot" not in summary["methods"]:
        notes.append("Zero-shot: skipped (random CLIP weights have no text-image alignment).")
    failed = summary["failed_videos"]
    notes.append(f"Failed videos ({len(failed)}): " + (", ".join(failed) if failed else "none"))
    reencoded = summary.get("reencoded_videos", [])
    if "reencode" in summary:  # dataset.reencode: every video, not worth naming one by one
        notes.append(f"Re-encoded videos ({len(reencoded)}): every video (dataset.reencode: {summary['reencode']})")
    elif reencoded:  # decode.reencode_unsupported: the videos without motion vectors
        notes.append(
            f"Re-encoded videos ({len(reencoded)}, no motion vectors in the original): " + ", ".join(reencoded)
        )
    return header, rows, notes


def _clip_line(summary: dict) -> str:
    c = summary["clip"]
    return f"CLIP: `{c['model']}`, weights `{c['pretrained']}` (digest `{c['weights_digest'][:12]}`)"


def dataset_line(info: dict | None) -> str:
    """The dataset a report describes: format, root, classes, videos, and how validation was held out."""
    if not info:
        return ""
    val = "; ".join(
        f"split {k} {p['val']:,} of {p['train'] + p['val']:,} training videos, {p['val_classes']} classes"
        for k, p in info.get("splits", {}).items()
        if "val_classes" in p
    )
    return (
        f"Dataset: {info['format']} at `{info['videos_root']}`, {info['classes']} classes, {info['videos']:,} videos; "
        f"validation: {info['validation']}{' (' + val + ')' if val else ''}."
    )


def summary_markdown(summary: dict) -> str:
    header, rows, notes = summary_table(summary)
    lines = ["# moclip results", ""]
    if "warning" in summary:
        lines += [f"> {summary['warning']}", ""]
    lines += [line for line in (dataset_line(summary.get("dataset")), _clip_line(summary)) if line] + [""]
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    for n in notes:
        lines += ["", n]
    return "\n".join(lines) + "\n"


def html_table(header: list[str], rows: list[list[str]], notes: list[str] = (), caption: str = "") -> str:
    """A self-contained HTML table (escaped, lightly styled) with notes under it: shown
    inline by Snakemake's report and by any browser."""
    esc = html.escape
    style = (
        "<style>table.moclip{border-collapse:collapse;font:14px sans-serif;margin:8px 0}"
        "table.moclip th,table.moclip td{border:1px solid #bbb;padding:4px 8px;text-align:right}"
        "table.moclip td:first-child,table.moclip th:first-child{text-align:left}"
        "p.moclip{font:13px sans-serif;color:#333}</style>"
    )
    out = [style, '<table class="moclip">']
    if caption:
        out.append(f"<caption>{esc(caption)}</caption>")
    out.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
    out += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows]
    out.append("</table>")
    out += [f'<p class="moclip">{esc(n)}</p>' for n in notes]
    return "\n".join(out) + "\n"


def summary_html(summary: dict) -> str:
    header, rows, notes = summary_table(summary)
    warning = [summary["warning"]] if "warning" in summary else []
    about = [line.replace("`", "") for line in (dataset_line(summary.get("dataset")), _clip_line(summary)) if line]
    return html_table(header, rows, [*warning, *about, *notes])


def split_html(rep: dict) -> str:
    """One split's methods: top-1 (± sd over seeds), top-5, test videos, failed, epoch kept."""
    header = ["method", "top-1", "top-5", "test videos", "failed", "seeds", "epoch kept"]
    rows = []
    for name, m in rep["methods"].items():
        v = split_value(m)
        rows.append(
            [
                name,
                _pm(v["top1"], v["top1_sd_seeds"]),
                f"{v['top5']:.3f}",
                str(m.get("n_test", "-")),
                str(m.get("n_failed", 0)),
                str(v["seeds"]),
                str(m.get("best_epoch", "-")),
            ]
        )
    note = "With more than one seed: the mean over seeds (± their sample sd for top-1); epoch kept: the first seed's."
    about = [dataset_line(rep.get("dataset")).replace("`", "")] if rep.get("dataset") else []
    return html_table(header, rows, [*about, note], caption=f"split {rep['split']}, test videos")


def write_summary(summary: dict, json_out: Path | str, md_out: Path | str, html_out: Path | str) -> None:
    write_json(json_out, summary)
    write_text(md_out, summary_markdown(summary))
    write_text(html_out, summary_html(summary))


# --------------------------------------------------------------------------- plots


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
PER_CLASS_METHODS = ("mv_only", "clip_linear", "fusion")  # the streams, then their fusion
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
    ax.legend(fontsize=8)
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
    ax.legend(fontsize=8, loc="lower right")
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


# --------------------------------------------------------------------------- costs


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
        params = sum(p.numel() for p in head[1].parameters())
        streams = {"clip": clip_g, "mv": mv_g}
        gflops = h_g + sum(g for s, g in streams.items() if HEADS[name].reads(s))
        out[name] = {"trainable_parameters": params, "gflops": gflops}
    return out


# --------------------------------------------------------------------------- stage entry points


def report_split(
    *,
    split: int,
    methods: dict[str, Path | str],
    failures: Path | str,
    manifest: Path | str,
    settings: dict,
    reencoded: Path | str | None = None,
    dataset: Path | str | None = None,
    fusion_predictions: Path | str,
    mv_training: Path | str,
    head_training: dict[str, Path | str],
    artefacts: dict[str, Path | str],
    metrics: Path | str,
    confusion: Path | str,
    per_class: Path | str,
    curves: Path | str,
    table: Path | str,
) -> dict:
    """Rule ``report_split``: one split's ``metrics`` (every method's metrics.json in
    ``methods``, the failed and the ``reencoded`` videos, the settings, the ``dataset``
    summary, and the ``artefacts`` that ``moclip predict`` loads, named relative to the
    report's own directory so a moved run still resolves), its ``table`` (HTML) and its
    three plots."""
    classes = class_names(read_manifest(manifest))
    rep = split_metrics(split, methods, failures, settings, reencoded)
    if dataset:
        rep["dataset"] = read_json(dataset)
    rep["artefacts"] = {k: relative_to(v, Path(metrics).parent) for k, v in artefacts.items()}
    write_json(metrics, rep)
    write_text(table, split_html(rep))
    plot_confusion(fusion_predictions, classes, confusion, f"fusion, split {split} (test)")
    plot_per_class(rep, classes, per_class, f"per-class top-1, split {split}")
    plot_curves(mv_training, head_training, curves, f"training, split {split}")
    for name, m in rep["methods"].items():
        log.info("split %d %s: top-1 %.4f", split, name, split_value(m)["top1"])
    return rep


def summary(
    *,
    reports: list[Path | str],
    model: str,
    pretrained: str,
    seed: int,
    frames: int,
    mv_model: Path | str,
    head_models: dict[str, Path | str],
    json: Path | str,
    md: Path | str,
    html: Path | str,
    dataset: Path | str | None = None,
) -> dict:
    """Rule ``summary``: the method x split table (JSON, Markdown and HTML) with the costs of each
    method (from the first split's models), the CLIP weights used and the ``dataset``
    (the manifest stage's summary)."""
    clip = load_clip(model, pretrained, seed=seed)
    mvnet, mv_settings, _ = load_checkpoint(mv_model)
    heads = {}
    for name in HEADS:
        net, meta = load_head(head_models[name])
        heads[name] = (net, meta["dims"])
    costs = method_costs(clip, mvnet, mv_settings, frames, heads)
    info = {
        "model": clip.name,
        "pretrained": clip.pretrained,
        "weights_digest": clip.weights_digest,
        "random_weights": clip.random_weights,
        "frames_a_video": frames,
    }
    protocol = {k: getattr(mv_settings, k) for k in ("eval_segments", "eval_crops", "input_size")}
    out = summarize_splits([read_json(p) for p in reports], costs, info, protocol)
    if dataset:
        out["dataset"] = read_json(dataset)
    write_summary(out, json, md, html)
    log.info("summary of %d splits written to %s", len(reports), md)
    return out
