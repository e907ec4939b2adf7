"""The re-encode stage: a shard's videos in CoViAR's format, and an index that names each failure."""

from __future__ import annotations

import logging

import av
import pytest
from conftest import moving_object_video

from moclip.io import read_tsv
from moclip.reencode import INDEX_COLUMNS, reencode_shard


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
        ("v_Right_g01_c01", "Right/v_Right_g01_c01.avi", "ok"),
        ("v_Down_g02_c01", "Down/v_Down_g02_c01.avi", "failed"),
        ("v_Down_g01_c01", "Down/v_Down_g01_c01.avi", "ok"),
    ]
    assert rows[1]["error"].startswith("cannot open:") and [r.error for r in records] == [r["error"] for r in rows]
    assert "v_Down_g02_c01" in caplog.text and "videos 3/3" in caplog.text
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
