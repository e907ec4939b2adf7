"""The re-encode stage: a shard's videos in CoViAR's format, or only those without motion vectors,
and an index that says which were re-encoded and names each failure."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import moving_object_video

from moclip.io import read_tsv
from moclip.video.cache import cache_failures, cache_shard, read_index, read_mv
from moclip.video.codec import DecodeSettings
from moclip.video.encode import encode_video
from moclip.video.reencode import INDEX_COLUMNS, ORIGINAL, REENCODED, reencode_shard, reencode_video


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    """Two good videos (one with B-frames and a GOP of 5) and a file that is not a video."""
    root = tmp_path_factory.mktemp("UCF-101")
    moving_object_video(root / "Right" / "v_Right_g01_c01.avi", 3, 0, n=30)
    moving_object_video(root / "Down" / "v_Down_g01_c01.avi", 0, 2, bframes=2, n=30)
    (root / "Down" / "v_Down_g02_c01.avi").write_text("not a video")
    videos = [
        root / "Right" / "v_Right_g01_c01.avi",
        root / "Down" / "v_Down_g02_c01.avi",
        root / "Down" / "v_Down_g01_c01.avi",
    ]
    return root, videos


@pytest.mark.parametrize("threads", [1, 2])
def test_shard_reencodes_every_video_and_names_the_one_that_fails(shard, tmp_path, threads, caplog):
    root, videos = shard
    caplog.set_level(logging.INFO, logger="moclip")
    out, index = tmp_path / "reencoded", tmp_path / "index" / "shard-00000.tsv"
    records = reencode_shard(videos=videos, videos_root=root, recipe="coviar", out=out, index=index, threads=threads)
    rows = read_tsv(index)
    assert list(rows[0]) == list(INDEX_COLUMNS)
    assert [(r["video_id"], r["path"], r["status"]) for r in rows] == [
        ("v_Right_g01_c01", "Right/v_Right_g01_c01.avi", "reencoded"),
        ("v_Down_g02_c01", "Down/v_Down_g02_c01.avi", "failed"),
        ("v_Down_g01_c01", "Down/v_Down_g01_c01.avi", "reencoded"),
    ]
    assert rows[1]["error"].startswith("cannot open:") and [r.error for r in records] == [r["error"] for r in rows]
    assert "v_Down_g02_c01" in caplog.text and "videos 3/3" in caplog.text and "2 re-encoded, 1 failed" in caplog.text
    # One file a good video, none for the failed one, no temp files left.
    assert sorted(p.name for p in out.iterdir()) == ["v_Down_g01_c01.avi", "v_Right_g01_c01.avi"]
    for p in out.iterdir():
        with av.open(str(p)) as c:
            s = c.streams.video[0]
            assert (s.codec_context.name, s.width, s.height) == ("mpeg4", 340, 256)
            types = "".join(av.video.frame.PictureType(f.pict_type).name for f in c.decode(s))
        assert types == ("I" + "P" * 11) * 2 + "IPPPPP", p.name


def test_parallel_shard_equals_serial_and_unknown_recipe_is_named(shard, tmp_path):
    root, videos = shard
    for t in (1, 2):
        reencode_shard(
            videos=videos,
            videos_root=root,
            recipe="coviar",
            out=tmp_path / f"o{t}",
            index=tmp_path / f"{t}.tsv",
            threads=t,
        )
    for name in ("v_Right_g01_c01.avi", "v_Down_g01_c01.avi"):
        assert (tmp_path / "o1" / name).read_bytes() == (tmp_path / "o2" / name).read_bytes()
    with pytest.raises(ValueError, match="'h264'.*coviar"):
        reencode_shard(videos=videos, videos_root=root, recipe="h264", out=tmp_path / "x", index=tmp_path / "x.tsv")


@pytest.fixture(scope="module")
def mixed_shard(tmp_path_factory):
    """An MJPEG video and an MPEG-4 Part 2 one (the latter with vectors), and two without
    vectors in MPEG-4's own codec: intra-only, and one frame; a file that is not a video."""
    root = tmp_path_factory.mktemp("UCF-101")
    moving_object_video(root / "Right" / "v_Right_g01_c01.avi", 3, 0, codec="mjpeg", pix_fmt="yuvj420p")
    moving_object_video(root / "Down" / "v_Down_g01_c01.avi", 0, 2)
    moving_object_video(root / "Down" / "v_Down_g02_c01.avi", 0, 2, gop=1)
    encode_video(root / "Down" / "v_Down_g03_c01.avi", [np.full((64, 64, 3), 90, np.uint8)])
    (root / "Down" / "v_Down_g04_c01.avi").write_text("not a video")
    return root, sorted(root.glob("*/*.avi"))


STATUS = {  # decode.reencode_unsupported: only what has no vectors is re-encoded
    "v_Down_g01_c01": "original",  # MPEG-4 with P-frames
    "v_Down_g02_c01": "reencoded",  # MPEG-4, every frame intra
    "v_Down_g03_c01": "original",  # one frame: nothing to move, decodes as it is
    "v_Down_g04_c01": "original",  # unreadable: the cache names why
    "v_Right_g01_c01": "reencoded",  # MJPEG
}


@pytest.mark.parametrize("threads", [1, 2])
def test_only_videos_without_vectors_are_reencoded_and_the_index_says_which(mixed_shard, tmp_path, threads):
    root, videos = mixed_shard
    out, index = tmp_path / "reencoded", tmp_path / "index.tsv"
    records = reencode_shard(videos=videos, videos_root=root, recipe=None, out=out, index=index, threads=threads)
    assert {r["video_id"]: r["status"] for r in read_tsv(index)} == STATUS
    assert [r.status for r in records] == [r["status"] for r in read_tsv(index)]
    assert sorted(p.name for p in out.iterdir()) == ["v_Down_g02_c01.avi", "v_Right_g01_c01.avi"]
    with av.open(str(out / "v_Right_g01_c01.avi")) as c:  # the default settings: MPEG-4 Part 2 at its own size
        s = c.streams.video[0]
        assert (s.codec_context.name, s.width, s.height) == ("mpeg4", 320, 240)
        types = "".join(av.video.frame.PictureType(f.pict_type).name for f in c.decode(s))
    assert types == "I" + "P" * 11 + "I" + "P" * 11

    # The cache decodes the re-encodes and the other videos themselves; its index and
    # reencoded.tsv name the re-encoded ones, failures.tsv the unreadable one.
    recs = cache_mixed(root, videos, tmp_path, reencoded=out, reencode_index=index, threads=threads)
    assert {r.video_id: (r.status, r.reencoded) for r in recs} == {
        "v_Down_g01_c01": ("ok", False),
        "v_Down_g02_c01": ("ok", True),
        "v_Down_g03_c01": ("ok", False),
        "v_Down_g04_c01": ("failed", False),
        "v_Right_g01_c01": ("ok", True),
    }
    assert read_index(tmp_path / "cache.tsv") == recs and recs[3].error.startswith("cannot open")
    mv, _, _, attrs = read_mv(tmp_path / "mv" / "v_Right_g01_c01.h5")
    assert attrs["codec"] == "mpeg4" and attrs["n_mv_frames"] == 22 and np.median(mv[5][mv[5, ..., 0] != 0][:, 0]) == 3
    assert read_mv(tmp_path / "mv" / "v_Down_g01_c01.h5")[3]["codec"] == "mpeg4"
    failed = cache_failures(indexes=[tmp_path / "cache.tsv"], out=tmp_path / "f.tsv", reencoded=tmp_path / "r.tsv")
    assert [r.video_id for r in failed] == ["v_Down_g04_c01"]
    assert read_tsv(tmp_path / "r.tsv") == [
        {"video_id": "v_Down_g02_c01", "path": "Down/v_Down_g02_c01.avi", "status": "ok", "error": ""},
        {"video_id": "v_Right_g01_c01", "path": "Right/v_Right_g01_c01.avi", "status": "ok", "error": ""},
    ]


def cache_mixed(root: Path, videos: list[Path], out: Path, **kw) -> list:
    """cache_shard on the mixed shard into ``out`` (mv/, fr/, cache.tsv)."""
    return cache_shard(
        videos=videos,
        videos_root=root,
        settings=DecodeSettings(frame_count=4),
        compression="lz4",
        mv=out / "mv",
        frames=out / "fr",
        index=out / "cache.tsv",
        **kw,
    )


def test_without_the_option_the_mjpeg_video_fails_by_name(mixed_shard, tmp_path):
    root, videos = mixed_shard
    recs = cache_mixed(root, videos, tmp_path)
    errors = {r.video_id: r.error for r in recs if r.status != "ok"}
    assert set(errors) == {"v_Right_g01_c01", "v_Down_g02_c01", "v_Down_g04_c01"}
    assert "codec 'mjpeg' exported no motion vectors" in errors["v_Right_g01_c01"]
    assert "codec 'mpeg4' exported no motion vectors: all 24 frames are intra-coded" in errors["v_Down_g02_c01"]
    assert not any(r.reencoded for r in recs)


def test_predict_reencodes_a_new_video_as_the_run_would_have(mixed_shard, tmp_path):
    """`moclip predict` on a run made with decode.reencode_unsupported: a video without
    vectors is re-encoded first (the default settings), one with vectors is not; with
    dataset.reencode every video is, by its recipe. It takes the stage's own plan and
    re-encode (reencode_plan, reencode_video)."""
    from moclip.predict import run_reencode_plan
    from moclip.video.encode import REENCODE, EncodeSettings

    root, _ = mixed_shard
    decode = {"max_frames": DecodeSettings().max_frames}

    def status(plan, rel: str) -> str:
        return reencode_video(root / rel, "v", tmp_path / f"{rel.replace('/', '_')}.avi", *plan).status

    assert run_reencode_plan({"dataset": {"reencode": "none"}, "decode": decode}) is None
    plan = run_reencode_plan({"dataset": {"reencode": "none"}, "decode": {**decode, "reencode_unsupported": True}})
    assert plan == (EncodeSettings(), decode["max_frames"])
    assert status(plan, "Right/v_Right_g01_c01.avi") == REENCODED
    assert status(plan, "Down/v_Down_g01_c01.avi") == ORIGINAL
    assert status(plan, "Down/v_Down_g04_c01.avi") == ORIGINAL  # unreadable: the cache says why
    coviar = run_reencode_plan({"dataset": {"reencode": "coviar"}, "decode": {**decode, "reencode_unsupported": True}})
    assert coviar == (REENCODE["coviar"], 0)
    assert status(coviar, "Down/v_Down_g01_c01.avi") == REENCODED
