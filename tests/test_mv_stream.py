"""The motion stream's stages: no test leakage, the paper preset, features and draws on their device."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from conftest import gop_videos, synthetic_videos

import moclip.mv.augment as mv_augment
import moclip.mv.data as mv_data
import moclip.mv.stream as mv_stream
import moclip.mv.train as mv_train
from moclip.dataset.manifest import build_manifest
from moclip.dataset.videos import Video, write_manifest
from moclip.mv.augment import augment_params, crop_flip, to_input
from moclip.mv.data import MVItem, MVSettings, read_segments
from moclip.mv.stream import extract_features, train_mvnet
from moclip.mv.train import fit_mvnet, load_checkpoint, model_device, save_checkpoint
from moclip.shards import DRAWS, read_shard
from moclip.video.cache import CacheRecord, cache_shard, write_index
from moclip.video.codec import DecodeSettings

META = torch.device("meta")


@pytest.fixture(scope="module")
def demo_caches(tiny_demo, tmp_path_factory):
    videos, lists = tiny_demo
    root = tmp_path_factory.mktemp("mvcache")
    rows = build_manifest(videos, lists, splits=[1], val_groups=1, num_shards=2)
    write_manifest(rows, root / "manifest.tsv")
    for shard in (0, 1):
        cache_shard(
            videos=[videos / r.path for r in rows if r.shard == shard],
            videos_root=videos,
            settings=DecodeSettings(),
            compression="lz4",
            mv=root / f"mv{shard}",
            frames=root / f"fr{shard}",
            index=root / f"index{shard}.tsv",
            threads=2,
        )
    return rows, root


def train_split1(root: Path, s: MVSettings, out: Path) -> dict:
    """``train_mvnet`` on split 1 of the demo caches: m.pt, log.json, met.json in ``out``."""
    return train_mvnet(
        manifest=root / "manifest.tsv",
        mv=[root / "mv0", root / "mv1"],
        index=[root / "index0.tsv", root / "index1.tsv"],
        split=1,
        settings=s,
        model=out / "m.pt",
        training=out / "log.json",
        metrics=out / "met.json",
    )


def test_no_test_video_reaches_training_or_selection(demo_caches, tmp_path, monkeypatch):
    rows, root = demo_caches
    s = MVSettings(epochs=2, milestones=(1,), input_size=32)
    results = []
    monkeypatch.setattr(mv_stream, "fit_mvnet", lambda *a: results.append(fit_mvnet(*a)) or results[-1])
    metrics = train_split1(root, s, tmp_path)
    (result,) = results
    parts = {p: {r.video_id for r in rows if r.split1 == p} for p in ("train", "val", "test")}
    assert result.seen["train"] == parts["train"] and result.seen["val"] == parts["val"]
    assert not (result.seen["train"] | result.seen["val"]) & parts["test"]
    assert metrics["n_test"] == len(parts["test"]) and metrics["selected_on"] == "val"
    log = json.loads((tmp_path / "log.json").read_text())
    assert len(log["history"]) == 2 and all("val_top1" in h for h in log["history"])
    # The checkpoint loads with weights_only=True and gives frozen, deterministic features.
    model, s2, meta = load_checkpoint(tmp_path / "m.pt")
    assert s2 == s and not model.training and meta["split"] == 1
    ids = [r.video_id for r in rows if r.shard == 0][:4]
    items = [MVItem(v, root / "mv0" / f"{v}.h5") for v in ids]
    valid = np.array([True, False, True, True])  # a failed video's cache is never read
    extract_features(model, s2, items, valid, tmp_path / "f1.h5")
    bn = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    extract_features(model, s2, items, valid, tmp_path / "f2.h5", batch=3, workers=2)
    assert all(torch.equal(bn[k], model.state_dict()[k]) for k in bn)  # BatchNorm statistics frozen
    assert (tmp_path / "f1.h5").read_bytes() == (tmp_path / "f2.h5").read_bytes()
    _, feats, got_valid, _ = read_shard(tmp_path / "f1.h5")
    assert list(got_valid) == list(valid) and np.isnan(feats[1]).all() and not np.isnan(feats[[0, 2, 3]]).any()


def test_a_short_run_of_the_paper_presets_mv_training(demo_caches, rgb_checkpoint, tmp_path):
    """config/ucf101-paper.yaml's MV recipe on the demo's caches, shrunk only in size and
    length (64 px, 2 epochs, 2 x 10 test views): it trains from the (local) ImageNet
    checkpoint with the authors' optimiser groups, and tests on every view."""
    rows, root = demo_caches
    preset = yaml.safe_load((Path(__file__).parents[1] / "config" / "ucf101-paper.yaml").read_text())["mvnet"]
    shrink = dict(pretrained=str(rgb_checkpoint[0]), epochs=2, milestones=[1], input_size=64, batch_size=8)
    s = MVSettings.from_config({**preset, **shrink, "eval_segments": 2, "seed": 0})
    assert (s.input_bn, s.augment_unit, s.eval_crops, s.accumulate) == (True, "video", 10, True)
    metrics = train_split1(root, s, tmp_path)
    history = json.loads((tmp_path / "log.json").read_text())["history"]
    assert history[0]["lr_groups"] == pytest.approx({"classifier": 0.01, "stem": 1e-3, "backbone": 1e-4})
    assert history[1]["lr_groups"] == pytest.approx({"classifier": 1e-3, "stem": 1e-4, "backbone": 1e-5})
    assert metrics["n_test"] == sum(r.split1 == "test" for r in rows) and 0 <= metrics["top1"] <= 1
    model, s2, _ = load_checkpoint(tmp_path / "m.pt")
    assert s2 == s and model.backbone.conv_stem.weight.shape[1] == 2 and "input_bn.running_mean" in model.state_dict()


def test_mv_features_honours_the_device(tmp_path, monkeypatch):
    """The features stage runs each split's network on the configured device (it used to
    stay on the CPU whatever mvnet.device said)."""
    items = synthetic_videos(tmp_path, 1, 0)
    s = MVSettings(epochs=1, milestones=(1,), batch_size=3, input_size=16)
    result = fit_mvnet(items, [], 3, s, device="cpu")
    save_checkpoint(tmp_path / "m.pt", result, s, 3, 1)
    index = tmp_path / "index.tsv"
    write_index([CacheRecord(it.video_id, it.path.name, "ok", 24, "") for it in items], index)
    run = dict(models=[tmp_path / "m.pt"], mv=[tmp_path], index=[index], out=[tmp_path / "f.h5"], device="meta")
    seen = []
    monkeypatch.setattr(mv_stream, "extract_shards", lambda model, *a, **k: seen.append(model_device(model)))
    mv_stream.mv_features(**run)
    assert seen == [META]
    monkeypatch.undo()
    with pytest.raises(NotImplementedError, match="meta"):  # the real thing: runs there up to reading back
        mv_stream.mv_features(**run)


def test_several_shards_and_networks_in_one_job_equal_one_job_a_shard(tmp_path):
    """A GPU job takes every shard (one start-up): one loader over all their videos must
    give each shard's file exactly what a job of its own writes, failed rows included,
    for every network, outputs network-major."""
    items = synthetic_videos(tmp_path / "v", 3, 0)  # 9 videos
    s = MVSettings(epochs=1, milestones=(1,), batch_size=3, input_size=16, eval_segments=2)
    for split in (1, 2):
        result = fit_mvnet(items, [], 3, replace(s, seed=split), device="cpu")
        save_checkpoint(tmp_path / f"m{split}.pt", result, replace(s, seed=split), 3, split)
    shards = [items[:4], items[4:5], items[5:]]
    indexes = []
    for j, sh in enumerate(shards):
        indexes.append(tmp_path / f"index{j}.tsv")
        status = ["failed" if (j, k) == (0, 1) else "ok" for k in range(len(sh))]
        write_index([CacheRecord(it.video_id, it.path.name, st, 24, "") for it, st in zip(sh, status)], indexes[-1])
    models = [tmp_path / "m1.pt", tmp_path / "m2.pt"]
    together = [tmp_path / f"all-{i}-{j}.h5" for i in range(2) for j in range(3)]
    mv_stream.mv_features(models=models, mv=[tmp_path / "v"] * 3, index=indexes, out=together, device="cpu", threads=2)
    for i in range(2):
        for j in range(3):
            alone = tmp_path / f"one-{i}-{j}.h5"
            one = dict(models=[models[i]], mv=[tmp_path / "v"], index=[indexes[j]], out=[alone], device="cpu")
            mv_stream.mv_features(**one)
            a, b = read_shard(together[i * 3 + j]), read_shard(alone)
            assert a[0] == b[0] and (a[2] == b[2]).all() and a[3] == b[3]
            np.testing.assert_array_equal(a[1], b[1])
    assert not read_shard(together[0])[2][1] and np.isnan(read_shard(together[0])[1][1]).all()


def test_feature_draws_are_augmented_training_views_fixed_by_video_and_draw(tmp_path, monkeypatch):
    """With draws, each training video of a network's split gets that many pooled features
    of randomly drawn, augmented training segments (the views the authors' fusion head saw,
    fresh each epoch): different from each other and from the evaluation feature, fixed by
    (seed, draw, video) whatever the shard and batch, and NaN for every other row."""
    items = synthetic_videos(tmp_path / "v", 2, 0)  # 6 videos
    s = MVSettings(epochs=1, milestones=(1,), batch_size=3, input_size=16, augment_scales=(1.0, 0.75))
    save_checkpoint(tmp_path / "m.pt", fit_mvnet(items, [], 3, s, device="cpu"), s, 3, 1)
    rows = [
        Video(it.video_id, f"{it.video_id}.avi", "c", it.label, i, 0, 0, split1="train" if i < 4 else "test")
        for i, it in enumerate(items)
    ]
    write_manifest(rows, tmp_path / "manifest.tsv")
    shards = [items[:3], items[3:]]
    for j, sh in enumerate(shards):
        write_index([CacheRecord(it.video_id, it.path.name, "ok", 24, "") for it in sh], tmp_path / f"i{j}.tsv")
    run = dict(models=[tmp_path / "m.pt"], mv=[tmp_path / "v"] * 2, manifest=tmp_path / "manifest.tsv", draws=3)
    mv_stream.mv_features(
        **run, index=[tmp_path / "i0.tsv", tmp_path / "i1.tsv"], out=[tmp_path / "a0.h5", tmp_path / "a1.h5"]
    )
    with h5py.File(tmp_path / "a0.h5") as f0, h5py.File(tmp_path / "a1.h5") as f1:
        d0, d1 = f0[DRAWS][()].astype(np.float32), f1[DRAWS][()].astype(np.float32)
        fixed = f0["features"][()].mean(1)
    assert d0.shape == (3, 3, 128) and not np.isnan(d0).any()  # videos 0-2: training
    assert not np.isnan(d1[0]).any() and np.isnan(d1[1:]).all()  # video 3 trains; 4, 5 are test
    # Each draw is the network's pooled feature of that video's own draw of training
    # segments (seeded by seed, draw, video) and crops and flips, in eval mode.
    net, s2, _ = load_checkpoint(tmp_path / "m.pt")
    inputs = []
    for d in range(3):
        rng = np.random.default_rng([s.seed, d, mv_data.video_key(items[1].video_id)])
        x = to_input(torch.from_numpy(read_segments(items[1].path, s.segments, s2, rng))[None], s.input_size)[0]
        x = crop_flip(x, *augment_params(1, s.segments, s2, mv_augment.draw_generator(s2, d, items[1].video_id)))
        inputs.append(x)
        with torch.no_grad():
            want = net.features(x).mean(0).numpy()
        np.testing.assert_allclose(d0[1, d], want, rtol=2e-3, atol=1e-5)
    assert not torch.equal(inputs[0], inputs[1]) and not torch.equal(inputs[1], inputs[2])  # fresh views
    assert np.abs(d0[:, 0] - fixed).max() > 0  # not the evaluation feature
    # The same videos in other shards (one a shard): the same draws.
    one = [tmp_path / f"o{j}.h5" for j in range(2)]
    for j, idx in enumerate([tmp_path / "i1.tsv", tmp_path / "i0.tsv"]):
        mv_stream.mv_features(**{**run, "mv": [tmp_path / "v"]}, index=[idx], out=[one[j]])
    with h5py.File(one[1]) as f:
        np.testing.assert_allclose(f[DRAWS][()].astype(np.float32), d0, rtol=1e-3, atol=1e-3)
    write_index([], tmp_path / "empty.tsv")  # a shard the hash left empty: an empty draws dataset
    mv_stream.mv_features(**{**run, "mv": [tmp_path / "v"]}, index=[tmp_path / "empty.tsv"], out=[tmp_path / "e.h5"])
    with h5py.File(tmp_path / "e.h5") as f:
        assert f[DRAWS].shape == (0, 3, 128)
    with h5py.File(tmp_path / "a0.h5") as f:
        assert f[DRAWS].fletcher32  # a flipped byte fails the read
    # A job that dies among the draws leaves no shard that looks complete, and no temp file.
    monkeypatch.setattr(mv_stream, "draw_generator", lambda *a: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        mv_stream.mv_features(**{**run, "mv": [tmp_path / "v"]}, index=[tmp_path / "i0.tsv"], out=[tmp_path / "k.h5"])
    with h5py.File(tmp_path / "k.h5") as f:
        assert DRAWS not in f and len(f["features"]) == 3
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_paper_motion_traced_on_the_device_trains_and_extracts_as_in_the_workers(tmp_path, monkeypatch):
    """The GPU jobs' path (vectors shipped, traced in the training process), forced on the CPU:
    the same training (history, selected weights), test scores, features and draws as the
    CPU jobs' maps traced per pixel in the loader's workers."""
    items = gop_videos(tmp_path / "v", [(44, 61)] * 6, [40, 30, 36, 25, 40, 33])
    s = MVSettings(
        epochs=2, milestones=(2,), batch_size=2, input_size=16, accumulate=True, per_frame=False, input_range=0.5
    )
    rows = [
        Video(it.video_id, f"{it.video_id}.avi", "c", it.label, i, 0, 0, split1="train" if i < 4 else "test")
        for i, it in enumerate(items)
    ]
    write_manifest(rows, tmp_path / "manifest.tsv")
    write_index([CacheRecord(it.video_id, it.path.name, "ok", 24, "") for it in items], tmp_path / "i.tsv")
    out = {}
    for traced in (False, True):
        torch.set_num_threads(1)  # mv_features below sets its own
        rule = lambda s, d, traced=traced: s.accumulate and (traced or torch.device(d).type != "cpu")  # noqa: E731
        monkeypatch.setattr(mv_train, "trace_on_device", rule)
        monkeypatch.setattr(mv_stream, "trace_on_device", rule)
        fit = fit_mvnet(items[:4], items[4:], 3, s, workers=1 if traced else 0)
        save_checkpoint(tmp_path / f"m{traced}.pt", fit, s, 3, 1)
        net, _, _ = load_checkpoint(tmp_path / f"m{traced}.pt")
        scores = mv_train.predict_logits(net, items[4:], s)
        shard = tmp_path / f"f{traced}.h5"
        mv_stream.mv_features(
            models=[tmp_path / f"m{traced}.pt"],
            mv=[tmp_path / "v"],
            index=[tmp_path / "i.tsv"],
            out=[shard],
            manifest=tmp_path / "manifest.tsv",
            draws=2,
            threads=2,  # a loader worker each; the same torch threads, so the same sums
        )
        with h5py.File(shard) as f:
            out[traced] = (fit, scores, f["features"][()], f[DRAWS][()])
    (a, sa, fa, da), (b, sb, fb, db) = out[False], out[True]
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert [h["val_top1"] for h in a.history] == [h["val_top1"] for h in b.history]
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    np.testing.assert_array_equal(sa, sb)
    np.testing.assert_array_equal(fa, fb)
    np.testing.assert_array_equal(da[:4], db[:4])
    assert not np.isnan(da[:4]).any() and np.isnan(da[4:]).all()


def test_a_jobs_threads_change_no_number_its_cpu_threads_set_the_arithmetic(demo_caches, tmp_path):
    """Snakemake's threads (--cores caps them) only add loader workers: torch computes with
    mvnet.cpu_threads whatever they are, so the checkpoint and metrics are byte-identical."""
    _, root = demo_caches
    s = MVSettings(epochs=2, milestones=(1,), input_size=32, cpu_threads=2)
    out = {}
    for threads in (1, 3):
        d = tmp_path / f"threads{threads}"
        d.mkdir()
        train_mvnet(
            manifest=root / "manifest.tsv",
            mv=[root / "mv0", root / "mv1"],
            index=[root / "index0.tsv", root / "index1.tsv"],
            split=1,
            settings=s,
            model=d / "m.pt",
            training=d / "log.json",
            metrics=d / "met.json",
            device="cpu",
            threads=threads,
        )
        assert torch.get_num_threads() == 2
        out[threads] = (d / "m.pt").read_bytes(), (d / "met.json").read_bytes()
    assert out[1] == out[3]
