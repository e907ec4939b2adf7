"""MV data: segment sampling, motion maps (CoViAR's trace), cache reads and the loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import gop_videos, random_gops, synthetic_videos, write_mv_cache

import moclip.mv.data as mv_data
from moclip.mv.data import (
    EpochOrder,
    Kept,
    MVClips,
    MVSettings,
    Traces,
    accumulate,
    accumulate_batch,
    gop_steps,
    motion_map,
    mv_loader,
    read_segments,
    read_traces,
    sample_segments,
    trace_on_device,
)
from moclip.video.cache import read_mv

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


CASES = [(1, 12, 44, 61, 8, 3.0), (2, 12, 256, 340, 8, 4.0), (3, 5, 30, 30, 4, 6.0), (2, 7, 48, 64, 16, 9.0)]


@pytest.mark.parametrize(("n_gops", "gop", "h", "w", "cell", "sd"), CASES)
def test_batched_accumulation_equals_the_per_pixel_trace(n_gops, gop, h, w, cell, sd):
    """On random block fields (several GOPs, sizes that are not whole cells, motion that
    leaves the frame), the batched accumulation from cell-grid vectors (torch: on the CPU
    here, the training card in use) gives exactly the numbers of the loader's per-pixel trace."""
    mv, ft = random_gops(np.random.default_rng(gop + h), n_gops, gop, h, w, cell, sd)
    want = [accumulate(mv, ft, t, cell, (h, w)) for t in range(len(ft))]
    steps = torch.from_numpy(np.stack([gop_steps(mv, ft, t, gop - 1) for t in range(len(ft))]))
    got = accumulate_batch(steps, cell, (h, w))
    assert got.shape == (len(ft), 2, h, w) and got.dtype == torch.float32
    assert np.array_equal(got.numpy(), np.stack(want).transpose(0, 3, 1, 2))
    assert max(np.abs(x).max() for x in want) > 2 * cell  # traces crossed cells
    border = (np.stack(want)[..., 0] == 0) & (np.abs(np.stack(want)).sum(-1) > 0)
    assert border.any() or sd < 4  # some traces stopped at the frame's edge


def test_batched_accumulation_stays_on_its_device():
    """On ``meta`` (standing in for a GPU): every tensor the trace makes is on the steps'
    device, so a CPU tensor mixed in would fail here as on CUDA."""
    steps = torch.zeros(3, 11, 32, 43, 2, dtype=torch.int16, device="meta")
    out = accumulate_batch(steps, 8, (256, 340))
    assert out.device.type == "meta" and out.shape == (3, 2, 256, 340)


def test_gop_steps_are_the_p_frames_back_to_the_i_frame():
    mv = np.zeros((6, 1, 1, 2), np.float16)
    mv[:, 0, 0, 0] = [9, 1.5, -2.5, 3, 4, 5]
    st = gop_steps(mv, types("IPBPIP"), 3, 4)
    assert st[:, 0, 0, 0].tolist() == [3, 1, 0, 0]  # frames 3 and 1, latest first; B skipped; truncated
    with pytest.raises(ValueError, match="more than 1"):
        gop_steps(mv, types("IPPPPP"), 3, 1)


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


@pytest.mark.parametrize(("m", "r"), [(20.0, 0.5), (7.3, 0.3)])
def test_the_loader_traced_on_the_device_gives_the_workers_maps(tmp_path, m, r, monkeypatch):
    """The paper preset's loader on a GPU (workers ship vectors, traced in the training
    process) against today's (maps traced per pixel in the workers), run on the CPU: the
    same tensors, batch by batch, for seeded training draws and for the segment centres,
    with and without a worker; a batch of mixed frame sizes is traced and resized as before."""
    items = gop_videos(tmp_path, [(44, 61)] * 5 + [(30, 40)], [40, 13, 25, 7, 36, 30])
    s = MVSettings(accumulate=True, input_size=16, max_displacement=m, input_range=r)
    monkeypatch.setattr(mv_data, "TRACE_CHUNK", 2)  # a batch's 9 segments traced in 5 parts
    order = EpochOrder(len(items), seed=5)
    order.epoch = 1
    for seed, workers, sampler in ((5, 0, order), (5, 1, order), (None, 0, None)):
        old = list(mv_loader(MVClips(items, s, 3, seed=seed), 3, workers, sampler))
        new = list(mv_loader(MVClips(items, s, 3, seed=seed, traces=True), 3, workers, sampler))
        at = (order.order() if sampler else np.arange(len(items))).reshape(2, 3)
        for (xo, yo), (xn, yn), idx in zip(old, new, at, strict=True):
            # one grid: traces (int16); the 30x40 video among 44x61 ones: maps resized to 16 on the CPU
            assert isinstance(xn, Traces) == (5 not in idx) and (5 in idx or xn.steps.dtype == torch.int16)
            got = xn.to("cpu")
            assert got.dtype == torch.float32 and torch.equal(got, xo) and torch.equal(yo, yn)
            assert got.stride() == xo.stride()  # (dx, dy) innermost, as the maps: the same kernels after
    assert np.abs(old[0][0].numpy()).max() == r  # clipped at +-max_displacement
    with pytest.raises(ValueError, match="accumulated motion"):
        MVClips(items, MVSettings(accumulate=False), 3, traces=True)


def test_traces_are_read_as_the_workers_read_segments(tmp_path):
    """Each video's traces hold the segments ``read_segments`` draws for the same generator,
    padded to the video's longest trace."""
    (it,) = gop_videos(tmp_path, [(44, 61)], [40])
    s = MVSettings(accumulate=True)
    steps, cell, size = read_traces(it.path, 4, np.random.default_rng(3))
    assert (cell, size) == (8, (44, 61)) and steps.dtype == np.int16 and steps.shape[0] == 4
    t = Traces(torch.from_numpy(steps)[None], cell, size, s.max_displacement, s.input_range)
    assert torch.equal(t.to("cpu")[0], torch.from_numpy(read_segments(it.path, 4, s, np.random.default_rng(3))))


def test_the_trace_runs_where_it_pays_and_stays_on_its_device():
    """On a GPU (``meta`` stands in) the accumulation is traced in the training process,
    every tensor on the device; on a CPU in the workers; never without ``accumulate``."""
    s = MVSettings(accumulate=True)
    assert trace_on_device(s, "cuda:1") and trace_on_device(s, "meta")
    assert not trace_on_device(s, "cpu") and not trace_on_device(MVSettings(accumulate=False), "cuda")
    t = Traces(torch.zeros(2, 3, 11, 32, 43, 2, dtype=torch.int16), 8, (256, 340), 20.0, 0.5)
    out = t.pin_memory().to("meta", non_blocking=True) if torch.cuda.is_available() else t.to("meta")
    assert out.device.type == "meta" and out.shape == (2, 3, 2, 256, 340) and out.dtype == torch.float32
    kept = t.on("meta")
    assert kept.steps.device.type == "meta" and kept.to("meta").shape == (2, 3, 2, 256, 340)
    assert t.nbytes == 2 * 3 * 11 * 32 * 43 * 2 * 2


def test_kept_batches_are_read_once_or_every_pass_when_over_budget():
    reads = []

    def loader():
        for k in range(3):
            reads.append(k)
            yield torch.full((2, 4), float(k)), torch.tensor([k, k])

    class Loader:
        def __iter__(self):
            return loader()

        def __len__(self):
            return 3

    kept = Kept(Loader(), "cpu", budget=3 * 2 * 4 * 4)
    passes = [[x.clone() for x, _ in kept] for _ in range(3)]
    assert reads == [0, 1, 2] and kept.loader is None and len(kept) == 3  # once, then from memory
    assert all(torch.equal(a, b) for p in passes for a, b in zip(p, passes[0], strict=True))
    reads.clear()
    over = Kept(Loader(), "cpu", budget=3 * 2 * 4 * 4 - 1)
    again = [[x.clone() for x, _ in over] for _ in range(3)]
    assert reads == [0, 1, 2] * 3 and over.over and len(over) == 3  # a byte short: read every pass
    assert all(torch.equal(a, b) for p in again for a, b in zip(p, passes[0], strict=True))
