"""Motion stream: segment sampling, accumulation, flips, training that learns, and no test leakage."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

import moclip.mv_stream as mv_stream
from moclip.cache import COMPRESSION, CacheRecord, cache_shard, read_mv, write_index
from moclip.codec import DecodeSettings
from moclip.manifest import build_manifest
from moclip.mv_stream import (
    EpochOrder,
    MVClips,
    MVItem,
    MVNet,
    MVSettings,
    accumulate,
    augment,
    augment_generator,
    augment_params,
    crop_flip,
    crop_views,
    extract_features,
    fit_mvnet,
    hflip_mv,
    load_checkpoint,
    make_optimizer,
    model_device,
    motion_map,
    mv_loader,
    read_segments,
    sample_segments,
    save_checkpoint,
    to_input,
    train_mvnet,
    train_step,
    view_features,
)
from moclip.shards import read_shard
from moclip.videos import Video, write_manifest

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
    acc = accumulate(mv, ft, 3, cell=8)  # a pixel each: [8, 48, 2]
    assert acc.shape == (8, 48, 2)
    np.testing.assert_allclose(acc[:, 32:40], np.broadcast_to([24, 0], (8, 8, 2)))  # traced 4 -> 3 -> 2
    np.testing.assert_allclose(acc[:, :16], 0)  # static background
    np.testing.assert_allclose(accumulate(mv, types("IPIP"), 3, cell=8)[0, 32], [8, 0])  # stops at the I-frame


def coviar_reference(mv: np.ndarray, frame_type: np.ndarray, t: int, cell: int, h: int, w: int) -> np.ndarray:
    """CoViAR's own accumulation, written as its C loader does it (create_and_load_mv_residual):
    forward from the I-frame, each moving block's pixels take the accumulated source of their
    source pixel (integer vectors: FFmpeg's src_x); pixels whose source leaves the frame, and
    blocks that did not move, keep theirs; the result is (x, y) minus the accumulated source."""
    accu = np.stack(np.meshgrid(np.arange(w), np.arange(h)), -1).astype(np.int64)  # [y, x] -> source (x, y)
    start = max(j for j in range(t + 1) if frame_type[j] == ord("I"))
    for j in range(start + 1, t + 1):
        old = accu.copy()
        vec = np.trunc(mv[j].astype(np.float64)).astype(np.int64)  # val = dst - src, a cell (block) each
        for by in range(mv.shape[1]):
            for bx in range(mv.shape[2]):
                vx, vy = vec[by, bx]
                if vx == 0 and vy == 0:
                    continue
                for y in range(by * cell, min((by + 1) * cell, h)):
                    for x in range(bx * cell, min((bx + 1) * cell, w)):
                        sx, sy = x - vx, y - vy
                        if 0 <= sx < w and 0 <= sy < h:
                            accu[y, x] = old[sy, sx]
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    return np.stack([xs - accu[..., 0], ys - accu[..., 1]], -1).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accumulation_is_coviars_per_pixel_trace(seed):
    """On synthetic GOP-12 clips (smooth random motion with half-pixel vectors, frame sizes
    that are not whole cells, motion that leaves the frame), the vectorised trace equals
    CoViAR's per-pixel accumulation written plainly (the grid approximation it replaces was
    0.4-0.9 px off)."""
    rng = np.random.default_rng(seed)
    h, w, cell = 44, 61, 8
    hc, wc = -(-h // cell), -(-w // cell)
    base = rng.normal(0, 3, (12, 1, 1, 2)) + rng.normal(0, 2, (12, hc, wc, 2))
    mv = (np.round(base * 2) / 2).astype(np.float16)  # half-pixel vectors, as MPEG-4 Part 2 exports
    ft = types("I" + "P" * 11)
    for t in (1, 5, 11):
        got = accumulate(mv, ft, t, cell, (h, w))
        want = coviar_reference(mv, ft, t, cell, h, w)
        assert np.abs(got - want).mean() < 0.05 and np.array_equal(got, want), t
    assert np.abs(accumulate(mv, ft, 11, cell, (h, w))).max() > cell  # traces crossed cells


def test_flip_negates_dx_and_mirrors():
    x = torch.zeros(1, 2, 4, 4)
    x[0, 0, 1, 0] = 0.5  # content moving right, on the left edge
    x[0, 1, 1, 0] = 0.25
    y = hflip_mv(x)
    assert y[0, 0, 1, 3] == -0.5 and y[0, 1, 1, 3] == 0.25 and y[0, :, 1, 0].abs().sum() == 0
    g = torch.Generator().manual_seed(0)
    z = augment(torch.ones(16, 4, 2, 8, 8), g, MVSettings()).flatten(0, 1)
    assert ((z[:, 0] < 0).all(dim=(1, 2)).sum() > 10) and (z[:, 1] > 0).all()  # some flipped, dy untouched


def write_mv_cache(path, mv: np.ndarray, frame_type: np.ndarray, ref_distance: np.ndarray) -> Path:
    """An MV cache file as moclip.cache writes them (chunked, LZ4), from arrays."""
    with h5py.File(path, "w") as f:
        f.create_dataset("mv", data=mv, chunks=(min(64, len(mv)), *mv.shape[1:]), **COMPRESSION["lz4"])
        f.create_dataset("frame_type", data=frame_type)
        f.create_dataset("ref_distance", data=ref_distance)
        f.attrs.update(status="ok", mv_cell=8, height=mv.shape[1] * 8, width=mv.shape[2] * 8)
    return Path(path)


def synthetic_videos(root: Path, n_per_class: int, seed: int, t: int = 24) -> list[MVItem]:
    """Motion-only classes: a blob rising, falling, or shaking sideways, at random places."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for label, motion in enumerate([(0, -3), (0, 3), "shake"]):
        for i in range(n_per_class):
            mv = rng.normal(0, 0.3, (t, 12, 16, 2)).astype(np.float16)
            y, x = rng.integers(2, 8), rng.integers(2, 12)
            for f in range(t):
                d = (3 * (-1) ** (f // 4), 0) if motion == "shake" else motion
                mv[f, y : y + 3, x : x + 3] = d
            ft = np.full(t, P, np.uint8)
            ft[0] = I
            mv[0] = 0
            vid = f"v{label}_{i}"
            out.append(MVItem(vid, write_mv_cache(root / f"{vid}.h5", mv, ft, np.ones(t, np.int16)), label))
    return out


def test_short_training_beats_chance_and_is_deterministic(tmp_path):
    s = MVSettings(epochs=10, milestones=(10,), lr=3e-3, batch_size=4, input_size=32, seed=1)
    train, val = synthetic_videos(tmp_path / "train", 12, 0), synthetic_videos(tmp_path / "val", 6, 1)
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


@pytest.mark.parametrize("accumulate", [False, True])
def test_read_segments_equals_the_maps_of_the_whole_video(tmp_path, accumulate):
    rng = np.random.default_rng(0)
    t = 40
    ft = np.full(t, P, np.uint8)
    ft[::12] = I  # GOPs of 12
    mv = rng.normal(0, 4, (t, 6, 8, 2)).astype(np.float16)
    rd = rng.integers(1, 3, t).astype(np.int16)
    path = write_mv_cache(tmp_path / "v.h5", mv, ft, rd)
    s = MVSettings(accumulate=accumulate)
    for seed in (None, 1, 2):
        got = read_segments(path, 5, s, None if seed is None else np.random.default_rng(seed))
        idx = sample_segments(ft, 5, None if seed is None else np.random.default_rng(seed))
        want = np.stack([motion_map(*read_mv(path)[:3], int(i), s, 8) for i in idx])
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_batches_are_the_same_with_and_without_workers(tmp_path):
    items = synthetic_videos(tmp_path, 4, 0)
    s = MVSettings(input_size=16)
    order = EpochOrder(len(items), seed=5)
    order.epoch = 2

    def batches(workers):
        return [(x.clone(), y.clone()) for x, y in mv_loader(MVClips(items, s, 3, seed=5), 5, workers, order)]

    a, b = batches(0), batches(2)
    assert len(a) == len(b) == 3
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    order.epoch = 3
    other = [(x, y) for x, y in mv_loader(MVClips(items, s, 3, seed=5), 5, 0, order)]
    assert not all(torch.equal(x, y) for (x, _), (y, _) in zip(a, other, strict=True))  # a new epoch, new draws


def test_crop_flip_is_identity_or_mirror_at_full_scale():
    x = torch.randn(3, 2, 6, 8)
    ones, zeros = torch.ones(3, 2), torch.zeros(3, 2)
    torch.testing.assert_close(crop_flip(x, ones, zeros, torch.zeros(3, dtype=torch.bool)), x)
    torch.testing.assert_close(crop_flip(x, ones, zeros, torch.ones(3, dtype=torch.bool)), hflip_mv(x))
    # A half-width crop at the left edge, resized back: column 0 of the output samples the input's left quarter.
    half = crop_flip(x, torch.tensor([[0.5, 1.0]] * 3), zeros, torch.zeros(3, dtype=torch.bool))
    torch.testing.assert_close(half[..., 0], x[..., 0])


def test_a_gradient_scaler_step_is_the_plain_step():
    """The float16 path's loss scaling changes no update (checked on the CPU's maths)."""
    steps = {}
    for enabled in (False, True):
        torch.manual_seed(0)
        net = torch.nn.Linear(4, 3)
        opt = torch.optim.Adam(net.parameters(), lr=0.1)
        scaler = torch.amp.GradScaler("cpu", enabled=enabled, init_scale=2.0**10)
        x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
        for _ in range(3):
            opt.zero_grad()
            scaler.scale(torch.nn.functional.cross_entropy(net(x), y)).backward()
            scaler.step(opt)
            scaler.update()
        steps[enabled] = [p.detach().clone() for p in net.parameters()]
    for a, b in zip(steps[False], steps[True], strict=True):
        torch.testing.assert_close(a, b)


_PEAK = """
import sys, numpy as np, torch
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from test_mv_stream import synthetic_videos
from moclip.mv_stream import MVSettings, fit_mvnet
torch.set_num_threads(1)
items = synthetic_videos(Path(sys.argv[1]), int(sys.argv[2]), 0, t=600)
s = MVSettings(epochs=1, milestones=(1,), batch_size=8, input_size=16, augment=False)
fit_mvnet(items, items[:3], 3, s)
print(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")))
"""


def test_training_memory_does_not_grow_with_the_number_of_videos(tmp_path):
    """600-frame videos (1.2 MB of maps each): holding every map would add ~150 MB from 20 to
    140 videos a class; reading only the sampled frames adds nothing but the file list."""
    peak = {}
    for n in (20, 140):
        out = subprocess.run(
            [sys.executable, "-c", _PEAK, str(tmp_path / str(n)), str(n), str(Path(__file__).parent)],
            capture_output=True,
            text=True,
            check=True,
        )
        peak[n] = int(out.stdout.split()[-1]) / 1024  # MB
    assert peak[140] < peak[20] * 1.1, peak


# --------------------------------------------------------------------------- the authors' recipe


@pytest.fixture(scope="module")
def rgb_checkpoint(tmp_path_factory) -> tuple[Path, dict]:
    """A local 3-channel efficientnet_b0 checkpoint (random weights, as a user's ImageNet file
    would be laid out: the classifier included) and its state dict."""
    import timm

    torch.manual_seed(0)
    net = timm.create_model("efficientnet_b0", pretrained=False)
    path = tmp_path_factory.mktemp("weights") / "efficientnet_b0.pth"
    torch.save(net.state_dict(), path)
    return path, net.state_dict()


def test_imagenet_start_has_the_mean_rgb_stem_and_the_input_bn(rgb_checkpoint):
    path, rgb = rgb_checkpoint
    model = mv_stream.MVNet("efficientnet_b0", 5, pretrained=str(path), input_bn=True)
    stem = model.backbone.conv_stem.weight
    assert stem.shape[1] == 2
    expect = rgb["conv_stem.weight"].mean(1)
    assert torch.equal(stem[:, 0], expect) and torch.equal(stem[:, 1], expect)
    assert torch.equal(model.backbone.blocks[3][0].conv_pw.weight, rgb["blocks.3.0.conv_pw.weight"])  # the rest loaded
    assert isinstance(model.input_bn, torch.nn.BatchNorm2d) and model.input_bn.num_features == 2
    x = torch.randn(1, 1, 2, 32, 32)
    assert model.eval()(x).shape == (1, 5)
    # the BN normalises each channel of the maps before the stem: in training mode, the
    # stem sees zero-mean unit-variance input whatever the maps' scale
    seen = []
    model.backbone.conv_stem.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    model.train()(torch.randn(4, 2, 2, 32, 32) * 7 + 3)
    assert seen[0].mean((0, 2, 3)).abs().max() < 1e-5 and (seen[0].std((0, 2, 3)) - 1).abs().max() < 1e-2


def test_a_broken_weights_file_says_how_to_provide_the_weights(tmp_path):
    bad = tmp_path / "efficientnet_b0.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(mv_stream.MVWeightsError) as e:
        mv_stream.MVNet("efficientnet_b0", 5, pretrained=str(bad))
    assert "mvnet.pretrained" in str(e.value) and "torch.save" in str(e.value) and "efficientnet_b0" in str(e.value)


def test_weights_checked_against_timm_at_parse_time(tmp_path):
    mv_stream.check_arch("efficientnet_b0", True)
    mv_stream.check_arch("efficientnet_b0", "ra_in1k")
    with pytest.raises(ValueError, match="tag of efficientnet_b0.*ra_in1k"):
        mv_stream.check_arch("efficientnet_b0", "ra_in1kk")
    with pytest.raises(ValueError, match="no such checkpoint file"):
        mv_stream.check_arch("efficientnet_b0", str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="tiny network has no pretrained"):
        mv_stream.check_arch("tiny", True)


def test_optimizer_groups_and_learning_rates_are_the_authors():
    s = MVSettings(
        arch="efficientnet_b0",
        input_bn=True,
        lr=0.01,
        stem_lr_mult=0.1,
        backbone_lr_mult=0.01,
        eps=1e-3,
        weight_decay=1e-4,
    )
    model = mv_stream.MVNet(s.arch, 7, input_bn=True)
    opt = mv_stream.make_optimizer(model, s)
    assert isinstance(opt, torch.optim.Adam)
    groups = {g["name"]: g for g in opt.param_groups}
    assert {k: g["lr"] for k, g in groups.items()} == pytest.approx(
        {"classifier": 0.01, "stem": 1e-3, "backbone": 1e-4}
    )
    ids = {k: {id(p) for p in g["params"]} for k, g in groups.items()}
    named = dict(model.named_parameters())
    assert ids["classifier"] == {id(named["classifier.weight"]), id(named["classifier.bias"])}
    assert ids["stem"] == {id(named[n]) for n in ("backbone.conv_stem.weight", "input_bn.weight", "input_bn.bias")}
    assert len(ids["backbone"]) == len(named) - 5  # every other parameter, the stem's BN (bn1) included
    assert all(g["eps"] == 1e-3 and g["weight_decay"] == 1e-4 for g in opt.param_groups)
    # the schedule scales every group alike: the multipliers hold after a milestone
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [1], 0.1)
    opt.step()
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-3, 1e-4, 1e-5])


def test_clip_level_augmentation_shares_scale_and_flip_across_segments():
    x = torch.zeros(64, 3, 2, 16, 16)
    x[..., 0, :, :] = torch.linspace(0, 1, 16)  # dx grows to the right: scale and flip are visible
    x[..., 1, :, :] = 1
    s = MVSettings(augment_scales=(1.0, 0.875, 0.75), augment_unit="video")
    y = augment(x, torch.Generator().manual_seed(0), s)
    flipped = y[..., 0, :, :].mean((2, 3)) < 0  # [B, S]
    assert (flipped == flipped[:, :1]).all() and 5 < flipped[:, 0].sum() < 59
    span = (y[..., 0, 8, -1] - y[..., 0, 8, 0]).abs()  # the dx range a crop keeps: its scale
    scale = (span[..., None] - torch.tensor([1.0, 0.875, 0.75])).abs().argmin(-1)  # the nearest (edges resample)
    assert (scale == scale[:, :1]).all() and len(torch.unique(scale)) == 3  # one of the three, a video
    seg = augment(x, torch.Generator().manual_seed(0), MVSettings(augment_scales=(1.0, 0.875, 0.75)))
    seg_flipped = seg[..., 0, :, :].mean((2, 3)) < 0
    assert (seg_flipped != seg_flipped[:, :1]).any()  # a flip a segment otherwise


def test_ten_crops_are_corners_centre_and_their_mirrors():
    x = torch.zeros(1, 2, 16, 16)
    x[0, 0] = torch.arange(16.0)[None, :]  # dx = column
    x[0, 1] = torch.arange(16.0)[:, None]  # dy = row
    v = mv_stream.ten_crops(x)[0]
    assert v.shape == (10, 2, 16, 16)
    col, row = v[:, 0].mean((1, 2)), v[:, 1].mean((1, 2))
    # top-left, top-right, bottom-left, bottom-right, centre: 7/8 of a side, resized back
    assert col[0] < col[4] < col[1] and row[0] < row[4] < row[2] and col[0] == pytest.approx(col[2])
    assert torch.allclose(v[5:, 1], v[:5, 1].flip(-1))  # mirrored: dy mirrored
    assert torch.allclose(v[5:, 0], -v[:5, 0].flip(-1))  # and dx negated
    assert mv_stream.crop_views(x[None], 1).shape == (1, 1, 1, 2, 16, 16)


def test_ten_crop_features_are_the_mean_over_the_views(tmp_path):
    items = synthetic_videos(tmp_path, 2, 0)
    torch.manual_seed(0)
    model = mv_stream.MVNet("tiny", 3).eval()
    s = MVSettings(input_size=32, eval_segments=2, eval_crops=10)
    valid = np.ones(len(items), bool)
    extract_features(model, s, items, valid, tmp_path / "f.h5")
    _, feats, _, attrs = read_shard(tmp_path / "f.h5")
    x = torch.stack([torch.from_numpy(read_segments(it.path, 2, s, None)) for it in items])
    views = mv_stream.crop_views(mv_stream.to_input(x, 32), 10)  # [N, 2, 10, 2, 32, 32]
    with torch.no_grad():
        expect = model.features(views.flatten(0, 2)).view(len(items), 2, 10, -1)
    np.testing.assert_allclose(feats, expect.mean(2).numpy(), rtol=1e-5, atol=1e-6)
    assert attrs["eval_crops"] == 10
    logits = mv_stream.predict_logits(model, items, s)
    np.testing.assert_allclose(logits, model.classifier(expect).mean((1, 2)).detach().numpy(), rtol=1e-5, atol=1e-5)
    assert mv_stream.eval_batch_videos(25 * 10) == 1 and mv_stream.eval_batch_videos(3) == 64


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


# --------------------------------------------------------------------------- a second device
# The meta device stands in for a GPU (see tests/test_clip_stream.py): every op of a step
# must find its tensors on the device; values cannot come back, so the tests stop there.

META = torch.device("meta")


def test_a_training_step_of_the_paper_recipe_runs_on_the_device():
    """EfficientNet-B0 with the input BN, clip-level scale augmentation and the authors'
    optimiser groups: resize, augmentation, forward, loss, backward and Adam's step all on
    the stand-in device, with the augmentation's draws from a CPU generator."""
    s = MVSettings(
        arch="efficientnet_b0", input_size=64, input_bn=True, augment_scales=(1.0, 0.875, 0.75), augment_unit="video"
    )
    model = MVNet(s.arch, 5, False, s.input_bn).to(META)
    opt = make_optimizer(model, s)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    x, y = torch.randn(4, 3, 2, 30, 40).to(META), torch.randint(5, (4,)).to(META)
    loss = train_step(model, opt, scaler, x, y, s, augment_generator(s, 0, 0))
    assert loss.device == META and loss.shape == ()
    assert all(p.grad is not None and p.grad.device == META for p in model.parameters())


def test_fit_mvnet_runs_on_its_device_up_to_reading_the_first_loss(tmp_path):
    items = synthetic_videos(tmp_path, 2, 0)
    s = MVSettings(epochs=1, milestones=(1,), batch_size=4, input_size=16)
    with pytest.raises(RuntimeError, match=r"item\(\) cannot be called on meta"):
        fit_mvnet(items, items[:2], 3, s, device="meta")


def test_ten_crop_views_and_features_run_on_the_device():
    s = MVSettings(arch="efficientnet_b0", input_size=32, eval_segments=2, eval_crops=10)
    model = MVNet(s.arch, 3).to(META).eval()
    x = torch.randn(2, 2, 2, 30, 40).to(META)
    v = crop_views(to_input(x, s.input_size), 10)
    assert v.device == META and v.shape == (2, 2, 10, 2, 32, 32)
    f = view_features(model, x, s, 10)
    assert f.device == META and f.shape == (2, 2, 10, model.backbone.num_features)


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


def test_deterministic_ops_give_the_same_numbers_as_torchs():
    """The CUDA-deterministic forms used in training (mean pool, one-hot cross-entropy)
    compute what torch's own ops do."""
    z, y = torch.randn(6, 4, requires_grad=True), torch.randint(4, (6,))
    torch.testing.assert_close(mv_stream.cross_entropy(z, y), F.cross_entropy(z, y))
    g1 = torch.autograd.grad(mv_stream.cross_entropy(z, y), z)[0]
    g2 = torch.autograd.grad(F.cross_entropy(z, y), z)[0]
    torch.testing.assert_close(g1, g2)
    net = MVNet("efficientnet_b0", 3)
    assert net.backbone.global_pool.pool_type == "fast"


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
        d0, d1 = f0[mv_stream.DRAWS][()].astype(np.float32), f1[mv_stream.DRAWS][()].astype(np.float32)
        fixed = f0["features"][()].mean(1)
    assert d0.shape == (3, 3, 128) and not np.isnan(d0).any()  # videos 0-2: training
    assert not np.isnan(d1[0]).any() and np.isnan(d1[1:]).all()  # video 3 trains; 4, 5 are test
    # Each draw is the network's pooled feature of that video's own draw of training
    # segments (seeded by seed, draw, video) and crops and flips, in eval mode.
    net, s2, _ = load_checkpoint(tmp_path / "m.pt")
    inputs = []
    for d in range(3):
        rng = np.random.default_rng([s.seed, d, mv_stream.video_key(items[1].video_id)])
        x = to_input(torch.from_numpy(read_segments(items[1].path, s.segments, s2, rng))[None], s.input_size)[0]
        x = crop_flip(x, *augment_params(1, s.segments, s2, mv_stream.draw_generator(s2, d, items[1].video_id)))
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
        np.testing.assert_allclose(f[mv_stream.DRAWS][()].astype(np.float32), d0, rtol=1e-3, atol=1e-3)
    write_index([], tmp_path / "empty.tsv")  # a shard the hash left empty: an empty draws dataset
    mv_stream.mv_features(**{**run, "mv": [tmp_path / "v"]}, index=[tmp_path / "empty.tsv"], out=[tmp_path / "e.h5"])
    with h5py.File(tmp_path / "e.h5") as f:
        assert f[mv_stream.DRAWS].shape == (0, 3, 128)
    with h5py.File(tmp_path / "a0.h5") as f:
        assert f[mv_stream.DRAWS].fletcher32  # a flipped byte fails the read
    # A job that dies among the draws leaves no shard that looks complete, and no temp file.
    monkeypatch.setattr(mv_stream, "draw_generator", lambda *a: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        mv_stream.mv_features(**{**run, "mv": [tmp_path / "v"]}, index=[tmp_path / "i0.tsv"], out=[tmp_path / "k.h5"])
    with h5py.File(tmp_path / "k.h5") as f:
        assert mv_stream.DRAWS not in f and len(f["features"]) == 3
    assert not list(tmp_path.glob(".*.tmp"))
