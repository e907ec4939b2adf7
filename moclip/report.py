"""Reports a person reads: per-split metrics and tables, the method x split summary (JSON,
Markdown, HTML). The plots are in :mod:`moclip.plots`, the costs in :mod:`moclip.costs`."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from moclip.dataset.videos import class_names, read_manifest
from moclip.io import read_json, relative_to, write_json, write_text
from moclip.methods import HEADS, METHODS, PRODUCT
from moclip.metrics import sample_sd
from moclip.plots import plot_confusion, plot_curves, plot_per_class
from moclip.tables import html_table, markdown_table
from moclip.video.cache import read_index

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
    cut_tsv: Path | str | None = None,
) -> dict:
    """One split's metrics.json: each method present, the failed videos, the videos cached
    from a re-encode (``reencoded_tsv``: rule cache_failures'), those read only up to
    decode.max_frames with the frames each leaves out (``cut_tsv``, the same rule's), the settings."""
    failed = [r.video_id for r in read_index(failures_tsv)]
    reencoded = [r.video_id for r in read_index(reencoded_tsv)] if reencoded_tsv else []
    cut = [cut_entry(r) for r in read_index(cut_tsv)] if cut_tsv else []
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
        "cut_videos": cut,
        "settings": settings,
    }


def cut_entry(rec) -> dict:
    """A cut video as the reports hold it: its id, the frames cached and the frames left out."""
    return {"video_id": rec.video_id, "n_frames": rec.n_frames, "frames_left_out": rec.frames_left_out}


def cut_line(cut: list[dict]) -> str:
    """The reports' note on the videos read only up to decode.max_frames ("" when none)."""
    if not cut:
        return ""
    each = ", ".join(
        f"{c['video_id']} ({c['frames_left_out']:,} of {c['n_frames'] + c['frames_left_out']:,})" for c in cut
    )
    return f"Cut videos ({len(cut)}), read only up to decode.max_frames (frames left out of the video's): {each}"


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
    cut = sorted(
        {c["video_id"]: c for r in reports for c in r.get("cut_videos", [])}.values(), key=lambda c: c["video_id"]
    )
    out = {
        "methods": table,
        "clip": clip_info,
        "failed_videos": failed,
        "reencoded_videos": reencoded,
        "cut_videos": cut,
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
        + "Other methods: one model a split. Mean top-1 over splits: the mean of the split values ± their sample sd."
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
    tags = summary["clip"].get("tags")
    if tags:
        notes.append(f"From the tag directories: CLIP {tags['clip']}, MV network {tags['mv']} (docs/outputs.md).")
    notes.append(f"Failed videos ({len(failed)}): " + (", ".join(failed) if failed else "none"))
    reencoded = summary.get("reencoded_videos", [])
    if "reencode" in summary:  # dataset.reencode: every video, not worth naming one by one
        notes.append(f"Re-encoded videos ({len(reencoded)}): every video (dataset.reencode: {summary['reencode']})")
    elif reencoded:  # decode.reencode_unsupported: the videos without motion vectors
        notes.append(
            f"Re-encoded videos ({len(reencoded)}, no motion vectors in the original): " + ", ".join(reencoded)
        )
    if line := cut_line(summary.get("cut_videos", [])):
        notes.append(line)
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
    lines += markdown_table(header, rows)
    for n in notes:
        lines += ["", n]
    return "\n".join(lines) + "\n"


def summary_html(summary: dict) -> str:
    header, rows, notes = summary_table(summary)
    about = [line for line in (dataset_line(summary.get("dataset")), _clip_line(summary)) if line]
    return html_table(header, rows, [*about, *notes], warning=summary.get("warning", ""))


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
    cut = [line] if (line := cut_line(rep.get("cut_videos", []))) else []
    return html_table(header, rows, [*about, note, *cut], caption=f"split {rep['split']}, test videos")


def write_summary(summary: dict, json_out: Path | str, md_out: Path | str, html_out: Path | str) -> None:
    write_json(json_out, summary)
    write_text(md_out, summary_markdown(summary))
    write_text(html_out, summary_html(summary))


def report_split(
    *,
    split: int,
    methods: dict[str, Path | str],
    failures: Path | str,
    manifest: Path | str,
    settings: dict,
    reencoded: Path | str | None = None,
    cut: Path | str | None = None,
    dataset: Path | str | None = None,
    product_predictions: Path | str,
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
    ``methods``, the failed, the ``reencoded`` and the ``cut`` videos, the settings, the ``dataset``
    summary, and the ``artefacts`` that ``moclip predict`` loads, named relative to the
    report's own directory so a moved run still resolves), its ``table`` (HTML) and its
    three plots."""
    classes = class_names(read_manifest(manifest))
    rep = split_metrics(split, methods, failures, settings, reencoded, cut)
    if dataset:
        rep["dataset"] = read_json(dataset)
    rep["artefacts"] = {k: relative_to(v, Path(metrics).parent) for k, v in artefacts.items()}
    write_json(metrics, rep)
    write_text(table, split_html(rep))
    plot_confusion(product_predictions, classes, confusion, f"{PRODUCT}, split {split} (test)")
    plot_per_class(rep, classes, per_class, f"per-class top-1, split {split}")
    plot_curves(mv_training, head_training, curves, f"training, split {split}")
    for name, m in rep["methods"].items():
        log.info("split %d %s: top-1 %.4f", split, name, split_value(m)["top1"])
    return rep


def summary(
    *,
    reports: list[Path | str],
    clip_shard: Path | str,
    frames: int,
    mv_model: Path | str,
    head_models: dict[str, Path | str],
    json: Path | str,
    md: Path | str,
    html: Path | str,
    dataset: Path | str | None = None,
) -> dict:
    """Rule ``summary``: the method x split table (JSON, Markdown and HTML) with the costs of each
    method (from the first split's models), the CLIP weights used (as ``clip_shard``, an
    embedding shard of the run, records them), the tag directories the rows came from and
    the ``dataset`` (the manifest stage's summary)."""
    # torch and open_clip only here: report_split, a job a split, imports this module without them
    from moclip.clip.stream import ClipSettings
    from moclip.costs import method_costs
    from moclip.heads import load_head
    from moclip.mv.train import load_checkpoint

    clip = ClipSettings.of_shard(clip_shard).load()
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
        "tags": {"clip": Path(clip_shard).parent.name, "mv": Path(mv_model).parents[1].name},
    }
    protocol = {k: getattr(mv_settings, k) for k in ("eval_segments", "eval_crops", "input_size")}
    out = summarize_splits([read_json(p) for p in reports], costs, info, protocol)
    if dataset:
        out["dataset"] = read_json(dataset)
    write_summary(out, json, md, html)
    log.info("summary of %d splits written to %s", len(reports), md)
    return out
