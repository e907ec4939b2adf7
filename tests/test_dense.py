"""The dense stage: windows at a fixed rate along whole videos from the stream's own times,
each with the CLIP stage's embedding of its centre frame and the MV network's feature of
its motion; its config section, its shard files and its failures."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import DEFAULTS, TINY_CONFIG, merged, planned, snakemake

from moclip.clip.stream import ClipSettings, embed_frame_caches
from moclip.dataset.untrimmed import Action, make_untrimmed_videos, write_untrimmed
from moclip.dense import DenseSettings, DenseVideo, dense, read_dense, stream_windows, window_motion
from moclip.dense_plots import clip_change, plot_dense_timeline
from moclip.features import load_features
from moclip.mv.data import MVSettings, motion_map, sample_segments
from moclip.mv.nets import MVNet
from moclip.mv.train import TrainResult, load_checkpoint, save_checkpoint, view_features
from moclip.shards import read_shard
from moclip.video.cache import FrameStorage, cache_shard, video_file
from moclip.video.codec import DecodeSettings, decode_video
from moclip.workflow.checks import check_dense
from moclip.workflow.config import ConfigError, check_config
from moclip.workflow.experiments import experiment_configs

ACTIONS = [Action(3.0, 6.0), Action(12.5, 15.0)]
SCHEMA = "schemas/config.schema.yaml"


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory):
    """20 s with two actions: constant 25 fps (AVI) and a variable rate (Matroska, ms times)."""
    root = tmp_path_factory.mktemp("long videos")
    out = {}
    for vfr in (False, True):
        path = root / f"long-{'vfr' if vfr else 'cfr'}.{'mkv' if vfr else 'avi'}"
        out[vfr] = path, write_untrimmed(path, 20, ACTIONS, vfr=vfr)
    return out


@pytest.fixture(scope="module")
def mv_checkpoint(tmp_path_factory):
    """A frozen tiny MV network (seeded, untrained) as train_mvnet writes one."""
    torch.manual_seed(0)
    s = MVSettings()
    path = tmp_path_factory.mktemp("mvnet") / "model.pt"
    save_checkpoint(path, TrainResult(MVNet(s.arch, 3).state_dict(), 0, []), s, 3, 1)
    return path


@pytest.mark.parametrize("vfr", [False, True], ids=["constant-rate", "variable-rate"])
@pytest.mark.parametrize("every, span", [(1.0, 1.0), (0.5, 2.0)])
def test_one_window_a_step_timed_by_the_streams_own_clock(long_videos, vfr, every, span):
    """One window every ``every`` s over the whole 20 s, [start, start + span) clipped to the
    video's end; its centre frame is the one on screen at start + span / 2 (by the frames'
    own times: a variable rate's frame counts would put it elsewhere); its motion holds
    exactly the frames inside it; and the motion is there in the windows inside the
    generated actions and absent in the windows clear of them."""
    path, times = long_videos[vfr]
    windows = list(stream_windows(path, DenseSettings(every_s=every, window_s=span)))
    n = int(round(20 / every))
    assert len(windows) == n
    np.testing.assert_allclose([w.start for w in windows], np.arange(n) * every)
    np.testing.assert_allclose([w.end for w in windows], np.minimum(np.arange(n) * every + span, 20.0), atol=1e-9)
    for w in windows:
        shown = int(np.searchsorted(times, w.start + span / 2 + 1e-9) - 1)
        assert (w.centre_index, w.centre_time) == (shown, pytest.approx(times[shown]))
        assert len(w.mv) == np.count_nonzero((times >= w.start - 1e-9) & (times < w.end - 1e-9))
        moving = [a for a in ACTIONS if w.start < a.end + 0.1 and a.start < w.end]
        inside = any(a.start <= w.start and w.end <= a.end for a in ACTIONS)
        if inside:
            assert window_motion(w) > 0.05, (w.start, w.end)
        elif not moving:
            assert window_motion(w) < 0.01, (w.start, w.end)


def test_clip_rows_are_the_clip_stages_embeddings_of_the_same_frames(long_videos, mv_checkpoint, tmp_path):
    """The CLIP stage on the same video's frame cache, raw frames (20 frames at the centres
    of 20 equal segments of its 500: frames 12 + 25 k, the centre frames of its one-second
    windows at 25 fps): the dense rows are its embeddings, cosine >= 0.999."""
    path, times = long_videos[False]
    k = 20  # segment centres (k + 0.5) * 500 / 20 = 12.5 + 25 k -> frames 12 + 25 k
    cache_shard(
        videos=[path],
        videos_root=path.parent,
        settings=DecodeSettings(frame_count=k),
        compression="lz4",
        storage=FrameStorage(encoding="raw"),
        mv=tmp_path / "mv",
        frames=tmp_path / "frames",
        index=tmp_path / "index.tsv",
    )
    clip = ClipSettings()
    embed_frame_caches(clip.load(), [video_file(tmp_path / "frames", path.stem)], [path.stem], tmp_path / "clip.h5")
    _, stage, valid, _ = read_shard(tmp_path / "clip.h5")
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text(f"video_id\tpath\n{path.stem}\t{path.name}\n")
    dense(
        videos=[path],
        manifest=manifest,
        model=mv_checkpoint,
        out=tmp_path / "dense.h5",
        videos_root=path.parent,
        settings=DenseSettings(every_s=1.0, window_s=1.0),
        clip=clip,
        device="cpu",
    )
    (d,) = read_dense(tmp_path / "dense.h5").videos
    assert valid.all() and len(d.start) == k
    assert d.centre_index.tolist() == [12 + 25 * i for i in range(k)]
    a, b = d.clip, stage[0].astype(np.float32)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= 0.999, cos


def test_mv_rows_are_the_networks_features_of_each_windows_maps(long_videos, mv_checkpoint, tmp_path):
    """Each window's MV row is the frozen network's feature (mean over its evaluation
    segments) of the maps of the window's frames, as one whole-video decode (the caches')
    gives them: the streaming pass keeps and hands on the right frames' vectors."""
    path, times = long_videos[True]
    maps = []
    whole = decode_video(path, DecodeSettings(), maps.append)
    mv = np.concatenate(maps)
    net, s, _ = load_checkpoint(mv_checkpoint)
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text(f"video_id\tpath\n{path.stem}\t{path.name}\n")
    dense(
        videos=[path],
        manifest=manifest,
        model=mv_checkpoint,
        out=tmp_path / "dense.h5",
        videos_root=path.parent,
        settings=DenseSettings(every_s=1.0, window_s=2.0),
        clip=ClipSettings(),
        device="cpu",
    )
    (d,) = read_dense(tmp_path / "dense.h5").videos
    for w in range(len(d.start)):
        inside = np.flatnonzero((times >= d.start[w] - 1e-9) & (times < d.end[w] - 1e-9))
        ft, ref, part = whole.frame_type[inside], whole.ref_distance[inside], mv[inside]
        x = np.stack([motion_map(part, ft, ref, int(t), s) for t in sample_segments(ft, s.eval_segments, None)])
        with torch.no_grad():
            want = view_features(net, torch.from_numpy(x)[None], s, s.eval_crops).mean((1, 2))[0].numpy()
        np.testing.assert_allclose(d.mv[w], want, rtol=1e-4, atol=1e-5)


def test_a_video_that_cannot_be_read_is_named_and_has_no_rows(long_videos, mv_checkpoint, tmp_path):
    path, _ = long_videos[False]
    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"not a video at all" * 100)
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text(f"video_id\tpath\nbroken\t{bad.name}\n{path.stem}\t{path.name}\n")
    (tmp_path / path.name).symlink_to(path)
    failed = dense(
        videos=[bad, tmp_path / path.name],
        manifest=manifest,
        model=mv_checkpoint,
        out=tmp_path / "dense.h5",
        videos_root=tmp_path,
        settings=DenseSettings(every_s=2.0, window_s=1.0),
        clip=ClipSettings(),
        device="cpu",
    )
    assert list(failed) == ["broken"] and "cannot open" in failed["broken"]
    shard = read_dense(tmp_path / "dense.h5")
    assert shard.failed == failed
    videos = shard.videos
    assert [v.video_id for v in videos] == [path.stem] and len(videos[0].start) == 10
    assert np.isfinite(videos[0].clip).all() and np.isfinite(videos[0].mv).all()


def test_the_timeline_shows_each_videos_windows_and_the_clip_change(tmp_path):
    """clip_change is 1 - cosine to the row before (0, then 1 for an orthogonal row, 0 for a
    scaled copy); the figure is written for a few videos and for none."""
    z = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 5.0]], np.float32)
    np.testing.assert_allclose(clip_change(z), [0, 1, 0], atol=1e-6)
    t = np.arange(5.0)
    v = DenseVideo("a", t, t + 1, t + 0.5, np.arange(5), np.random.default_rng(0).random((5, 4)), np.zeros((5, 3)), t)
    plot_dense_timeline([v, v], tmp_path / "two.png", actions={"a": [(1.0, 2.5)]})
    plot_dense_timeline([], tmp_path / "none.png")
    assert (tmp_path / "two.png").stat().st_size > 5000 and (tmp_path / "none.png").exists()


# --------------------------------------------------------------------------- the config


def _config_file(tmp_path, dense: dict, **more) -> tuple[dict, list]:
    change = {"dense": dense, **more}
    f = tmp_path / "my.yaml"
    f.write_text(yaml.safe_dump(change, sort_keys=False))
    return merged(DEFAULTS, change), [f]


@pytest.mark.parametrize(
    "dense, more, message",
    [
        ({"every_s": 1.0, "mvnet": 4}, {}, "my.yaml:3: dense.mvnet: split 4 is not one of dataset.splits [1, 2, 3]"),
        ({"every_s": 1.0, "mvnet": "no/such.pt"}, {}, "my.yaml:3: dense.mvnet: 'no/such.pt' is not a file"),
        (
            {"every_s": 1.0},
            {"dataset": {"format": "folder"}},
            "dense.mvnet: a folder run trains no MV network: set dense.mvnet (or features.mv_model)",
        ),
        (
            {"every_s": 1.0, "mvnet": 1},
            {"dataset": {"format": "folder"}},
            "my.yaml:3: dense.mvnet: 1: a folder run trains no split's network",
        ),
        ({"every_s": 1.0}, {"dataset": {"reencode": "coviar"}}, "my.yaml:4: dataset.reencode: coviar: the dense"),
    ],
)
def test_a_dense_section_the_run_cannot_serve_names_its_file_and_line(tmp_path, dense, more, message):
    config, sources = _config_file(tmp_path, dense, **more)
    check_config(config, SCHEMA, sources)  # valid by the schema: the run cannot serve it
    with pytest.raises(ConfigError) as e:
        check_dense(config, sources)
    assert message in str(e.value)


@pytest.mark.parametrize(
    "dense, message",
    [
        ({"every_s": 0}, "my.yaml:2: dense.every_s: 0 is less than or equal to the minimum of 0"),
        ({"window_s": "long"}, "my.yaml:2: dense.window_s: 'long' is not of type 'number'"),
        ({"every": 1.0}, "my.yaml:2: unknown key 'dense.every' (did you mean 'every_s'?)"),
    ],
)
def test_a_bad_dense_value_is_one_line_at_its_file_and_line(tmp_path, dense, message):
    config, sources = _config_file(tmp_path, dense)
    with pytest.raises(ConfigError) as e:
        check_config(config, SCHEMA, sources)
    assert str(e.value).startswith(str(tmp_path)) and message in str(e.value)


def test_experiments_cannot_vary_the_dense_stage(tmp_path):
    config, sources = _config_file(tmp_path, {"every_s": None}, experiments={"x": {"dense": {"every_s": 2.0}}})
    with pytest.raises(ConfigError, match="dense"):
        experiment_configs(config, SCHEMA, sources)


def test_the_default_config_plans_no_dense_job_and_dense_adds_one_a_shard(tmp_path):
    """Off by default: the demo's dry-run job list is the one with dense.every_s null said
    outright; dense on adds exactly one job a shard and the timeline plot, and changes no
    other rule's count."""
    off = planned(tmp_path / "off", TINY_CONFIG)
    assert off == planned(tmp_path / "null", merged(TINY_CONFIG, {"dense": {"every_s": None}}))
    assert "dense" not in off
    on = planned(tmp_path / "on", merged(TINY_CONFIG, {"dense": {"every_s": 1.0}}))
    new = ("dense", "dense_plot", "total")
    assert {k: v for k, v in on.items() if k not in new} == {k: v for k, v in off.items() if k != "total"}
    assert (on["dense"], on["dense_plot"]) == (TINY_CONFIG["dataset"]["shards"], 1)


@pytest.mark.workflow
def test_a_folder_run_writes_dense_features_of_its_long_videos_and_reruns_them_on_a_change(tmp_path, mv_checkpoint):
    """The workflow on a folder of two long videos (one at a variable rate): the dense shard
    has a row a window for each, timed as the videos' actions were generated; a finished run
    has nothing to do, and a new window rate reruns the dense job alone."""
    videos = make_untrimmed_videos(tmp_path / "videos", n_videos=2, seconds=8, actions=1, vfr_every=2)
    config = merged(
        TINY_CONFIG,
        {
            "dataset": {"videos": str(tmp_path / "videos"), "format": "folder", "shards": 1},
            "features": {"mv_model": str(mv_checkpoint)},
            "dense": {"every_s": 1.0},
        },
    )
    target = "results/dense/shard-00000.h5"
    snakemake(tmp_path / "run", config, target)
    rows = {v.video_id: v for v in read_dense(tmp_path / "run" / target).videos}
    assert sorted(rows) == ["long-0", "long-1"]
    for name, (action,) in videos:
        d = rows[name]
        np.testing.assert_allclose(d.start, np.arange(8.0))
        inside = (d.start >= action.start) & (d.end <= action.end)
        clear = (d.end <= action.start) | (d.start >= action.end + 0.1)
        assert inside.any() and clear.any()
        assert (d.motion[inside] > 0.05).all() and (d.motion[clear] < 0.01).all()
    # The documented call and moclip export read the same rows: a window a row, times beside.
    res = tmp_path / "run" / "results"
    clip, mv = (load_features(res, s) for s in ("dense_clip", "dense_mv"))
    assert clip.ids == mv.ids == ["long-0"] * 8 + ["long-1"] * 8 and not clip.failed
    np.testing.assert_array_equal(clip.times[:8], np.stack([rows["long-0"].start, rows["long-0"].end], 1))
    np.testing.assert_array_equal(mv.vectors[8:], rows["long-1"].mv)
    np.testing.assert_array_equal(clip.vectors[:8], rows["long-0"].clip.astype(np.float32))
    out = subprocess.run(
        [sys.executable, "-m", "moclip.cli", "export", str(res), "--stream", "dense_clip", "dense_mv", "--out", "x"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "x" / "long-1_dense_mv.npy"), rows["long-1"].mv)
    assert np.load(tmp_path / "x" / "long-1_windows_ms.npy").shape == (8, 2)
    with pytest.raises(ValueError, match="files have no tags"):
        load_features(res, "dense_mv", tag="x")
    assert planned(tmp_path / "run", config, target) == {}
    assert planned(tmp_path / "run", merged(config, {"dense": {"every_s": 2.0}}), target) == {"dense": 1}
