"""Motion stream: segment sampling, accumulation, flips, training that learns, and no test leakage."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import moclip.mv_stream as mv_stream
from moclip.cache import cache_shard
from moclip.codec import DecodeSettings
from moclip.manifest import build_manifest, write_manifest
from moclip.mv_stream import (
    MVSettings,
    VideoMV,
    accumulate,
    augment,
    extract_features,
    fit_mvnet,
    hflip_mv,
    load_checkpoint,
    motion_map,
    sample_segments,
    train_mvnet,
)

P, B, I = ord("P"), ord("B"), ord("I")


def types(s: str) -> np.ndarray:
    return np.frombuffer(s.encode(), np.uint8)


def test_eval_segments_are_p_frames_nearest_the_centres():
    ft = types("IPPPPPPPPPPPIPPPPPPPPPPP")  # 24 frames, I at 0 and 12
    assert sample_segments(ft, 3, None).tolist() == [3, 11, 19]  # 12 is an I-frame
    idx = sample_segments(ft, 3, None)
    assert all(ft[i] == P for i in idx) and list(idx) == sorted(idx)
    ft_b = types("IBBPBBPBBPBBIBBPBBPBBPBB")
    assert all(ft_b[i] == P for i in sample_segments(ft_b, 4, None))


def test_training_segments_random_but_seeded_and_inside_their_segment():
    ft = types("IBBPBBPBBPBBIBBPBBPBBPBBIBBPBBPBBPBB")
    a = [sample_segments(ft, 3, np.random.default_rng(7)).tolist() for _ in range(2)]
    assert a[0] == a[1]
    draws = {tuple(sample_segments(ft, 3, np.random.default_rng(s))) for s in range(20)}
    assert len(draws) > 3
    for d in draws:
        for k, t in enumerate(d):
            assert ft[t] == P and k * 12 <= t < (k + 1) * 12


def test_segment_without_p_frame_and_video_without_any():
    ft = types("IPPPIIIIIIII")
    idx = sample_segments(ft, 3, None)
    assert all(ft[i] == P for i in idx)  # empty segments borrow the nearest candidate
    assert len(sample_segments(types("IIII"), 3, None)) == 3


def test_per_frame_division_and_clipping():
    mv = np.zeros((3, 2, 2, 2), np.float16)
    mv[1] = [9.0, -30.0]
    ref = np.array([0, 3, 0], np.int16)
    s = MVSettings(max_displacement=20.0)
    m = motion_map(mv, types("IPB"), ref, 1, s)
    assert m.shape == (2, 2, 2)
    np.testing.assert_allclose(m[0], 3 / 20)  # 9 px over 3 frames
    np.testing.assert_allclose(m[1], -10 / 20)
    m = motion_map(mv, types("IPB"), ref, 1, MVSettings(max_displacement=20.0, per_frame=False))
    np.testing.assert_allclose(m[1], -1.0)  # -30 clipped to -20


def test_accumulation_follows_the_content_back_to_the_i_frame():
    # An object moves one cell (8 px) right a frame: it sits in cell x=2 at t=1, x=3 at t=2.
    mv = np.zeros((4, 1, 6, 2), np.float16)
    mv[1, 0, 2] = [8, 0]
    mv[2, 0, 3] = [8, 0]
    mv[3, 0, 4] = [8, 0]
    ft = types("IPPP")
    acc = accumulate(mv, ft, 3, cell=8)
    np.testing.assert_allclose(acc[0, 4], [24, 0])  # traced 4 -> 3 -> 2: three steps
    np.testing.assert_allclose(acc[0, 0], [0, 0])  # static background
    np.testing.assert_allclose(accumulate(mv, types("IPIP"), 3, cell=8)[0, 4], [8, 0])  # stops at the I-frame


def test_flip_negates_dx_and_mirrors():
    x = torch.zeros(1, 2, 4, 4)
    x[0, 0, 1, 0] = 0.5  # content moving right, on the left edge
    x[0, 1, 1, 0] = 0.25
    y = hflip_mv(x)
    assert y[0, 0, 1, 3] == -0.5 and y[0, 1, 1, 3] == 0.25 and y[0, :, 1, 0].abs().sum() == 0
    g = torch.Generator().manual_seed(0)
    z = augment(torch.ones(64, 2, 8, 8), g)
    assert ((z[:, 0] < 0).all(dim=(1, 2)).sum() > 10) and (z[:, 1] > 0).all()  # some flipped, dy untouched


def synthetic_videos(n_per_class: int, seed: int) -> list[VideoMV]:
    """Motion-only classes: a blob rising, falling, or shaking sideways, at random places."""
    rng = np.random.default_rng(seed)
    out = []
    for label, motion in enumerate([(0, -3), (0, 3), "shake"]):
        for i in range(n_per_class):
            t = 24
            mv = rng.normal(0, 0.3, (t, 12, 16, 2)).astype(np.float16)
            y, x = rng.integers(2, 8), rng.integers(2, 12)
            for f in range(t):
                d = (3 * (-1) ** (f // 4), 0) if motion == "shake" else motion
                mv[f, y : y + 3, x : x + 3] = d
            ft = np.full(t, P, np.uint8)
            ft[0] = I
            mv[0] = 0
            out.append(VideoMV(f"v{label}_{i}", label, mv, ft, np.ones(t, np.int16)))
    return out


def test_short_training_beats_chance_and_is_deterministic():
    s = MVSettings(epochs=10, milestones=(10,), lr=3e-3, batch_size=4, input_size=32, seed=1)
    train, val = synthetic_videos(12, 0), synthetic_videos(6, 1)
    torch.set_num_threads(1)
    a = fit_mvnet(train, val, 3, s)
    b = fit_mvnet(train, val, 3, s)
    assert max(h["val_top1"] for h in a.history) >= 0.8  # chance is 1/3
    assert a.best_epoch == b.best_epoch
    for k in a.state_dict:
        assert torch.equal(a.state_dict[k], b.state_dict[k]), k


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


def test_no_test_video_reaches_training_or_selection(demo_caches, tmp_path, monkeypatch):
    rows, root = demo_caches
    s = MVSettings(epochs=2, milestones=(1,), input_size=32)
    results = []
    monkeypatch.setattr(mv_stream, "fit_mvnet", lambda *a: results.append(fit_mvnet(*a)) or results[-1])
    metrics = train_mvnet(
        manifest=root / "manifest.tsv",
        mv=[root / "mv0", root / "mv1"],
        split=1,
        settings=s,
        model=tmp_path / "m.pt",
        training=tmp_path / "log.json",
        metrics=tmp_path / "met.json",
    )
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
    files = [root / "mv0" / f"{v}.h5" for v in ids]
    v1 = extract_features(model, s2, files, ids, tmp_path / "f1.h5")
    bn = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    extract_features(model, s2, files, ids, tmp_path / "f2.h5")
    assert all(torch.equal(bn[k], model.state_dict()[k]) for k in bn)  # BatchNorm statistics frozen
    assert v1.all() and (tmp_path / "f1.h5").read_bytes() == (tmp_path / "f2.h5").read_bytes()
