"""HDF5 caches: layout, failed records, atomic writes, determinism, shards in parallel."""

from __future__ import annotations

import h5py
import hdf5plugin
import numpy as np
import pytest
import torch
from conftest import flip_byte, moving_object_video

import moclip.video.cache as cache
from moclip.io import BrokenFileError, snakemake_program
from moclip.video.cache import (
    COMPRESSION,
    ENCODINGS,
    FrameStorage,
    _set_attrs,
    cache_failures,
    cache_shard,
    cache_video,
    open_cache,
    read_index,
    read_mv,
)
from moclip.video.codec import DecodeSettings
from moclip.video.frames import read_frames
from moclip.video.reencode import reencode_shard

SETTINGS = DecodeSettings(frame_count=4)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    moving_object_video(d / "v_right.avi", 3, 0, n=30)
    moving_object_video(d / "v_down.mp4", 0, 2, codec="libx264", bframes=2, n=30)
    (d / "v_empty.avi").write_bytes(b"")
    (d / "v_text.avi").write_text("not a video")
    return d


def test_cache_layout_and_attrs(videos, tmp_path):
    rec = cache_video(videos / "v_right.avi", "v_right", tmp_path / "mv.h5", tmp_path / "fr.h5", SETTINGS)
    assert rec.status == "ok" and rec.n_frames == 30
    mv, ft, rd, attrs = read_mv(tmp_path / "mv.h5")
    assert mv.dtype == np.float16 and mv.shape == (30, 30, 40, 2)
    assert ft.dtype == np.uint8 and bytes(ft).decode()[:13] == "IPPPPPPPPPPPI"
    assert rd.dtype == np.int16
    assert (attrs["video_id"], attrs["status"], attrs["error"], attrs["codec"]) == ("v_right", "ok", "", "mpeg4")
    assert (attrs["width"], attrs["height"], attrs["fps"], attrs["n_frames"], attrs["mv_cell"]) == (320, 240, 25, 30, 8)
    assert np.median(mv[5][mv[5, ..., 0] != 0][:, 0]) == 3
    frames, idx, fattrs = read_frames(tmp_path / "fr.h5")
    assert frames.shape == (4, 240, 320, 3) and frames.dtype == torch.uint8
    assert idx.dtype == np.int32 and idx.tolist() == [3, 11, 18, 26]
    assert fattrs["status"] == "ok" and fattrs["n_frames"] == 30


@pytest.mark.parametrize("name, message", [("v_empty.avi", "empty file"), ("v_text.avi", "cannot open")])
def test_failed_video_gets_failed_files_not_zeros(videos, tmp_path, name, message):
    rec = cache_video(videos / name, "bad", tmp_path / "mv.h5", tmp_path / "fr.h5", SETTINGS)
    assert rec.status == "failed" and message in rec.error
    for f in ("mv.h5", "fr.h5"):
        with h5py.File(tmp_path / f) as h:
            assert h.attrs["status"] == "failed" and message in h.attrs["error"]
            assert all(d.shape[0] == 0 for d in h.values())  # nothing passed off as features


def test_no_partial_file_on_crash(videos, tmp_path, monkeypatch):
    import moclip.video.cache as cache

    def boom(*a, **k):
        raise KeyboardInterrupt  # a kill arriving mid-decode

    monkeypatch.setattr(cache, "decode_video", boom)
    with pytest.raises(KeyboardInterrupt):
        cache_video(videos / "v_right.avi", "v", tmp_path / "mv.h5", tmp_path / "fr.h5", SETTINGS)
    assert list(tmp_path.iterdir()) == []


def test_a_long_video_streams_its_maps_to_the_same_cache(videos, tmp_path, monkeypatch):
    """A video past _HOLD_BYTES (hours long) is written chunk by chunk into a growing dataset
    instead of held in memory; the maps read back are the ones of a video written whole."""
    cache_video(videos / "v_right.avi", "v", tmp_path / "whole.h5", tmp_path / "f1.h5", SETTINGS)
    monkeypatch.setattr(cache, "_HOLD_BYTES", 1)  # every chunk the decoder hands over streams
    cache_video(videos / "v_right.avi", "v", tmp_path / "streamed.h5", tmp_path / "f2.h5", SETTINGS)
    with h5py.File(tmp_path / "whole.h5") as a, h5py.File(tmp_path / "streamed.h5") as b:
        assert a["mv"].maxshape[0] == 30 and b["mv"].maxshape[0] is None  # fixed size, and grown
        np.testing.assert_array_equal(a["mv"][()], b["mv"][()])


def test_two_runs_identical_bytes(videos, tmp_path):
    for run in ("a", "b"):
        cache_video(videos / "v_down.mp4", "v", tmp_path / run / "mv.h5", tmp_path / run / "fr.h5", SETTINGS)
    for f in ("mv.h5", "fr.h5"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


@pytest.mark.parametrize("threads", [1, 2])
def test_shard_index_and_failures(videos, tmp_path, threads):
    items = sorted(videos.iterdir())
    recs = cache_shard(
        videos=items,
        videos_root=videos.parent,
        settings=SETTINGS,
        compression="lz4",
        mv=tmp_path / "mv",
        frames=tmp_path / "fr",
        index=tmp_path / "index.tsv",
        threads=threads,
    )
    assert [r.video_id for r in recs] == [p.stem for p in items]
    assert [r.path for r in recs] == [f"{videos.name}/{p.name}" for p in items]  # relative to videos_root
    assert read_index(tmp_path / "index.tsv") == recs
    assert sorted(p.name for p in (tmp_path / "mv").iterdir()) == sorted(f"{p.stem}.h5" for p in items)
    failed = cache_failures(indexes=[tmp_path / "index.tsv"], out=tmp_path / "failures.tsv")
    assert {r.video_id for r in failed} == {"v_empty", "v_text"}
    lines = (tmp_path / "failures.tsv").read_text().splitlines()
    assert lines[0] == "video_id\tpath\terror" and len(lines) == 3 and "empty file" in "".join(lines)


def test_a_video_cut_at_max_frames_is_listed_with_the_frames_it_leaves_out(videos, tmp_path, caplog):
    """decode.max_frames cuts a long video: its cache's attrs, its index line, the log and
    rule cache_failures' cut.tsv say so, with how many frames were left out; the others are
    not listed, and a failed video is a failure, not a cut one."""
    items = sorted(videos.iterdir())  # 30-frame v_down.mp4 (B-frames) and v_right.avi, two bad files
    kw = dict(videos=items, videos_root=videos.parent, compression="lz4", mv=tmp_path / "mv", frames=tmp_path / "fr")
    recs = cache_shard(**kw, settings=DecodeSettings(frame_count=4, max_frames=24), index=tmp_path / "index.tsv")
    assert {r.video_id: r.frames_left_out for r in recs} == {"v_down": 6, "v_empty": 0, "v_right": 6, "v_text": 0}
    assert read_index(tmp_path / "index.tsv") == recs
    _, _, _, attrs = read_mv(tmp_path / "mv" / "v_right.h5")
    assert (attrs["n_frames"], attrs["truncated"], attrs["frames_left_out"]) == (24, True, 6)
    assert attrs["notes"] == "read the first 24 frames only (decode.max_frames): 6 frames left out"
    short = f"{videos.name}/v_right.avi"
    assert (
        f"cut video v_right ({short}): read up to decode.max_frames: its first 24 frames cached, 6 left out of 30"
        in (caplog.text)
    )
    index = tmp_path / "index.tsv"
    cache_failures(indexes=[index], out=tmp_path / "f.tsv", reencoded=tmp_path / "r.tsv", cut=tmp_path / "cut.tsv")
    assert (tmp_path / "cut.tsv").read_text().splitlines() == [
        "video_id\tpath\tn_frames\tframes_left_out",
        f"v_down\t{videos.name}/v_down.mp4\t24\t6",
        f"v_right\t{short}\t24\t6",
    ]
    assert [(r.video_id, r.n_frames, r.frames_left_out) for r in read_index(tmp_path / "cut.tsv")] == [
        ("v_down", 24, 6),
        ("v_right", 24, 6),
    ]
    assert [r.video_id for r in read_index(tmp_path / "f.tsv")] == ["v_empty", "v_text"]
    # Read whole (max_frames at the videos' length): nothing cut, a header only.
    cache_shard(**kw, settings=DecodeSettings(frame_count=4, max_frames=30), index=index)
    cache_failures(indexes=[index], out=tmp_path / "f.tsv", cut=tmp_path / "cut.tsv")
    assert (tmp_path / "cut.tsv").read_text() == "video_id\tpath\tn_frames\tframes_left_out\n"


def test_parallel_shard_equals_serial(videos, tmp_path):
    items = sorted(videos.iterdir())
    for t in (1, 2):
        cache_shard(
            videos=items,
            videos_root=videos,
            settings=SETTINGS,
            compression="lz4",
            mv=tmp_path / f"mv{t}",
            frames=tmp_path / f"fr{t}",
            index=tmp_path / f"i{t}.tsv",
            threads=t,
        )
    for v in (p.stem for p in items):
        assert (tmp_path / "mv1" / f"{v}.h5").read_bytes() == (tmp_path / "mv2" / f"{v}.h5").read_bytes()


def test_shard_from_reencoded_files_names_the_originals_and_failed_reencodes(videos, tmp_path):
    """dataset.reencode: the cache decodes each re-encoded file (CoViAR's 340x256, GOP 12);
    a video whose re-encode failed is a failed record saying so, under its original path."""
    items = [videos / "v_right.avi", videos / "v_empty.avi", videos / "v_down.mp4"]
    re_dir, re_index = tmp_path / "reencoded", tmp_path / "reencoded.tsv"
    reencode_shard(videos=items, videos_root=videos, recipe="coviar", out=re_dir, index=re_index)
    args = dict(videos=items, videos_root=videos, settings=SETTINGS, compression="lz4", mv=tmp_path / "mv")
    recs = cache_shard(
        **args, frames=tmp_path / "fr", index=tmp_path / "index.tsv", reencoded=re_dir, reencode_index=re_index
    )
    assert [(r.video_id, r.path, r.status, r.n_frames) for r in recs] == [
        ("v_right", "v_right.avi", "ok", 30),
        ("v_empty", "v_empty.avi", "failed", 0),
        ("v_down", "v_down.mp4", "ok", 30),
    ]
    assert recs[1].error == "re-encode failed: empty file (0 bytes)" and read_index(tmp_path / "index.tsv") == recs
    assert [r.reencoded for r in recs] == [True, False, True]  # v_empty: no re-encode to decode
    mv, ft, _, attrs = read_mv(tmp_path / "mv" / "v_down.h5")  # H.264 with B-frames at 320x240 before
    assert (attrs["width"], attrs["height"], attrs["codec"]) == (340, 256, "mpeg4") and mv.shape == (30, 32, 43, 2)
    assert bytes(ft).decode() == ("I" + "P" * 11) * 2 + "IPPPPP"
    _, _, attrs = read_frames(tmp_path / "fr" / "v_empty.h5")
    assert attrs["status"] == "failed" and attrs["error"] == recs[1].error
    # A video the re-encode index does not list is a workflow error, named.
    (tmp_path / "partial.tsv").write_text("video_id\tpath\tstatus\terror\nv_right\tv_right.avi\treencoded\t\n")
    with pytest.raises(ValueError, match="no re-encode of v_empty, v_down"):
        cache_shard(
            **args,
            frames=tmp_path / "f2",
            index=tmp_path / "i2.tsv",
            reencoded=re_dir,
            reencode_index=tmp_path / "partial.tsv",
        )


def test_mv_maps_lz4_by_default_and_every_filter_round_trips(videos, tmp_path):
    maps = {}
    for comp in COMPRESSION:
        out = tmp_path / comp
        rec = cache_video(videos / "v_down.mp4", "v", out / "mv.h5", out / "fr.h5", SETTINGS, comp)
        assert rec.status == "ok"
        maps[comp] = read_mv(out / "mv.h5")[0]
    assert all(np.array_equal(m, maps["none"]) for m in maps.values())
    cache_video(videos / "v_down.mp4", "v", tmp_path / "d" / "mv.h5", tmp_path / "d" / "fr.h5", SETTINGS)
    with h5py.File(tmp_path / "d" / "mv.h5") as f:
        filter_id = f["mv"].id.get_create_plist().get_filter(0)[0]
    assert filter_id == hdf5plugin.LZ4_ID
    assert (tmp_path / "d" / "mv.h5").stat().st_size < (tmp_path / "none" / "mv.h5").stat().st_size / 3


def test_unknown_compression_is_named(videos, tmp_path):
    with pytest.raises(ValueError, match="'snappy'.*lz4"):
        cache_video(videos / "v_right.avi", "v", tmp_path / "mv.h5", tmp_path / "fr.h5", SETTINGS, "snappy")
    assert list(tmp_path.iterdir()) == []


def test_attrs_read_back_as_attrs_update_writes_them(tmp_path):
    values = {
        "video_id": "v_ÄpplyÉyeMakeup_g01_c01",
        "error": "",
        "width": 320,
        "fps": 29.97,
        "truncated": False,
        "n_mv_frames": np.int64(7),
    }
    with h5py.File(tmp_path / "ll.h5", "w") as f:
        _set_attrs(f, values)
    with h5py.File(tmp_path / "hl.h5", "w") as f:
        f.attrs.update(values)
    with h5py.File(tmp_path / "ll.h5") as a, h5py.File(tmp_path / "hl.h5") as b:
        got, want = dict(a.attrs), dict(b.attrs)
    assert got == want and {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in want.items()}


def test_missing_file_and_directory_are_failed_videos_named_by_reason(tmp_path):
    for path, reason in ((tmp_path / "nope.avi", "cannot read: No such file or directory"), (tmp_path, "not a file")):
        rec = cache_video(path, "v", tmp_path / "o" / "mv.h5", tmp_path / "o" / "fr.h5", SETTINGS)
        assert rec.status == "failed" and rec.error == reason


def test_a_cut_cache_names_itself_and_the_rebuild_of_its_shard(videos, tmp_path):
    shard = tmp_path / "cache" / "frames" / "shard-00001"
    shard.mkdir(parents=True)
    cache_video(videos / "v_right.avi", "v_right", tmp_path / "mv.h5", shard / "v_right.h5", SETTINGS)
    with open(shard / "v_right.h5", "r+b") as f:
        f.truncate(5000)  # a copy cut short, outside any job

    def shape(path):  # what the stages do: open, read a dataset
        with open_cache(path) as f:
            return f["frame_index"].shape

    for read in (read_frames, shape):
        with pytest.raises(BrokenFileError) as e:
            read(shard / "v_right.h5")
        assert str(e.value).startswith(f"{shard / 'v_right.h5'}: OSError: Unable to synchronously open file (truncated")
        assert (
            e.value.remedy == f"{snakemake_program()} --forcerun {shard}"
        )  # the shard's directory: rule cache_shard's output
    with pytest.raises(BrokenFileError, match=r"shard-00002\.tsv: missing; rebuild it with: \S*snakemake --forcerun"):
        read_index(tmp_path / "cache" / "index" / "shard-00002.tsv")


# --------------------------------------------------------------------------- how the frames are stored


def _cache_both(videos, tmp_path, name="v_right.avi"):
    """One video cached with JPEG frames (the default) and with raw ones."""
    out = {}
    for enc in ENCODINGS:
        fr = tmp_path / f"fr-{enc}.h5"
        rec = cache_video(videos / name, "v", tmp_path / f"mv-{enc}.h5", fr, SETTINGS, storage=FrameStorage(enc))
        assert rec.status == "ok"
        out[enc] = fr
    return out


def test_frames_are_jpeg_by_default_and_decode_close_to_the_raw_ones(videos, tmp_path):
    files = _cache_both(videos, tmp_path)
    assert FrameStorage() == FrameStorage("jpeg", 95)
    with h5py.File(files["jpeg"]) as f:
        assert set(f) == {"frames_jpeg", "frame_ends", "frame_index"} and f["frame_ends"].shape == (4,)
        assert f["frames_jpeg"].shape == (f["frame_ends"][-1],) and f["frames_jpeg"].dtype == np.uint8
        assert (f.attrs["encoding"], f.attrs["frame_height"], f.attrs["frame_width"]) == ("jpeg", 240, 320)
        assert f.attrs["jpeg_quality"] == 95
    with h5py.File(files["raw"]) as f:
        assert set(f) == {"frames", "frame_index"} and (f.attrs["encoding"], f.attrs["jpeg_quality"]) == ("raw", 0)
    jpeg, idx, attrs = read_frames(files["jpeg"])
    raw, raw_idx, raw_attrs = read_frames(files["raw"])
    assert jpeg.shape == raw.shape == (4, 240, 320, 3) and jpeg.dtype == raw.dtype == torch.uint8
    assert idx.tolist() == raw_idx.tolist() and attrs["n_frames"] == raw_attrs["n_frames"] == 30
    error = (jpeg.float() - raw.float()).abs()
    assert 0 < error.mean() < 2 and files["jpeg"].stat().st_size < 0.15 * files["raw"].stat().st_size


def test_jpeg_frames_are_the_same_bytes_every_time(videos, tmp_path):
    a = _cache_both(videos, tmp_path / "a")["jpeg"]
    b = _cache_both(videos, tmp_path / "b")["jpeg"]
    assert a.read_bytes() == b.read_bytes()
    low = tmp_path / "q50.h5"
    cache_video(videos / "v_right.avi", "v", tmp_path / "mv.h5", low, SETTINGS, storage=FrameStorage("jpeg", 50))
    assert low.stat().st_size < a.stat().st_size and read_frames(low)[2]["jpeg_quality"] == 50


def test_a_raw_frame_cache_written_before_jpeg_still_reads(videos, tmp_path):
    """A cache of the layout before frames.encoding (``frames`` and no ``encoding`` attr)
    reads as raw frames; the workflow rebuilds such caches anyway (cache_shard's params
    changed: tests/test_workflow.py), but ``moclip predict`` and old runs read them."""
    raw = _cache_both(videos, tmp_path)["raw"]
    old = tmp_path / "old.h5"
    with h5py.File(raw) as f, h5py.File(old, "w") as g:
        g.create_dataset("frames", data=f["frames"][()])
        g.create_dataset("frame_index", data=f["frame_index"][()])
        _set_attrs(g, {k: v for k, v in f.attrs.items() if k not in ("encoding", "frame_height", "frame_width")})
    got, idx, attrs = read_frames(old)
    assert "encoding" not in attrs and torch.equal(got, read_frames(raw)[0]) and idx.tolist() == [3, 11, 18, 26]


def test_broken_jpeg_frames_name_their_cache(videos, tmp_path):
    shard = tmp_path / "cache" / "frames" / "shard-00000"
    shard.mkdir(parents=True)
    path = shard / "v.h5"
    cache_video(videos / "v_right.avi", "v", tmp_path / "mv.h5", path, SETTINGS)
    with h5py.File(path, "r+") as f:
        data = f["frames_jpeg"][()]
        data[f["frame_ends"][0] : f["frame_ends"][1]] = 7  # the second frame's bytes overwritten
        f["frames_jpeg"][...] = data
    with pytest.raises(
        BrokenFileError, match=rf"^{path}: RuntimeError: .*rebuild it with: \S*snakemake --forcerun {shard}"
    ):
        read_frames(path)
    with h5py.File(path, "r+") as f:
        f["frame_ends"][-1] = 10  # ends that do not cut the bytes
    with pytest.raises(BrokenFileError, match="frame_ends .* do not cut frames_jpeg"):
        read_frames(path)


def test_unknown_frame_encoding_and_quality_are_named():
    with pytest.raises(ValueError, match=r"frames.encoding: unknown 'jpg' \(did you mean 'jpeg'\?\)"):
        FrameStorage("jpg")
    with pytest.raises(ValueError, match=r"frames.jpeg_quality=101: must be 1-100$"):
        FrameStorage("jpeg", 101)


@pytest.mark.parametrize(("kind", "dataset"), [("frames", "frames_jpeg"), ("mv", "mv"), ("mv", "frame_type")])
def test_one_flipped_byte_in_a_cache_is_a_broken_file_naming_it(videos, tmp_path, kind, dataset):
    """Every array of an MV and a frame cache carries a checksum, checked on every read: one
    byte flipped in the middle of a JPEG frame (which libjpeg would decode with a warning
    only) or of the MV maps is a BrokenFileError naming the file and its shard's rebuild."""
    shard = tmp_path / "cache" / kind / "shard-00000"
    shard.mkdir(parents=True)
    mv, frames = (
        tmp_path / "cache" / "mv" / "shard-00000" / "v.h5",
        tmp_path / "cache" / "frames" / "shard-00000" / "v.h5",
    )
    mv.parent.mkdir(parents=True, exist_ok=True)
    frames.parent.mkdir(parents=True, exist_ok=True)
    cache_video(videos / "v_right.avi", "v", mv, frames, SETTINGS)
    path = frames if kind == "frames" else mv
    with h5py.File(path, "r") as f:
        assert all(f[k].fletcher32 for k in f)
    flip_byte(path, dataset)
    with pytest.raises(BrokenFileError, match=rf"^{path}: .*rebuild it with: \S*snakemake --forcerun {path.parent}"):
        read_frames(path) if kind == "frames" else read_mv(path)


def test_a_cache_written_before_checksums_still_reads(videos, tmp_path, monkeypatch):
    """A cache without checksums (written before they came) reads as before; the next run
    rebuilds it all the same, since the cache code's digest, a param of its rule, changed."""
    monkeypatch.setattr(cache, "CHECKED", {})
    cache_video(videos / "v_right.avi", "v", tmp_path / "mv.h5", tmp_path / "fr.h5", SETTINGS)
    monkeypatch.undo()
    with h5py.File(tmp_path / "mv.h5") as f, h5py.File(tmp_path / "fr.h5") as g:
        assert not any(f[k].fletcher32 for k in f) and not any(g[k].fletcher32 for k in g)
    assert read_mv(tmp_path / "mv.h5")[0].shape == (30, 30, 40, 2)
    assert read_frames(tmp_path / "fr.h5")[0].shape == (4, 240, 320, 3)


def _vfr_video(path, intervals_ms, n: int = 30, size: int = 64) -> list[int]:
    """MPEG-4 in Matroska, nominally 25 fps, whose frames' pts (ms) follow ``intervals_ms``
    in turn: the container keeps the nominal rate whatever the real one is."""
    import fractions

    import av

    tb = fractions.Fraction(1, 1000)
    pts, t = [], 0
    with av.open(str(path), "w", format="matroska") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = size, size, "yuv420p"
        s.codec_context.time_base = s.time_base = tb
        for i in range(n):
            img = np.zeros((size, size, 3), np.uint8)
            img[:, (2 * i) % size] = 255  # a bar moving right: P-frames carry vectors
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = t, tb
            pts.append(t)
            t += intervals_ms[i % len(intervals_ms)]
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return pts


def test_a_variable_frame_rate_video_records_its_measured_rate_and_timestamps(tmp_path):
    """Matroska says 25 fps for frames 93 ms and 40 ms apart in turn (about 15 a second):
    the cache keeps the nominal rate, and beside it the frames' own times and the rate they
    give; a constant-rate video's measured rate is its nominal one."""
    pts = _vfr_video(tmp_path / "vfr.mkv", [93, 40])
    rec = cache_video(tmp_path / "vfr.mkv", "vfr", tmp_path / "mv.h5", tmp_path / "fr.h5", DecodeSettings())
    assert rec.status == "ok", rec.error
    _, _, _, attrs = read_mv(tmp_path / "mv.h5")
    with h5py.File(tmp_path / "mv.h5") as f:
        stamps = f["timestamps"][()]
    assert attrs["fps"] == 25.0 and stamps.tolist() == [p / 1000 for p in pts]
    assert attrs["measured_fps"] == pytest.approx(29 / 1.955) and 14 < attrs["measured_fps"] < 16
    assert "variable or mislabelled frame rate: 14.83 fps measured, 25 nominal" in attrs["notes"]
    with h5py.File(tmp_path / "fr.h5") as f:
        assert f.attrs["measured_fps"] == attrs["measured_fps"]
    _vfr_video(tmp_path / "cfr.mkv", [40])
    cache_video(tmp_path / "cfr.mkv", "cfr", tmp_path / "mv2.h5", tmp_path / "fr2.h5", DecodeSettings())
    _, _, _, attrs = read_mv(tmp_path / "mv2.h5")
    assert attrs["measured_fps"] == pytest.approx(25.0) and "frame rate" not in attrs["notes"]
