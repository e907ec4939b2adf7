"""Heads on precomputed features: the paper's fusion MLP, determinism, no test rows in training."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

import moclip.heads as heads
from moclip.dataset.videos import Video, write_manifest
from moclip.heads import HeadSettings, build_head, load_head, train_head, trainable_parameters
from moclip.io import BrokenFileError
from moclip.shards import DRAWS, pool_frames, read_shards


def test_fusion_head_is_the_papers_size():
    # CLIP ViT-B/32 (512) + EfficientNet-B0 (1280) -> 512 -> 101 classes: 0.97 M parameters.
    head = build_head("fusion", [512, 1280], 101, HeadSettings())
    assert trainable_parameters(head.net) == 1792 * 512 + 512 + 512 * 101 + 101 == 969_829
    assert [type(m).__name__ for m in head.net] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert trainable_parameters(build_head("clip_linear", [512], 101, HeadSettings()).net) == 512 * 101 + 101


def write_shard(path, ids, feats, valid):
    with h5py.File(path, "w") as h:
        h.create_dataset("video_id", data=np.array(ids, dtype=object), dtype=h5py.string_dtype())
        h["features"], h["valid"] = feats.astype(np.float32), np.array(valid)


@pytest.fixture
def feature_run(tmp_path):
    """9 videos a class, 3 classes; CLIP features carry the class only in 'appearance' pairs,
    MV features the rest; each video's index is written into feature 0 so the test can see
    which rows reach training."""
    rng = np.random.default_rng(0)
    rows, clip, mv = [], [], []
    parts = ["train"] * 5 + ["val"] * 2 + ["test"] * 2
    for label in range(3):
        for i, part in enumerate(parts):
            vid = f"v{label}_{i}"
            rows.append(Video(vid, f"C{label}/{vid}.avi", f"C{label}", label, i + 1, 1, 0, split1=part))
            c = rng.normal(0, 0.1, (4, 6))
            c[:, 1 + label] += 3
            m = rng.normal(0, 0.1, (3, 5))
            m[:, label] += 2
            c[:, 0] = len(rows)  # the row's number, recoverable after pooling
            clip.append(c)
            mv.append(m)
    valid = [True] * len(rows)
    valid[-1] = False  # a failed test video
    write_shard(tmp_path / "clip.h5", [r.video_id for r in rows], np.array(clip), valid)
    write_shard(tmp_path / "mv.h5", [r.video_id for r in rows], np.array(mv), valid)
    write_manifest(rows, tmp_path / "manifest.tsv")
    return rows, tmp_path


def run_head(d, s: HeadSettings, seeds: list[int], out: str) -> dict:
    """The fusion head's stage on the feature run in ``d``, its outputs under ``d / out``."""
    o = d / out
    return train_head(
        head="fusion",
        manifest=d / "manifest.tsv",
        split=1,
        clip=[d / "clip.h5"],
        mv=[d / "mv.h5"],
        settings=s,
        seeds=seeds,
        model=o / "model.pt",
        predictions=o / "predictions.tsv",
        training=o / "training.json",
        metrics=o / "metrics.json",
    )


def test_head_training_sees_no_test_row_and_counts_failed_as_miss(feature_run, monkeypatch):
    rows, d = feature_run
    seen = []
    real = heads.fit_head

    def spy(kind, dims, n, s, seed, xtr, ytr, xva, yva):
        seen.append((xtr.clone(), xva.clone()))
        return real(kind, dims, n, s, seed, xtr, ytr, xva, yva)

    monkeypatch.setattr(heads, "fit_head", spy)
    s = HeadSettings(hidden=16, lr=1e-2, epochs=30, batch_size=8, normalize="none")
    m = run_head(d, s, [0, 1], "out")
    test_numbers = {i + 1 for i, r in enumerate(rows) if r.split1 == "test"}
    for xtr, xva in seen:  # 5 train and 2 val videos a class
        assert len(xtr) == 15 and len(xva) == 6
    ids_used = {int(round(v)) for v in _row_numbers(rows, d, seen)}
    assert ids_used and not ids_used & test_numbers
    assert m["n_test"] == 6 and m["n_failed"] == 1 and m["failed_videos"] == [rows[-1].video_id]
    assert m["top1"] <= 5 / 6  # the failed video is a miss
    assert m["seeds"] == [0, 1] and len(m["top1_seeds"]) == 2
    training = json.loads((d / "out" / "training.json").read_text())  # the split table's "epoch kept"
    assert m["best_epochs"] == [training[k]["best_epoch"] for k in ("0", "1")]
    assert m["best_epoch"] == m["best_epochs"][0]
    model, meta = load_head(d / "out" / "model.pt")
    assert meta["classes"] == ["C0", "C1", "C2"] and meta["dims"] == [6, 5]


def _row_numbers(rows, d, seen):
    """Map training inputs back to manifest rows by matching pooled features exactly."""
    feats = read_shards([d / "clip.h5"])
    table = {
        tuple(np.round(pool_frames(f), 5)): i + 1
        for i, (r, f) in enumerate(zip(rows, (feats[r.video_id] for r in rows)))
        if f is not None
    }
    out = []
    for xtr, xva in seen:
        for x in torch.cat([xtr, xva]).numpy():
            out.append(table[tuple(np.round(x[:6], 5))])
    return out


def test_heads_are_deterministic_for_a_seed(feature_run):
    rows, d = feature_run
    s = HeadSettings(hidden=16, lr=1e-2, epochs=5, batch_size=4)
    for out in ("a", "b", "c"):
        run_head(d, s, [0 if out != "c" else 1], out)
    a, b, c = (torch.load(d / o / "model.pt", weights_only=True)["state_dict"] for o in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert (
        json.loads((d / "a" / "metrics.json").read_text())["top1"]
        == json.loads((d / "b" / "metrics.json").read_text())["top1"]
    )


def test_standardize_uses_training_statistics():
    norm = build_head("clip_linear", [3], 2, HeadSettings())[0]
    x = torch.tensor([[1.0, 10.0, 100.0], [3.0, 30.0, 300.0]])
    norm.fit(x)
    torch.testing.assert_close(norm(x).mean(0), torch.zeros(3))
    torch.testing.assert_close(norm(torch.tensor([[2.0, 20.0, 200.0]])), torch.zeros(1, 3))


def test_ties_on_val_top1_are_broken_by_val_loss_then_the_later_epoch():
    """Separable data: val top-1 reaches 1.0 early and stays, while the val loss still falls;
    the kept epoch is the tie's lowest loss, not its first epoch."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
    y = torch.arange(3).repeat(20)
    x = centres[y] + 0.3 * torch.randn(60, 2, generator=g)
    s = HeadSettings(hidden=8, lr=1e-2, epochs=40, batch_size=16, normalize="none", dropout=0.0)
    _, best, hist = heads.fit_head("fusion", [2], 3, s, 0, x[:45], y[:45], x[45:], y[45:])
    top = max(h["val_top1"] for h in hist)
    tied = [h for h in hist if h["val_top1"] == top]
    assert len(tied) > 1 and best != tied[0]["epoch"]  # the earliest tie is not kept
    assert best == min(tied, key=lambda h: (h["val_loss"], -h["epoch"]))["epoch"]


def test_fusion_on_mv_draws_sees_draw_e_mod_n_in_epoch_e(feature_run, monkeypatch):
    """heads.mv_draws: the training rows' MV columns come from the feature shard's draws,
    draw e mod N in epoch e (the authors' fresh views each epoch); val and test keep the
    fixed evaluation features; a shard without draws is an error naming it."""
    rows, d = feature_run
    train = [i for i, r in enumerate(rows) if r.split1 == "train"]
    draws = np.full((len(rows), 2, 5), np.nan, np.float16)
    for i in train:
        for k in range(2):
            draws[i, k] = 10 * (k + 1) + i % 5  # draw k of row i: recognisable
    with h5py.File(d / "mv.h5", "a") as h:
        h.create_dataset(DRAWS, data=draws)
    epochs_seen = []
    real = heads.fit_head

    def spy(kind, dims, n, s, seed, xtr, ytr, xva, yva):
        epochs_seen.extend([xtr(e)[:, dims[0] :].numpy() for e in range(3)])
        fixed_val.append(xva[:, dims[0] :].numpy())
        return real(kind, dims, n, s, seed, xtr, ytr, xva, yva)

    fixed_val = []
    monkeypatch.setattr(heads, "fit_head", spy)
    run_head(d, HeadSettings(hidden=8, epochs=3, batch_size=8, normalize="none", mv_draws=2), [0], "draws")
    e0, e1, e2 = epochs_seen
    np.testing.assert_array_equal(e0, draws[train, 0].astype(np.float32))
    np.testing.assert_array_equal(e1, draws[train, 1].astype(np.float32))
    np.testing.assert_array_equal(e2, e0)  # 2 draws: epoch 2 sees draw 0 again
    assert fixed_val[0].max() < 3  # val: the fixed features (around the class's 2), not draws (>= 10)
    with h5py.File(d / "mv.h5", "a") as h:
        del h[DRAWS]
    with pytest.raises(BrokenFileError, match=r"mv.h5: no train_draws .*; rebuild it with: \S*snakemake --forcerun "):
        run_head(d, HeadSettings(hidden=8, epochs=1, mv_draws=2), [0], "none")
