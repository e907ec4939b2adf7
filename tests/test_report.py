"""Reports: per-split metrics, the summary table, the random-weights warning."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moclip.report import split_html, split_metrics, summarize_splits, summary_html, summary_markdown


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


def test_cut_videos_are_listed_with_the_frames_left_out_in_split_reports_and_the_summary(tmp_path):
    """decode.max_frames: the videos cache_failures lists in cut.tsv are named in each
    split's metrics and table and in the summary's Markdown and HTML, with the frames each
    leaves out of its own; none cut, no line."""
    (tmp_path / "f.tsv").write_text("video_id\tpath\terror\n")
    (tmp_path / "r.tsv").write_text("video_id\tpath\tstatus\terror\n")
    (tmp_path / "c.tsv").write_text(
        "video_id\tpath\tn_frames\tframes_left_out\nv_long\tA/v_long.avi\t10000\t5000\nv_x\tB/v_x.mkv\t10000\t3\n"
    )
    (tmp_path / "m.json").write_text(json.dumps({"top1": 0.5, "top5": 1.0, "per_class_top1": [0.5], "n_test": 2}))
    args = 1, {"fusion": str(tmp_path / "m.json")}, tmp_path / "f.tsv", {}, tmp_path / "r.tsv"
    r = split_metrics(*args, tmp_path / "c.tsv")
    assert r["cut_videos"] == [
        {"video_id": "v_long", "n_frames": 10000, "frames_left_out": 5000},
        {"video_id": "v_x", "n_frames": 10000, "frames_left_out": 3},
    ]
    line = (
        "Cut videos (2), read only up to decode.max_frames (frames left out of the video's): "
        "v_long (5,000 of 15,000), v_x (3 of 10,003)"
    )
    assert line in split_html(r)
    clip = {"model": "m", "pretrained": "x", "weights_digest": "ab" * 8}
    s = summarize_splits([r, {**r, "split": 2}], {}, clip)  # each split lists the run's cut videos: named once
    assert s["cut_videos"] == r["cut_videos"]
    assert line in summary_markdown(s) and line in summary_html(s)
    (tmp_path / "c.tsv").write_text("video_id\tpath\tn_frames\tframes_left_out\n")
    none = split_metrics(*args, tmp_path / "c.tsv")
    assert none["cut_videos"] == [] and "Cut videos" not in split_html(none)
    assert "Cut videos" not in summary_markdown(summarize_splits([none], {}, clip))


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
    assert "Dataset: hmdb51 at <code>/data/hmdb51_org</code>" in summary_html(s)  # a path shows as code


def test_the_html_summary_styles_its_warning_and_shows_names_as_code():
    reports = [_report(1, {"mv_only": 0.3, "fusion": 0.9})]
    clip = {"model": "moclip-tiny", "pretrained": "none", "random_weights": True, "weights_digest": "ab" * 8}
    page = summary_html(summarize_splits(reports, {}, clip))
    warning = page.index('<p class="moclip-warning" role="alert">WARNING: the CLIP weights are random')
    assert warning < page.index("<table")
    assert "<code>" in page and "`" not in page
