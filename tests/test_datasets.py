"""Dataset formats: HMDB51's split files, a CSV table, a bare folder; ids safe as file names;
every bad entry named by file and line. (UCF101's lists: tests/test_manifest.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from moclip.dataset.formats import PSEUDO_GROUPS, count_videos, list_files, safe_ids
from moclip.dataset.manifest import build_manifest, manifest
from moclip.dataset.videos import ManifestError, read_manifest
from moclip.io import read_json


def touch(path: Path) -> Path:
    """A stand-in video: the listing checks that files exist, never decodes them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0")
    return path


# --------------------------------------------------------------------------- HMDB51

HMDB_CLASSES = ["brush_hair", "cartwheel", "ride_bike"]


def make_hmdb(root: Path, sources: int = 4, clips: int = 2) -> tuple[Path, Path]:
    """HMDB51's layout: <class>/<Source>_<class>_<attrs>_<n>.avi, and a split file a class
    and split; source s tests in split k when s % 3 == k - 1 (0: the last clip of source 0
    is unused in split 1)."""
    videos, lists = root / "hmdb51_org", root / "splits"
    lists.mkdir(parents=True)
    for cls in HMDB_CLASSES:
        names = [f"Film{s}_{cls}_f_cm_np1_fr_med_{c}.avi" for s in range(sources) for c in range(clips)]
        for n in names:
            touch(videos / cls / n)
        for k in (1, 2, 3):
            lines = []
            for n in names:
                s, c = int(n[4]), int(n[-5])
                flag = "2" if s % 3 == k - 1 else "1"
                if k == 1 and s == 1 and c == clips - 1:
                    flag = "0"
                lines.append(f"{n} {flag} \n")
            (lists / f"{cls}_test_split{k}.txt").write_text("".join(lines))
    return videos, lists


def test_hmdb51_classes_splits_and_groups_from_the_source(tmp_path):
    videos, lists = make_hmdb(tmp_path)
    rows = build_manifest(videos, lists, [1, 2, 3], val_groups=1, format="hmdb51", seed=0)
    assert sorted({r.class_name for r in rows}) == HMDB_CLASSES and len(rows) == 3 * 4 * 2
    assert [r.label for r in rows] == sorted(r.label for r in rows)  # sorted names -> labels 0..2
    by_id = {r.video_id: r for r in rows}
    r = by_id["Film0_brush_hair_f_cm_np1_fr_med_1"]
    assert r.path == "brush_hair/Film0_brush_hair_f_cm_np1_fr_med_1.avi" and r.clip == 1
    assert r.split1 == "test" and r.split2 in ("train", "val") and r.split3 in ("train", "val")
    # the unused entry (0) is in no part of split 1, but listed in the others
    unused = by_id["Film1_brush_hair_f_cm_np1_fr_med_1"]
    assert unused.split1 == "" and unused.split2 == "test"
    # one source is one group, in every class: val holds out whole sources
    groups = {r.video_id.split("_")[0]: r.group for r in rows}
    assert len(set(groups.values())) == 4
    for k in (1, 2, 3):
        val = {r.group for r in rows if r.split(k) == "val"}
        train = {r.group for r in rows if r.split(k) == "train"}
        assert len(val) == 1 and not val & train
    assert count_videos("hmdb51", videos, lists, [1, 2, 3]) == len(rows)
    assert len(list_files("hmdb51", lists, [1, 2])) == 2 * len(HMDB_CLASSES)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("Film0_brush_hair_f_cm_np1_fr_med_0.avi 3 \n", "expected '<video file> <0|1|2>'"),
        ("Film0_brush_hair_f_cm_np1_fr_med_0.avi\n", "expected '<video file> <0|1|2>'"),
        ("Film9_brush_hair_x_0.avi 1\n", "does not exist"),
        ("../cartwheel/Film0_cartwheel_f_cm_np1_fr_med_0.avi 1\n", "must be <ClassName>/<file>"),
    ],
)
def test_hmdb51_bad_lines_name_file_and_line(tmp_path, line, message):
    videos, lists = make_hmdb(tmp_path)
    f = lists / "brush_hair_test_split2.txt"
    f.write_text(f.read_text() + line)
    with pytest.raises(ManifestError, match=rf"^{f}:9: .*{message}"):
        build_manifest(videos, lists, [1, 2], format="hmdb51")


def test_hmdb51_missing_split_file_and_empty_lists(tmp_path):
    videos, lists = make_hmdb(tmp_path)
    (lists / "cartwheel_test_split3.txt").unlink()
    build_manifest(videos, lists, [1, 2], format="hmdb51")  # split 3 not asked for
    with pytest.raises(ManifestError, match="cartwheel_test_split3.txt is missing"):
        build_manifest(videos, lists, [1, 3], format="hmdb51")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ManifestError, match="no <class>_test_split<K>.txt files"):
        build_manifest(videos, empty, [1], format="hmdb51")


# --------------------------------------------------------------------------- CSV


def make_csv(root: Path, text: str, paths: list[str]) -> tuple[Path, Path]:
    videos = root / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    for p in paths:
        touch(videos / p)
    table = root / "labels.csv"
    table.write_text(text)
    return videos, table


CSV_PATHS = [f"{c}/clip {g}-{i}.mp4" for c in ("run", "jump", "swim") for g in range(4) for i in range(2)]


def csv_text(with_splits: bool = True, with_group: bool = True) -> str:
    cols = ["path", "label"] + (["split1", "split2"] if with_splits else []) + (["group"] if with_group else [])
    lines = [",".join(cols)]
    for p in CSV_PATHS:
        cls, g = p.split("/")[0], int(p.split(" ")[1][0])
        row = [f'"{p}"', cls] + (["test" if g == 0 else "train", "test" if g == 1 else "train"] if with_splits else [])
        lines.append(",".join(row + ([f"person {g}"] if with_group else [])))
    return "\n".join(lines) + "\n"


def test_csv_labels_sorted_groups_from_the_column_and_safe_ids(tmp_path):
    videos, table = make_csv(tmp_path, csv_text(), CSV_PATHS)
    rows = build_manifest(videos, table, [1, 2], val_groups=1, format="csv")
    assert [r.class_name for r in rows if r.label == 0][0] == "jump" and {r.label for r in rows} == {0, 1, 2}
    r = next(r for r in rows if r.path == "run/clip 2-1.mp4")
    assert r.video_id == "run__clip_2-1" and r.split1 in ("train", "val") and r.split2 in ("train", "val")
    assert {r.group for r in rows if r.path.split(" ")[1][0] == "0"} == {1}  # "person 0" -> group 1
    for k in (1, 2):
        val = {r.group for r in rows if r.split(k) == "val"}
        assert len(val) == 1 and not val & {r.group for r in rows if r.split(k) != "val"}
    assert count_videos("csv", videos, table, [1, 2]) == len(rows) == len(CSV_PATHS)


def test_csv_class_order_from_a_file(tmp_path):
    videos, table = make_csv(tmp_path, csv_text(), CSV_PATHS)
    order = tmp_path / "classes.txt"
    order.write_text("swim\nrun\njump\n")
    rows = build_manifest(videos, table, [1], format="csv", classes=order)
    assert {r.class_name: r.label for r in rows} == {"swim": 0, "run": 1, "jump": 2}
    order.write_text("swim\nrun\n")
    with pytest.raises(ManifestError, match=rf"^{table}:\d+: label 'jump' is not in {order}"):
        build_manifest(videos, table, [1], format="csv", classes=order)


def test_csv_without_split_columns_tests_on_a_seeded_share_of_whole_groups(tmp_path):
    videos, table = make_csv(tmp_path, csv_text(with_splits=False), CSV_PATHS)
    a = build_manifest(videos, table, [1], format="csv", seed=3)
    assert a == build_manifest(videos, table, [1], format="csv", seed=3)
    test = {r.group for r in a if r.split1 == "test"}
    assert len(test) == 1 and not test & {r.group for r in a if r.split1 == "train"}  # 30% of 4 groups
    with pytest.raises(ManifestError, match="dataset.splits \\[1, 2\\] needs columns split1, split2"):
        build_manifest(videos, table, [1, 2], format="csv")
    # no group column either: whole videos in seeded buckets
    videos, table = make_csv(tmp_path / "b", csv_text(with_splits=False, with_group=False), CSV_PATHS)
    rows = build_manifest(videos, table, [1], format="csv")
    assert all(1 <= r.group <= PSEUDO_GROUPS for r in rows) and {r.split1 for r in rows} == {"train", "test"}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ('"run/clip 0-0.mp4",run,train,train,person 0', "listed twice \\(first at .*labels.csv:2\\)"),
        ("run/missing.mp4,run,train,train,person 0", "does not exist"),
        ("../outside.mp4,run,train,train,person 0", "must be a relative path"),
        ('"run/clip 0-0.mp4",,train,train,person 0', "empty label"),
        ('"run/clip 0-0.mp4",run,val,train,person 0', "split1 must be train, test or empty, got 'val'"),
        ('"run/clip 0-0.mp4",run,train,train', "expected 5 fields"),
    ],
)
def test_csv_bad_rows_name_file_and_line(tmp_path, row, message):
    videos, table = make_csv(tmp_path, csv_text() + row + "\n", CSV_PATHS)
    with pytest.raises(ManifestError, match=rf"^{table}:{len(CSV_PATHS) + 2}: .*{message}"):
        build_manifest(videos, table, [1, 2], format="csv")


def test_csv_bad_header_is_named(tmp_path):
    videos, table = make_csv(tmp_path, "file,label\nx.mp4,run\n", [])
    with pytest.raises(ManifestError, match=rf"^{table}:1: header must be path,label"):
        build_manifest(videos, table, [1], format="csv")


# --------------------------------------------------------------------------- a folder


def test_folder_lists_every_video_with_ids_safe_and_unique(tmp_path):
    videos = tmp_path / "my videos"
    for p in ["a/clip 01.avi", "b/clip 01.avi", "b/nested/deeper/x.MP4", "c/été (1).mkv", "a/clip_01.avi"]:
        touch(videos / p)
    touch(videos / "a" / "notes.txt")
    touch(videos / ".hidden" / "y.avi")
    touch(videos / "a" / ".z.avi")
    rows = build_manifest(videos, None, [1, 2, 3], val_groups=3, format="folder")
    ids = {r.path: r.video_id for r in rows}
    assert sorted(ids) == ["a/clip 01.avi", "a/clip_01.avi", "b/clip 01.avi", "b/nested/deeper/x.MP4", "c/été (1).mkv"]
    assert ids["b/clip 01.avi"] == "b__clip_01" and ids["b/nested/deeper/x.MP4"] == "b__nested__deeper__x"
    assert ids["c/été (1).mkv"] == "c___t_1_"
    # "a/clip 01" and "a/clip_01" would both be a__clip_01: each gets a hash of its path
    assert ids["a/clip 01.avi"] != ids["a/clip_01.avi"] and ids["a/clip 01.avi"].startswith("a__clip_01-")
    assert all(r.label == -1 and r.class_name == "" and not (r.split1 or r.split2 or r.split3) for r in rows)
    assert count_videos("folder", videos, None, [1]) == 5
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ManifestError, match="no video files"):
        build_manifest(empty, None, [1], format="folder")


def test_safe_ids_do_not_depend_on_order():
    rels = ["x/a b.avi", "x/a_b.avi", "y/c.avi"]
    assert safe_ids(rels, whole_path=True) == safe_ids(rels[::-1], whole_path=True)
    assert safe_ids(["p/v.avi", "q/v.avi"], whole_path=False)["p/v.avi"].startswith("v-")


def test_manifest_stage_writes_the_dataset_summary(tmp_path):
    videos, table = make_csv(tmp_path, csv_text(), CSV_PATHS)
    out, summary = tmp_path / "m.tsv", tmp_path / "dataset.json"
    manifest(
        videos=videos,
        lists=table,
        format="csv",
        classes=None,
        splits=[1, 2],
        val_groups=1,
        shards=2,
        seed=0,
        out=out,
        summary=summary,
    )
    info = read_json(summary)
    assert info["format"] == "csv" and info["classes"] == 3 and info["videos"] == len(read_manifest(out)) == 24
    assert info["validation"].startswith("whole groups of the table's group column")
    parts = info["splits"]["1"]
    assert parts["train"] + parts["val"] + parts["test"] == 24 and set(info["splits"]) == {"1", "2"}
    assert parts["val_classes"] == 3  # every class among the validation videos


def test_unknown_format_is_named(tmp_path):
    with pytest.raises(ManifestError, match="dataset.format: 'kinetics' is not one of ucf101, hmdb51, csv, folder"):
        build_manifest(tmp_path, None, [1], format="kinetics")
