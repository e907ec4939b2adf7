"""MV training: it learns, deterministically, in bounded memory, with the authors' groups, on its device."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import gop_videos, synthetic_videos

import moclip.mv.augment as mv_augment
import moclip.mv.nets as mv_nets
import moclip.mv.train as mv_train
from moclip.mv.augment import augment_generator, crop_views, to_input
from moclip.mv.data import MVSettings, read_segments
from moclip.mv.nets import MVNet
from moclip.mv.stream import extract_features
from moclip.mv.train import fit_mvnet, make_optimizer, train_step, view_features
from moclip.shards import read_shard


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
from conftest import gop_videos, synthetic_videos
from moclip.mv.data import MVSettings
from moclip.mv.train import fit_mvnet
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
    model = mv_nets.MVNet(s.arch, 7, input_bn=True)
    opt = mv_train.make_optimizer(model, s)
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


def test_ten_crop_features_are_the_mean_over_the_views(tmp_path):
    items = synthetic_videos(tmp_path, 2, 0)
    torch.manual_seed(0)
    model = mv_nets.MVNet("tiny", 3).eval()
    s = MVSettings(input_size=32, eval_segments=2, eval_crops=10)
    valid = np.ones(len(items), bool)
    extract_features(model, s, items, valid, tmp_path / "f.h5")
    _, feats, _, attrs = read_shard(tmp_path / "f.h5")
    x = torch.stack([torch.from_numpy(read_segments(it.path, 2, s, None)) for it in items])
    views = mv_augment.crop_views(mv_augment.to_input(x, 32), 10)  # [N, 2, 10, 2, 32, 32]
    with torch.no_grad():
        expect = model.features(views.flatten(0, 2)).view(len(items), 2, 10, -1)
    np.testing.assert_allclose(feats, expect.mean(2).numpy(), rtol=1e-5, atol=1e-6)
    assert attrs["eval_crops"] == 10
    logits = mv_train.predict_logits(model, items, s)
    np.testing.assert_allclose(logits, model.classifier(expect).mean((1, 2)).detach().numpy(), rtol=1e-5, atol=1e-5)
    assert mv_train.eval_batch_videos(25 * 10) == 1 and mv_train.eval_batch_videos(3) == 64


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


def test_fit_mvnet_runs_a_whole_epoch_on_its_device_before_reading_a_value(tmp_path):
    """No step reads a value back: the first epoch's every step runs on the stand-in device
    (which has no values), and the run stops only at the epoch's one read of its losses."""
    items = synthetic_videos(tmp_path, 2, 0)
    s = MVSettings(epochs=1, milestones=(1,), batch_size=2, input_size=16)
    steps = []
    real = mv_train.train_step
    with pytest.MonkeyPatch.context() as m:
        m.setattr(mv_train, "train_step", lambda *a, **k: steps.append(1) or real(*a, **k))
        with pytest.raises(NotImplementedError, match="Cannot copy out of meta tensor"):
            fit_mvnet(items, items[:2], 3, s, device="meta")
    assert len(steps) == 3  # 6 videos at 2 a batch: the whole epoch ran


class HostSyncs(torch.overrides.TorchFunctionMode):
    """Records what would make the host wait for a card: a value read from a device tensor
    (``item``, ``cpu``, ``float``...) or a copy between the CPU and a device that is not
    ``non_blocking`` (torch then waits for the whole stream). The meta device stands in."""

    READS = {"item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__", "__index__"}

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        src = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if name in self.READS and src is not None and src.device.type != "cpu":
            self.seen.append(f"{name} of a {src.device.type} tensor")
        out = func(*args, **kwargs)
        if name in ("to", "cuda", "copy_") and src is not None:
            dst = out.device if isinstance(out, torch.Tensor) else src.device
            if (src.device.type == "cpu") != (dst.type == "cpu"):
                blocking = not (kwargs.get("non_blocking") or (len(args) > 3 and args[3] is True))
                if blocking:
                    self.seen.append(f"blocking {name} {src.device.type} -> {dst.type} {tuple(src.shape)}")
        return out


def test_no_training_step_waits_for_the_device(tmp_path):
    """The paper recipe's steps (augmentation draws from a CPU generator, EfficientNet-B0,
    the authors' optimiser groups) queue their work without a host sync: no value read
    back, every copy to the device non-blocking; the losses stay on the device."""
    items = synthetic_videos(tmp_path, 2, 0)
    s = MVSettings(
        arch="efficientnet_b0", input_size=32, input_bn=True, augment_scales=(1.0, 0.875), augment_unit="video"
    )
    t = mv_train.Training.build(s, 3, META)
    loader = mv_train.mv_loader(mv_train.MVClips(items, s, s.segments, s.seed), 3, 0, mv_train.EpochOrder(6, 0))
    with HostSyncs() as syncs:
        losses, _ = mv_train.train_epoch(t, loader, s, epoch=1)
    assert syncs.seen == []
    assert losses.device == META and losses.shape == (2,)
    with HostSyncs() as syncs:  # the checker sees what it looks for
        torch.zeros(2).to(META)
        mv_augment.crop_flip(torch.zeros(2, 2, 8, 8), torch.ones(2, 2), torch.zeros(2, 2), torch.ones(2) > 0)
    assert syncs.seen == ["blocking to cpu -> meta (2,)"]


def test_the_optimiser_is_fused_on_a_card_only():
    """torch's fused step (one kernel, its step counts on the card) where the model is on a
    CUDA card, for each optimiser; the CPU keeps the per-parameter step of earlier runs."""
    assert mv_train.fuses("cuda") and mv_train.fuses(torch.device("cuda", 1))
    assert not mv_train.fuses("cpu") and not mv_train.fuses(META)
    for name in ("adam", "adamw", "sgd"):
        s = MVSettings(optimizer=name)
        assert not make_optimizer(MVNet("tiny", 3), s).defaults.get("fused")
        with pytest.MonkeyPatch.context() as m:
            m.setattr(mv_train, "fuses", lambda d: d.type == "meta")  # meta stands in for the card
            assert make_optimizer(MVNet("tiny", 3).to(META), s).defaults["fused"] is True, name


def test_a_timm_backbone_gets_its_input_channels_last_on_a_device_only():
    """Off the CPU the maps enter the channels-last backbone channels-last; on the CPU they
    stay as they are (its results stay those of earlier runs); the tiny net is left alone."""
    seen = []
    for arch, dev, want in [("efficientnet_b0", META, True), ("efficientnet_b0", "cpu", False), ("tiny", META, False)]:
        model = MVNet(arch, 3).to(dev).eval()
        hook = model.backbone.register_forward_pre_hook(
            lambda _, a: seen.append(a[0].is_contiguous(memory_format=torch.channels_last))
        )
        with torch.no_grad():
            model.features(torch.randn(2, 2, 32, 32).to(dev))
        hook.remove()
        assert seen[-1] is want, (arch, dev)


def test_the_bare_ceilings_run_the_real_step_on_synthetic_maps_on_the_device():
    """train_ceiling times train_step itself on one batch of maps already on the device (a
    UCF101 frame's cell grid, or its pixels when accumulated); feature_ceiling the test's
    view_features; both run on the stand-in device and give a rate on the CPU."""
    s = MVSettings(arch="tiny", input_size=16, batch_size=2, segments=3, eval_segments=2, eval_crops=10)
    calls = []
    real = mv_train.train_step
    with pytest.MonkeyPatch.context() as m:
        m.setattr(
            mv_train,
            "train_step",
            lambda model, opt, sc, x, y, *a: calls.append((x, y)) or real(model, opt, sc, x, y, *a),
        )
        assert mv_train.train_ceiling(s, device="meta", n_classes=5, steps=3, warmup=2) > 0
        assert mv_train.train_ceiling(
            MVSettings(**{**s.__dict__, "accumulate": True}), device="meta", steps=1, warmup=0
        )
    assert len(calls) == 6
    assert {(x.device, x.shape, y.shape) for x, y in calls[:5]} == {(META, (2, 3, 2, 32, 42), (2,))}
    assert calls[5][0].shape == (2, 3, 2, 256, 340)
    assert mv_train.train_ceiling(s, device="cpu", steps=2, warmup=1) > 0
    assert mv_train.feature_ceiling(s, device="meta", steps=1, warmup=0) > 0
    assert mv_train.feature_ceiling(s, device="cpu", steps=1, warmup=1, frame=(64, 64)) > 0


def test_ten_crop_views_and_features_run_on_the_device():
    s = MVSettings(arch="efficientnet_b0", input_size=32, eval_segments=2, eval_crops=10)
    model = MVNet(s.arch, 3).to(META).eval()
    x = torch.randn(2, 2, 2, 30, 40).to(META)
    v = crop_views(to_input(x, s.input_size), 10)
    assert v.device == META and v.shape == (2, 2, 10, 2, 32, 32)
    f = view_features(model, x, s, 10)
    assert f.device == META and f.shape == (2, 2, 10, model.backbone.num_features)


def test_validation_inputs_are_read_once_and_score_as_read_every_epoch(tmp_path, monkeypatch):
    """The validation videos' caches are read once a run and kept; the per-epoch metrics and
    the selected weights are those of reading them again every epoch (a budget too small to
    keep them: the old path)."""
    import moclip.mv.data as mv_data

    train, val = synthetic_videos(tmp_path / "train", 4, 0), synthetic_videos(tmp_path / "val", 2, 1)
    s = MVSettings(epochs=3, milestones=(3,), lr=3e-3, batch_size=4, input_size=16, seed=2)
    torch.set_num_threads(1)
    reads = []
    read = mv_data.read_segments
    monkeypatch.setattr(mv_data, "read_segments", lambda path, *a: reads.append(Path(path)) or read(path, *a))
    runs = {}
    for host_mb in (mv_data.KEPT_HOST_MB, 0):
        monkeypatch.setattr(mv_data, "KEPT_HOST_MB", host_mb)
        reads.clear()
        runs[host_mb] = fit_mvnet(train, val, 3, s)
        val_reads = [r for r in reads if r in {v.path for v in val}]
        assert sorted(val_reads) == sorted([v.path for v in val] * (1 if host_mb else s.epochs))
        assert len(reads) - len(val_reads) == s.epochs * len(train)
    kept, again = runs.values()
    assert [(h["val_top1"], h["val_loss"]) for h in kept.history] == [
        (h["val_top1"], h["val_loss"]) for h in again.history
    ]
    assert kept.best_epoch == again.best_epoch
    assert all(torch.equal(kept.state_dict[k], again.state_dict[k]) for k in kept.state_dict)


def test_fit_mvnet_traces_the_paper_motion_on_its_device(tmp_path):
    """With ``accumulate`` on a GPU (``meta`` stands in) the loader ships vectors, traced on
    the device, and the validation steps are kept there: the first epoch runs to its end."""
    items = gop_videos(tmp_path, [(44, 61)] * 4, [30, 30, 30, 30])
    s = MVSettings(epochs=1, milestones=(1,), batch_size=2, input_size=16, accumulate=True, per_frame=False)
    steps = []
    real = mv_train.train_step
    with pytest.MonkeyPatch.context() as m:
        m.setattr(mv_train, "train_step", lambda *a, **k: steps.append(1) or real(*a, **k))
        with pytest.raises(NotImplementedError, match="Cannot copy out of meta tensor"):  # the epoch's read
            fit_mvnet(items, items[:2], 3, s, device="meta")
    assert len(steps) == 2  # 4 videos at 2 a batch: the whole epoch ran on the device


def test_compile_is_opt_in_and_trains_the_same_network(tmp_path):
    """mvnet.compile: the training forward compiled in place (its compile time paid in the
    first epoch), the state dict's keys those of the eager network, the losses the eager
    ones up to the compiled kernels' rounding; off by default."""
    items = synthetic_videos(tmp_path, 2, 0)
    s = MVSettings(epochs=2, milestones=(2,), batch_size=3, input_size=16)
    on = MVSettings(**{**s.__dict__, "compile": True})
    assert not s.compile and mv_train.Training.build(s, 3, torch.device("cpu")).model._compiled_call_impl is None
    assert mv_train.Training.build(on, 3, torch.device("cpu")).model._compiled_call_impl is not None
    torch.set_num_threads(1)
    eager, compiled = fit_mvnet(items, items[:3], 3, s), fit_mvnet(items, items[:3], 3, on)
    assert list(compiled.state_dict) == list(eager.state_dict)
    np.testing.assert_allclose([h["loss"] for h in compiled.history], [h["loss"] for h in eager.history], rtol=1e-5)
