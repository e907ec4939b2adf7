"""The embedded demo dataset: UCF101's layout and the other formats, ambiguous streams, determinism, CLI."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import Counter

import av
import numpy as np
import pytest
from conftest import TINY_DEMO

from moclip.dataset.demo import (
    LAYOUTS,
    DemoSpec,
    hmdb51_class,
    hmdb51_tags,
    make_demo_dataset,
    make_scale_dataset,
    render_clip,
    ucf101_shaped_lengths,
)
from moclip.dataset.formats import FORMATS
from moclip.dataset.manifest import build_manifest
from moclip.video.cache import cache_video, read_mv
from moclip.video.codec import DecodeSettings


def test_layout_and_splits_follow_ucf101(tiny_demo):
    videos, lists = tiny_demo
    classes = TINY_DEMO.classes()
    assert sorted(p.name for p in videos.iterdir()) == sorted(classes)
    assert (lists / "classInd.txt").read_bytes().startswith(f"1 {classes[0]}\r\n".encode())
    for k in (1, 2, 3):
        assert (lists / f"trainlist0{k}.txt").read_bytes().endswith(b"\r\n")
    rows = build_manifest(videos, lists, splits=[1, 2, 3], val_groups=1)
    assert len(rows) == 9 * 5
    for k in (1, 2, 3):
        assert {r.group for r in rows if r.split(k) == "test"} == set(TINY_DEMO.test_groups(k))
    assert {r.path.split("/")[1] for r in rows} == {f"v_{c}_g{g:02d}_c01.avi" for c in classes for g in range(1, 6)}


def test_every_appearance_and_motion_shared_by_several_classes():
    spec = DemoSpec()
    classes = spec.classes()
    for a in spec.appearances:
        assert sum(c.startswith(a) for c in classes) == len(spec.motions) >= 2
    for m in spec.motions:
        assert sum(c.endswith(m) for c in classes) == len(spec.appearances) >= 2


def test_encoded_like_ucf101_and_motion_visible(tiny_demo, tmp_path):
    videos, _ = tiny_demo
    path = videos / "BallRise" / "v_BallRise_g02_c01.avi"
    cache_video(path, "v", tmp_path / "mv.h5", tmp_path / "fr.h5", DecodeSettings())
    mv, ft, _, attrs = read_mv(tmp_path / "mv.h5")
    assert (attrs["codec"], attrs["width"], attrs["height"], attrs["fps"], attrs["n_frames"]) == (
        "mpeg4",
        320,
        240,
        25,
        TINY_DEMO.frames,
    )
    moving = mv[ft == ord("P")].astype(np.float32)
    moving = moving[np.abs(moving).sum(-1) > 1.5]  # the object, not encoder noise
    assert np.median(moving[:, 1]) < -1  # rising: content moves up (dy < 0)


def test_the_motion_field_carries_nothing_of_the_appearance(tiny_demo, tmp_path):
    """Each appearance moves the same silhouette along the same trajectory for a (motion,
    group, clip): in the decoded vectors, the moving region of BallRise overlaps BoxRise's
    and KiteRise's and moves alike (up to the encoder's response to colour and scene), far
    more than BallFall's, so the MV stream alone cannot tell appearances apart."""
    videos, _ = tiny_demo

    def field(name: str) -> tuple[np.ndarray, np.ndarray]:
        path = videos / name / f"v_{name}_g02_c01.avi"
        cache_video(path, name, tmp_path / f"{name}.h5", tmp_path / "f.h5", DecodeSettings())
        mv, ft, _, _ = read_mv(tmp_path / f"{name}.h5")
        mv = mv[ft == ord("P")].astype(np.float32)
        moving = np.linalg.norm(mv, axis=-1) > 1.5  # the object, not encoder noise
        mean = np.array([f[m].mean(0) if m.any() else (0.0, 0.0) for f, m in zip(mv, moving)])
        return moving, mean  # the moving region, and its mean vector, a frame

    def compare(a, b) -> tuple[float, float]:
        iou = (a[0] & b[0]).sum() / max((a[0] | b[0]).sum(), 1)
        return iou, float(np.abs(a[1] - b[1]).mean())

    ball = field("BallRise")
    other_iou, other_motion = compare(ball, field("BallFall"))
    for name in ("BoxRise", "KiteRise"):
        iou, motion = compare(ball, field(name))
        assert iou > 2.5 * other_iou and motion < 0.2 * other_motion, (name, iou, motion, other_iou, other_motion)


def test_appearance_same_across_motions_and_nuisance_varies():
    spec = DemoSpec(frames=10)
    a = render_clip(spec, "Ball", "Rise", 1, 1)
    b = render_clip(spec, "Ball", "Rise", 1, 2)
    assert a.shape == (10, 240, 320, 3)
    assert not np.array_equal(a, b)  # clips differ (position, size, speed, noise)
    assert np.array_equal(a, render_clip(spec, "Ball", "Rise", 1, 1))  # fixed by the seed
    assert not np.array_equal(a, render_clip(DemoSpec(frames=10, seed=1), "Ball", "Rise", 1, 1))


def test_deterministic_bytes_and_cli(tiny_demo, tmp_path):
    spec = TINY_DEMO
    cmd = [
        sys.executable,
        "-m",
        "moclip.cli",
        "demo-data",
        str(tmp_path),
        "--groups",
        str(spec.groups),
        "--clips",
        str(spec.clips),
        "--frames",
        str(spec.frames),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "9 classes" in out.stdout
    videos, lists = tiny_demo
    for p in sorted(videos.rglob("*.avi"))[:5] + sorted(lists.iterdir()):
        rel = p.relative_to(videos.parent)
        assert (tmp_path / rel).read_bytes() == p.read_bytes(), rel


# --------------------------------------------------------------------------- other layouts

# 4 classes x 4 groups x 2 clips: split K tests on group K, 6 train clips a class and split
FORMAT_DEMO = DemoSpec(appearances=("Ball", "Box"), motions=("Rise", "Fall"), groups=4, clips=2, frames=6)
CLASSES = ["BallFall", "BallRise", "BoxFall", "BoxRise"]


@pytest.fixture(scope="module")
def formats(tmp_path_factory) -> dict:
    """FORMAT_DEMO in every format: format -> (videos, lists or None)."""
    root = tmp_path_factory.mktemp("formats")
    out = {}
    for f, (v, n) in ((f, fmt.names) for f, fmt in FORMATS.items()):
        out[f] = (root / f / v, root / f / n if n else None)
        make_demo_dataset(*out[f], FORMAT_DEMO, threads=2, format=f)
    return out


def _files(videos) -> list[str]:
    return sorted(p.relative_to(videos).as_posix() for p in videos.rglob("*") if p.is_file())


def _ucf101_counts(lists) -> dict[tuple[int, str], int]:
    """(split, train|test) -> videos in the UCF101 layout's lists."""
    return {
        (k, s): len((lists / f"{s}list0{k}.txt").read_bytes().splitlines())
        for k in (1, 2, 3)
        for s in ("train", "test")
    }


def test_hmdb51_layout_and_split_files(formats):
    videos, lists = formats["hmdb51"]
    assert hmdb51_class("BallRise") == "ball_rise" and hmdb51_class("BoxFall") == "box_fall"
    assert _files(videos) == sorted(
        f"{c}/Group{g:02d}_{c}_u_nm_np1_fr_med_{n}.avi"
        for c in ("ball_fall", "ball_rise", "box_fall", "box_rise")
        for g in (1, 2, 3, 4)
        for n in (0, 1)
    )
    assert sorted(p.name for p in lists.iterdir()) == sorted(
        f"{c}_test_split{k}.txt" for c in ("ball_fall", "ball_rise", "box_fall", "box_rise") for k in (1, 2, 3)
    )
    text = (lists / "ball_rise_test_split2.txt").read_bytes().decode()
    assert text.startswith("Group01_ball_rise_u_nm_np1_fr_med_0.avi 1 \nGroup01_ball_rise_u_nm_np1_fr_med_1.avi 1 \n")
    assert "Group02_ball_rise_u_nm_np1_fr_med_1.avi 2 \n" in text
    assert text.endswith("Group04_ball_rise_u_nm_np1_fr_med_1.avi 0 \n")  # the last train clip: unused
    counts = Counter()
    for f in lists.iterdir():
        name, _, k = f.stem.rpartition("_test_split")
        lines = f.read_bytes().decode().splitlines(keepends=True)
        assert all(line.endswith(" \n") for line in lines)
        tags = {}
        for line in lines:
            file, tag = line.split()
            assert (videos / name / file).is_file()
            tags[file] = int(tag)
            counts[int(k), {0: "unused", 1: "train", 2: "test"}[int(tag)]] += 1
        assert len(tags) == 8 and list(tags.values()).count(0) == 1
        assert {f.split("_")[0] for f, t in tags.items() if t == 2} == {f"Group0{k}"}  # test groups as UCF101's
    ucf = _ucf101_counts(formats["ucf101"][1])
    for k in (1, 2, 3):
        assert counts[k, "unused"] == len(CLASSES)
        assert counts[k, "train"] == ucf[k, "train"] - len(CLASSES) and counts[k, "test"] == ucf[k, "test"]


def test_hmdb51_tags_leave_one_train_clip_unused_only_above_two():
    assert hmdb51_tags([(1, 1), (2, 1), (3, 1), (4, 1)], {2}) == [1, 2, 1, 0]
    assert hmdb51_tags([(1, 1), (1, 2), (2, 1), (2, 2)], {1}) == [2, 2, 1, 1]  # 2 train clips: all used


def test_csv_layout_is_one_file_of_labels_and_splits(formats):
    videos, path = formats["csv"]
    assert path.is_file() and _files(videos) == _files(formats["ucf101"][0])
    raw = path.read_bytes()
    assert raw.startswith(b"path,label,split1,split2,split3,group\n") and b"\r" not in raw
    rows = list(csv.DictReader(raw.decode("utf-8").splitlines()))
    assert rows[0] == {
        "path": "BallFall/v_BallFall_g01_c01.avi",
        "label": "BallFall",
        "split1": "test",
        "split2": "train",
        "split3": "train",
        "group": "1",
    }
    keys = [(r["label"], int(r["group"]), r["path"]) for r in rows]
    assert keys == sorted(keys) and [r["path"] for r in rows] == _files(videos)
    assert all(r["path"].split("/")[0] == r["label"] for r in rows)
    ucf = _ucf101_counts(formats["ucf101"][1])
    for k in (1, 2, 3):
        assert {int(r["group"]) for r in rows if r[f"split{k}"] == "test"} == {k}
        assert Counter(r[f"split{k}"] for r in rows) == {"train": ucf[k, "train"], "test": ucf[k, "test"]}


def test_folder_layout_has_spaces_and_repeated_names_and_no_lists(formats):
    videos, lists = formats["folder"]
    assert lists is None and list(videos.parent.iterdir()) == [videos]
    assert _files(videos) == sorted(
        f"group {g:02d}/{c}/clip {n:02d}.avi" for g in (1, 2, 3, 4) for c in CLASSES for n in (1, 2)
    )
    with pytest.raises(ValueError, match="takes no lists"):
        make_demo_dataset(videos, videos.parent / "lists", FORMAT_DEMO, format="folder")
    with pytest.raises(ValueError, match="needs a lists path"):
        make_demo_dataset(videos, None, FORMAT_DEMO, format="hmdb51")
    with pytest.raises(ValueError, match="choose from"):
        make_demo_dataset(videos, None, FORMAT_DEMO, format="kinetics")


def test_a_clip_has_the_same_bytes_in_every_format(formats):
    paths = {
        "ucf101": "BoxRise/v_BoxRise_g03_c02.avi",
        "hmdb51": "box_rise/Group03_box_rise_u_nm_np1_fr_med_1.avi",
        "csv": "BoxRise/v_BoxRise_g03_c02.avi",
        "folder": "group 03/BoxRise/clip 02.avi",
    }
    data = {f: (formats[f][0] / p).read_bytes() for f, p in paths.items()}
    assert len(set(data.values())) == 1
    assert data["ucf101"] != (formats["ucf101"][0] / "BoxRise/v_BoxRise_g03_c01.avi").read_bytes()
    ucf = {p.read_bytes() for p in formats["ucf101"][0].rglob("*.avi")}
    for f in ("hmdb51", "folder"):
        assert {p.read_bytes() for p in formats[f][0].rglob("*.avi")} == ucf, f


def test_scale_dataset_is_ucf101_shaped(tmp_path):
    """The scale benchmark's generator: UCF101's layout, groups, clip counts and lengths,
    exactly the videos asked for, and lists the manifest accepts."""
    info = make_scale_dataset(tmp_path / "UCF-101", tmp_path / "lists", 330, pool=6)
    rows = build_manifest(tmp_path / "UCF-101", tmp_path / "lists", splits=[1, 2, 3], val_groups=3)
    assert info["videos"] == len(rows) == 330 and info["classes"] == 3
    assert {r.group for r in rows} == set(range(1, 26))
    clips = Counter((r.label, r.group) for r in rows)
    assert len(clips) == 3 * 25 and set(clips.values()) <= {4, 5, 6, 7}
    for k in (1, 2, 3):
        assert {r.group for r in rows if r.split(k) == "test"} == set(range(7 * k - 6, 7 * k + 1))
    for r in rows[::37]:
        with av.open(str(tmp_path / "UCF-101" / r.path)) as c:
            assert 29 <= c.streams.video[0].frames <= 1776
    assert 120 < info["frames"] / 330 < 260  # UCF101's mean is ~186
    assert info["pool"] <= 8  # 6 quantiles plus the shortest and the longest clip


def test_scale_dataset_lengths_follow_ucf101():
    n = ucf101_shaped_lengths(13_320, np.random.default_rng(0))
    assert n.min() >= 29 and n.max() <= 1776
    assert 170 < n.mean() < 200 and 140 < np.median(n) < 180


def test_the_demo_writes_every_format_the_workflow_reads():
    assert list(LAYOUTS) == list(FORMATS)  # the two registries of a format, in step
    for name, layout in LAYOUTS.items():
        assert (FORMATS[name].names[1] is None) == (FORMATS[name].lists is None) == (layout.write_lists is None), name
