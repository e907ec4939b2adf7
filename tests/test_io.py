"""Atomic writes: a result appears under its name complete, or not at all."""

from __future__ import annotations

import pytest

from moclip.io import atomic_path


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
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(out) as tmp:
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
