"""load_features and moclip export on a results folder laid out as the workflow lays it out
(the workflow's own run: test_workflow.py's export test)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import moclip
from moclip.cli import main
from moclip.dataset.videos import Video, write_manifest
from moclip.features import export_npy, export_table, features_of, load_features
from moclip.shards import pool_frames, pool_segments, write_shard

CLIP_TAG, MV_TAG = "clipA_random-seed0", "tiny-1234abcd"
# (video, class, shard, split1, split2): shards hold their videos out of manifest order, v5 in no part of split 1
VIDEOS = [
    ("v0", "Fall", 1, "train", "test"),
    ("v1", "Fall", 0, "val", "train"),
    ("v2", "Fall", 1, "test", "train"),
    ("v3", "Rise", 0, "train", "test"),
    ("v4", "Rise", 1, "test", "val"),
    ("v5", "Rise", 0, "", "train"),
]
FAILED = "v4"  # its decode failed: NaN rows, not valid


def _rows(labelled: bool = True) -> list[Video]:
    classes = sorted({c for _, c, *_ in VIDEOS})
    return [
        Video(
            v,
            f"{c}/{v}.avi",
            c if labelled else "",
            classes.index(c) if labelled else -1,
            1,
            1,
            shard,
            *((p1, p2, "") if labelled else ("", "", "")),
        )  # fmt: skip
        for v, c, shard, p1, p2 in VIDEOS
    ]


def _shards(folder: Path, k: int, d: int, seed: int, dtype=np.float32) -> dict[str, np.ndarray]:
    """Shard files of every video, in reverse manifest order within a shard; the values written."""
    rng, values = np.random.default_rng(seed), {}
    for shard in (0, 1):
        ids = [v for v, _, s, *_ in reversed(VIDEOS) if s == shard]
        x = rng.normal(size=(len(ids), k, d)).astype(dtype)
        valid = np.array([v != FAILED for v in ids])
        x[~valid] = np.nan
        write_shard(folder / f"shard-{shard:05d}.h5", ids, x, valid, model="m")
        values |= {v: x[i].astype(np.float32) for i, v in enumerate(ids) if valid[i]}
    return values


@pytest.fixture
def run(tmp_path) -> tuple[Path, dict, dict]:
    """A results folder with a manifest, CLIP shards and MV shards of splits 1 and 2."""
    res = tmp_path / "results"
    write_manifest(_rows(), res / "manifest.tsv")
    clip = _shards(res / "embeddings" / "clip" / CLIP_TAG, 4, 8, 0, np.float16)
    mv = {k: _shards(res / "embeddings" / "mv" / MV_TAG / f"split{k}", 3, 16, k) for k in (1, 2)}
    return res, clip, mv


def test_clip_rows_in_manifest_order_with_labels_and_the_shards_values(run):
    res, clip, _ = run
    f = moclip.load_features(res, "clip")
    assert f.ids == ["v0", "v1", "v2", "v3", "v5"] and f.failed == [FAILED]
    assert f.classes == ["Fall", "Rise"] and f.labels.tolist() == [0, 0, 0, 1, 1]
    assert f.unpooled.dtype == np.float32 and f.unpooled.shape == (5, 4, 8)
    np.testing.assert_array_equal(f.unpooled, np.stack([clip[v] for v in f.ids]))
    np.testing.assert_array_equal(f.vectors, pool_frames(f.unpooled))
    assert f.times is None and f.parts is None and f.split is None and f.attrs["model"] == "m"
    assert [p.name for p in f.files] == ["shard-00000.h5", "shard-00001.h5"]


def test_a_split_keeps_its_videos_with_their_parts(run):
    res, _, mv = run
    f = load_features(res, "clip", split=1)
    assert f.ids == ["v0", "v1", "v2", "v3"] and f.parts == ["train", "val", "test", "train"]
    assert f.failed == [FAILED] and f.labels.tolist() == [0, 0, 0, 1]
    m = load_features(res, "mv", split=2)
    assert m.ids == ["v0", "v1", "v2", "v3", "v5"] and m.parts == ["test", "train", "train", "test", "train"]
    np.testing.assert_array_equal(m.unpooled, np.stack([mv[2][v] for v in m.ids]))
    np.testing.assert_array_equal(m.vectors, pool_segments(m.unpooled))
    assert not np.array_equal(load_features(res, "mv", split=1).vectors, load_features(res, "mv", split=2).vectors)


def test_missing_outputs_name_the_folder_and_the_rule(run):
    res, _, _ = run
    with pytest.raises(ValueError, match=rf"{MV_TAG}: a split's network's features \(split1, split2\): pass a split"):
        load_features(res, "mv")
    with pytest.raises(FileNotFoundError, match=rf"{MV_TAG}/split3: no features of split 3 \(rule mv_features"):
        load_features(res, "mv", split=3)
    with pytest.raises(FileNotFoundError, match=r"results/dense: no dense features \(rule dense"):
        load_features(res, "dense_clip")
    with pytest.raises(ValueError, match="stream 'rgb': not one of clip, dense_clip, dense_mv, mv"):
        load_features(res, "rgb")
    (res / "embeddings" / "clip" / CLIP_TAG / "shard-00001.h5").unlink()
    with pytest.raises(FileNotFoundError, match=r"shard-00001.h5: missing \(1 of 2 shards; rule clip_embed"):
        load_features(res, "clip")
    shutil.rmtree(res / "embeddings" / "clip")
    with pytest.raises(FileNotFoundError, match=r"results/embeddings/clip: no clip features \(rule clip_embed"):
        load_features(res, "clip")
    (res / "manifest.tsv").unlink()
    with pytest.raises(FileNotFoundError, match=r"manifest.tsv: no manifest \(rule manifest"):
        load_features(res, "mv", split=1)


def test_shards_of_another_manifest_are_an_error(run):
    res, _, _ = run
    write_manifest(_rows()[:-1], res / "manifest.tsv")  # v5 gone from the manifest, not from the shards
    with pytest.raises(ValueError, match=rf"{CLIP_TAG}: video 'v5' is not in .*manifest.tsv"):
        load_features(res, "clip")
    write_manifest([*_rows(), Video("v6", "Rise/v6.avi", "Rise", 1, 1, 1, 0)], res / "manifest.tsv")
    with pytest.raises(ValueError, match=r"no features of video 'v6' of the manifest \(1 missing\)"):
        load_features(res, "clip")


def test_several_configurations_take_the_tag_given_or_the_reports(run):
    res, clip, _ = run
    other = _shards(res / "embeddings" / "clip" / "clipB", 4, 8, 9)
    with pytest.raises(ValueError, match=rf"several configurations \({CLIP_TAG}, clipB\): pass one as tag="):
        load_features(res, "clip")
    np.testing.assert_array_equal(load_features(res, "clip", tag="clipB").unpooled[0], other["v0"])
    with pytest.raises(FileNotFoundError, match=rf"clipC: no such tag \(the run's: {CLIP_TAG}, clipB\)"):
        load_features(res, "clip", tag="clipC")
    report = res / "reports" / "split1" / "metrics.json"
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({"artefacts": {"fusion_model": f"../../heads/clipB/{MV_TAG}/split1/fusion/model.pt"}}))
    np.testing.assert_array_equal(load_features(res, "clip").unpooled[0], other["v0"])
    assert not np.array_equal(other["v0"], clip["v0"])


def test_an_experiment_reads_what_its_reports_name(run):
    res, clip, mv = run
    report = res / "experiments" / "b" / "reports" / "split1" / "metrics.json"
    report.parent.mkdir(parents=True)
    art = {"clip_embeddings": f"../../../../embeddings/clip/{CLIP_TAG}/shard-00000.h5"}
    report.write_text(json.dumps({"artefacts": art}))
    np.testing.assert_array_equal(load_features(res, "clip", experiment="b").unpooled[0], clip["v0"])
    with pytest.raises(ValueError, match="metrics.json: names no mv_model"):
        load_features(res, "mv", split=1, experiment="b")
    art["mv_model"] = f"../../../../mvnet/{MV_TAG}/split1/model.pt"  # the network of the top level
    report.write_text(json.dumps({"artefacts": art}))
    np.testing.assert_array_equal(load_features(res, "mv", split=1, experiment="b").unpooled[0], mv[1]["v0"])
    own = _shards(res / "experiments" / "b" / "embeddings" / "mv" / MV_TAG / "split1", 3, 16, 5)  # its own features
    np.testing.assert_array_equal(load_features(res, "mv", split=1, experiment="b").unpooled[0], own["v0"])
    with pytest.raises(FileNotFoundError, match=r"experiments/c: no such experiment \(the run's: b\)"):
        load_features(res, "clip", experiment="c")
    with pytest.raises(FileNotFoundError, match=r"split2/metrics.json: no report of experiment 'b'"):
        load_features(res, "clip", split=2, experiment="b")
    with pytest.raises(ValueError, match="experiment or tag, not both"):
        load_features(res, "clip", experiment="b", tag=CLIP_TAG)


def test_a_run_without_labels_has_no_labels_and_no_splits(tmp_path):
    res = tmp_path / "results"
    write_manifest(_rows(labelled=False), res / "manifest.tsv")
    _shards(res / "embeddings" / "mv" / "given-net", 3, 16, 0)  # a folder run's MV features: no split folder
    f = load_features(res, "mv")
    assert len(f.ids) == 5 and f.labels is None and f.classes is None and f.parts is None
    with pytest.raises(ValueError, match="split=1: .* is a run without labels"):
        load_features(res, "mv", split=1)


def test_export_npy_and_table_open_with_numpy_equal_to_load_features(run, tmp_path):
    res, _, _ = run
    clip, mv = load_features(res, "clip", split=1), load_features(res, "mv", split=1)
    out = tmp_path / "npy"
    written = export_npy([clip, mv], out)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)
    assert sorted(p.name for p in written) == sorted(f"{v}_{s}.npy" for v in clip.ids for s in ("clip", "mv"))
    for i, v in enumerate(clip.ids):
        np.testing.assert_array_equal(np.load(out / f"{v}_clip.npy"), clip.unpooled[i])
        np.testing.assert_array_equal(np.load(out / f"{v}_mv.npy"), mv.unpooled[i])
    export_npy([clip], tmp_path / "pooled", pooled=True)
    np.testing.assert_array_equal(np.load(tmp_path / "pooled" / "v2_clip.npy"), clip.vectors[2])
    export_table([clip, mv], tmp_path / "table")
    for f in (clip, mv):
        t = np.load(tmp_path / "table" / f"{f.stream}.npz")  # no pickle: fixed-width strings
        assert t["video_id"].tolist() == f.ids and t["part"].tolist() == f.parts and str(t["stream"]) == f.stream
        assert t["label"].tolist() == f.labels.tolist() and t["classes"].tolist() == ["Fall", "Rise"]
        np.testing.assert_array_equal(t["vector"], f.vectors)
        assert np.isnan(t["start_s"]).all() and np.isnan(t["end_s"]).all()


def test_per_window_rows_export_with_video_features_timestamps(run, tmp_path):
    """A per-window stream (as the dense stage's reader gives): rows of a video in time order,
    its times beside each video's file."""
    res, _, _ = run
    ids = ["v3", "v3", "v3", "v0", "v0"]
    times = np.array([[0, 1], [1, 2], [2, 2.5], [0, 1], [1, 1.75]])
    vectors = np.arange(10, dtype=np.float32).reshape(5, 2)
    f = features_of(res, "dense_clip", ids, vectors, times=times, failed=["v1", "v2", "v4", "v5"])
    assert f.ids == ["v0", "v0", "v3", "v3", "v3"] and f.labels.tolist() == [0, 0, 1, 1, 1]
    np.testing.assert_array_equal(f.times, times[[3, 4, 0, 1, 2]])
    g = features_of(res, "dense_mv", ids, -vectors, times=times, failed=["v1", "v2", "v4", "v5"])
    out = tmp_path / "dense"
    export_npy([f, g], out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{v}_{k}.npy" for v in ("v0", "v3") for k in ("dense_clip", "dense_mv", "timestamps_ms", "windows_ms")
    )
    np.testing.assert_array_equal(np.load(out / "v3_dense_clip.npy"), vectors[:3])
    np.testing.assert_array_equal(np.load(out / "v3_dense_mv.npy"), -vectors[:3])
    np.testing.assert_array_equal(np.load(out / "v3_timestamps_ms.npy"), [500, 1500, 2250])
    np.testing.assert_array_equal(np.load(out / "v0_windows_ms.npy"), [[0, 1000], [1000, 1750]])
    export_table([f], tmp_path / "table")
    t = np.load(tmp_path / "table" / "dense_clip.npz")
    assert t["video_id"].tolist() == f.ids and t["end_s"].tolist() == [1, 1.75, 1, 2, 2.5]
    shifted = features_of(res, "dense_mv", ids, vectors, times=times + 0.5, failed=["v1", "v2", "v4", "v5"])
    with pytest.raises(ValueError, match="v0: stream 'dense_mv' has other window times than another stream"):
        export_npy([f, shifted], tmp_path / "clash")


def test_the_export_command_writes_and_names_bad_input(run, tmp_path, capsys):
    res, _, _ = run
    out = tmp_path / "x"
    assert main(["export", str(res), "--stream", "clip", "mv", "--split", "1", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert (
        said.startswith(f"wrote 8 files (clip, mv of 4 videos) to {out}")
        and f"1 videos without features (failed): {FAILED}" in said
    )
    np.testing.assert_array_equal(np.load(out / "v1_mv.npy"), load_features(res, "mv", split=1).unpooled[1])
    assert main(["export", str(res), "--stream", "mv", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moclip export: error: ") and "pass a split (split=, --split)" in err
    assert main(["export", str(res), "--stream", "clip", "mv", "--tag", CLIP_TAG, "--out", str(out)]) == 2
    assert "--tag names one stream's configuration" in capsys.readouterr().err
