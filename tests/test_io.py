"""Files every stage writes: atomic, TSV tables that read back, relative names."""

from __future__ import annotations

import pytest

from moclip.io import atomic_path, listed_ids, read_json, read_tsv, relative_to, write_json, write_tsv


def test_atomic_path_renames_on_success_and_leaves_nothing_else(tmp_path):
    out = tmp_path / "sub" / "result.tsv"
    with atomic_path(out) as tmp:
        assert tmp.parent == out.parent and tmp.name.startswith(".result.tsv.") and tmp.suffix == ".tmp"
        assert not tmp.exists() and not out.exists()  # the writer creates it: one creation, not two
        tmp.write_text("done\n")
        assert not out.exists()
    assert out.read_text() == "done\n"
    assert [p.name for p in out.parent.iterdir()] == ["result.tsv"]


@pytest.mark.parametrize("created", [True, False])
def test_atomic_path_failure_leaves_no_file_and_keeps_the_old_result(tmp_path, created):
    out = tmp_path / "result.tsv"
    out.write_text("previous\n")
    with pytest.raises(KeyboardInterrupt), atomic_path(out) as tmp:
        if created:
            tmp.write_text("half")
        raise KeyboardInterrupt  # a kill mid-write
    assert out.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["result.tsv"]


def test_atomic_paths_are_unique(tmp_path):
    names = set()
    for _ in range(200):
        with atomic_path(tmp_path / "x") as tmp:
            names.add(tmp.name)
            tmp.write_text("")
    assert len(names) == 200


def test_tsv_and_json_round_trip(tmp_path):
    rows = [["v_A_g01_c01", "A/v_A_g01_c01.avi", 3], ["v_B_g02_c01", 'B/with "quote".avi', 0]]
    write_tsv(tmp_path / "t.tsv", ["video_id", "path", "n"], rows)
    assert read_tsv(tmp_path / "t.tsv") == [dict(zip(["video_id", "path", "n"], map(str, r))) for r in rows]
    write_json(tmp_path / "m.json", {"top1": 0.5, "ids": ["a"]})
    assert read_json(tmp_path / "m.json") == {"top1": 0.5, "ids": ["a"]}
    assert (tmp_path / "m.json").read_text().endswith("}\n")


@pytest.mark.parametrize("bad", ["a\tb", "a\nb", "a\rb"])
def test_tsv_field_that_would_split_is_an_error_naming_it(tmp_path, bad):
    with pytest.raises(ValueError, match="t.tsv.*tabs and line breaks"):
        write_tsv(tmp_path / "t.tsv", ["x"], [["fine"], [bad]])
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_relative_to_names_a_file_from_another_directory(tmp_path):
    model = tmp_path / "results" / "mvnet" / "t" / "split1" / "model.pt"
    report_dir = tmp_path / "results" / "reports" / "split1"
    assert relative_to(model, report_dir) == "../../mvnet/t/split1/model.pt"
    assert (report_dir / relative_to(model, report_dir)).resolve() == model.resolve()


def test_listed_ids_come_from_the_table_by_path(tmp_path):
    table = tmp_path / "manifest.tsv"
    write_tsv(table, ("video_id", "path"), [("run__clip_1", "run/clip 1.mp4"), ("b__x", "b/x.avi")])
    root = tmp_path / "videos"
    assert listed_ids(table, [root / "b" / "x.avi", root / "run" / "clip 1.mp4"], root) == ["b__x", "run__clip_1"]
    with pytest.raises(ValueError, match=r"manifest.tsv: no row for video run/other.mp4"):
        listed_ids(table, [root / "run" / "other.mp4"], root)
