"""Manifest parsing: UCF101's label traps, group-based validation, shards, and errors naming file:line."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import DEFAULTS, merged

from moclip.cli import main
from moclip.dataset.formats import count_videos, read_class_index
from moclip.dataset.manifest import build_manifest, shard_count, val_share_groups
from moclip.dataset.videos import COLUMNS, ManifestError, read_manifest, shard_of, write_manifest
from moclip.io import BrokenFileError
from moclip.workflow.layout import Layout

# UCF101's own ordering traps: case-insensitive classInd order, and a folder whose files
# spell the class differently.
CLASSES = ["ApplyEyeMakeup", "Hammering", "HammerThrow", "HandstandPushups", "JumpingJack", "JumpRope"]
FILE_CLASS = {"HandstandPushups": "HandStandPushups"}


def make_tree(
    root: Path,
    groups: int = 6,
    clips: int = 2,
    test_groups=(1, 2),
    crlf: bool = True,
    labelled_test: bool = False,
    classes=CLASSES,
    splits=(1,),
) -> tuple[Path, Path]:
    videos, lists = root / "UCF-101", root / "ucfTrainTestlist"
    eol = "\r\n" if crlf else "\n"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("".join(f"{i} {c}{eol}" for i, c in enumerate(classes, 1)), newline="")
    train, test = [], []
    for i, c in enumerate(classes, 1):
        (videos / c).mkdir(parents=True)
        for g in range(1, groups + 1):
            for k in range(1, clips + 1):
                name = f"v_{FILE_CLASS.get(c, c)}_g{g:02d}_c{k:02d}.avi"
                (videos / c / name).write_bytes(b"")
                if g in test_groups:
                    test.append(f"{c}/{name}" + (f" {i}" if labelled_test else "") + eol)
                else:
                    train.append(f"{c}/{name} {i}{eol}")
    for s in splits:
        (lists / f"trainlist0{s}.txt").write_text("".join(train), newline="")
        (lists / f"testlist0{s}.txt").write_text("".join(test), newline="")
    return videos, lists


def test_labels_follow_classind_not_a_sort(tmp_path):
    videos, lists = make_tree(tmp_path)
    rows = build_manifest(videos, lists, splits=[1])
    label = {r.class_name: r.label for r in rows}
    assert label == {c: i for i, c in enumerate(CLASSES)}
    # A case-sensitive sort would swap both pairs; classInd.txt must win.
    assert sorted(CLASSES) != CLASSES
    assert label["Hammering"] < label["HammerThrow"] and label["JumpingJack"] < label["JumpRope"]


def test_class_from_folder_not_file_name(tmp_path):
    videos, lists = make_tree(tmp_path)
    rows = [r for r in build_manifest(videos, lists, splits=[1]) if r.class_name == "HandstandPushups"]
    assert rows and all(r.video_id.startswith("v_HandStandPushups_") for r in rows)
    assert {r.label for r in rows} == {CLASSES.index("HandstandPushups")}


@pytest.mark.parametrize("crlf", [True, False])
@pytest.mark.parametrize("labelled_test", [True, False])
def test_line_ends_and_labelled_test_lists(tmp_path, crlf, labelled_test):
    videos, lists = make_tree(tmp_path, crlf=crlf, labelled_test=labelled_test)
    rows = build_manifest(videos, lists, splits=[1])
    assert len(rows) == len(CLASSES) * 6 * 2
    assert {r.group for r in rows if r.split1 == "test"} == {1, 2}
    assert all("\r" not in r.path and "\r" not in r.class_name for r in rows)


def test_columns_groups_clips_and_roundtrip(tmp_path):
    videos, lists = make_tree(tmp_path)
    rows = build_manifest(videos, lists, splits=[1], val_groups=1, num_shards=3)
    r = next(r for r in rows if r.video_id == "v_JumpRope_g04_c02")
    assert (r.path, r.class_name, r.label, r.group, r.clip) == ("JumpRope/v_JumpRope_g04_c02.avi", "JumpRope", 5, 4, 2)
    out = tmp_path / "m.tsv"
    write_manifest(rows, out)
    assert out.read_text().splitlines()[0].split("\t") == list(COLUMNS)
    assert read_manifest(out) == rows


def test_val_is_whole_training_groups_deterministic(tmp_path):
    videos, lists = make_tree(tmp_path, groups=8)
    rows = build_manifest(videos, lists, splits=[1], val_groups=2, seed=3)
    by = {s: {r.group for r in rows if r.split1 == s} for s in ("train", "val", "test")}
    assert by["test"] == {1, 2}
    assert len(by["val"]) == 2 and not by["val"] & by["train"] and not by["val"] & by["test"]
    # Every clip of a held-out group, in every class, is val.
    assert all(r.split1 == "val" for r in rows if r.group in by["val"])
    assert build_manifest(videos, lists, splits=[1], val_groups=2, seed=3) == rows
    seeds = {
        frozenset(g.group for g in build_manifest(videos, lists, [1], 2, 1, s) if g.split1 == "val") for s in range(6)
    }
    assert len(seeds) > 1  # the seed, not a constant, picks the groups


def test_configured_splits_only(tmp_path):
    videos, lists = make_tree(tmp_path, splits=(1, 2, 3))
    rows = build_manifest(videos, lists, splits=[2])
    assert all(r.split1 == "" and r.split3 == "" and r.split2 in ("train", "test") for r in rows)


def test_shards_stable_when_a_video_is_added(tmp_path):
    videos, lists = make_tree(tmp_path)
    before = {r.video_id: r.shard for r in build_manifest(videos, lists, splits=[1], num_shards=4)}
    assert set(before.values()) == {0, 1, 2, 3}
    name = "v_JumpRope_g06_c03.avi"
    (videos / "JumpRope" / name).write_bytes(b"")
    with open(lists / "trainlist01.txt", "a", newline="") as f:
        f.write(f"JumpRope/{name} 6\r\n")
    after = {r.video_id: r.shard for r in build_manifest(videos, lists, splits=[1], num_shards=4)}
    assert {k: after[k] for k in before} == before
    assert after["v_JumpRope_g06_c03"] == shard_of("v_JumpRope_g06_c03", 4)


def ucf101_sized_lists(root: Path) -> tuple[list[str], Path]:
    """101 classes x 25 groups x 5-6 clips = 13,320 list entries, as UCF101's three splits."""
    lists = root / "lists"
    lists.mkdir()
    classes = [f"Class{c:03d}" for c in range(101)]
    (lists / "classInd.txt").write_text("".join(f"{i} {c}\r\n" for i, c in enumerate(classes, 1)))
    names = [f"{c}/v_{c}_g{g:02d}_c{k:02d}.avi" for c in classes for g in range(1, 26) for k in range(1, 6)]
    names += [f"{c}/v_{c}_g{g:02d}_c06.avi" for c in classes for g in range(1, 8)][:695]
    assert len(names) == 13320
    for k in (1, 2, 3):  # every split lists every video once, in train or test (its groups apart)
        test = {n for n in names if int(n.split("_g")[1][:2]) in range(7 * k - 6, 7 * k + 1)}
        (lists / f"trainlist0{k}.txt").write_text("".join(f"{n} {int(n[5:8]) + 1}\r\n" for n in names if n not in test))
        (lists / f"testlist0{k}.txt").write_text("".join(f"{n}\r\n" for n in names if n in test))
    return names, lists


def test_auto_shards_from_the_lists_of_a_ucf101_sized_dataset(tmp_path):
    """The count reads the lists alone (no video files needed)."""
    _, lists = ucf101_sized_lists(tmp_path)
    n = count_videos("ucf101", tmp_path / "no-videos-needed", lists, [1, 2, 3])
    assert n == 13320 and shard_count(n, 256) == 52
    # A few more videos leave the count alone (up to 52.5 x 256 = 13,440), so each changes one shard only.
    assert shard_count(13439, 256) == 52 and shard_count(13440, 256) == 53
    assert shard_count(0, 256) == shard_count(100, 256) == 1


def test_moclip_manifest_gives_a_ucf101_sized_tree_the_workflows_shards(tmp_path):
    """``moclip manifest`` without --shards shards as the workflow does (config.yaml's
    ``shards: auto``, about videos_per_shard a shard): the same count as the workflow's
    parse (moclip.workflow.layout) on the same tree, 52 for UCF101's 13,320 videos."""
    names, lists = ucf101_sized_lists(tmp_path)
    videos = tmp_path / "UCF-101"  # empty files: the manifest checks they exist, opens none
    for c in {n.split("/")[0] for n in names}:
        (videos / c).mkdir(parents=True)
    for n in names:
        (videos / n).touch()
    out = tmp_path / "manifest.tsv"
    assert main(["manifest", "--videos", str(videos), "--lists", str(lists), "--out", str(out)]) == 0
    rows = read_manifest(out)
    workflow = Layout(merged(DEFAULTS, {"dataset": {"videos": str(videos), "lists": str(lists)}})).shards
    assert len(rows) == 13320 and len({r.shard for r in rows}) == len(workflow) == 52


def test_unicode_and_spaces_in_dataset_path(tmp_path):
    videos, lists = make_tree(tmp_path / "données vidéo")
    rows = build_manifest(videos, lists, splits=[1])
    assert len(rows) == 72


def _append(path: Path, line: str) -> int:
    text = path.read_text()
    path.write_text(text + line + "\r\n", newline="")
    return len(text.splitlines()) + 1


@pytest.mark.parametrize(
    "line, message",
    [
        ("JumpRope/v_JumpRope_g09_c01.avi 6", "does not exist"),
        ("Skiing/v_Skiing_g09_c01.avi 1", "not in classInd.txt"),
        ("../UCF-101/JumpRope/v_JumpRope_g03_c01.avi 6", "must be <ClassName>/<file>"),
        ("/etc/JumpRope/v_JumpRope_g03_c01.avi 6", "must be <ClassName>/<file>"),
        ("JumpRope/v_JumpRope_g03_c01.avi 6", "listed twice"),
        ("JumpRope/v_JumpRope_g09.avi 6", "v_<Class>_gGG_cCC"),
        ("JumpRope/v_JumpRope_g07_c01.avi 2", "disagrees with classInd.txt"),
    ],
)
def test_bad_entries_name_file_and_line(tmp_path, line, message):
    videos, lists = make_tree(tmp_path)
    (videos / "JumpRope" / "v_JumpRope_g07_c01.avi").write_bytes(b"")  # a real file, unlisted
    lineno = _append(lists / "trainlist01.txt", line)
    with pytest.raises(ManifestError, match=message) as e:
        build_manifest(videos, lists, splits=[1])
    assert f"trainlist01.txt:{lineno}" in str(e.value)


def test_escape_through_symlink(tmp_path):
    videos, lists = make_tree(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "v_JumpRope_g09_c01.avi").write_bytes(b"")
    (videos / "JumpRope" / "v_JumpRope_g09_c01.avi").symlink_to(outside / "v_JumpRope_g09_c01.avi")
    lineno = _append(lists / "trainlist01.txt", "JumpRope/v_JumpRope_g09_c01.avi 6")
    with pytest.raises(ManifestError, match=f"trainlist01.txt:{lineno}.*escapes"):
        build_manifest(videos, lists, splits=[1])


def test_video_in_train_and_test(tmp_path):
    videos, lists = make_tree(tmp_path)
    lineno = _append(lists / "testlist01.txt", "JumpRope/v_JumpRope_g03_c01.avi")
    with pytest.raises(ManifestError, match=f"testlist01.txt:{lineno}: video v_JumpRope_g03_c01 is listed twice"):
        build_manifest(videos, lists, splits=[1])


def test_missing_and_empty_lists(tmp_path):
    videos, lists = make_tree(tmp_path)
    with pytest.raises(ManifestError, match="trainlist02.txt: split list not found"):
        build_manifest(videos, lists, splits=[1, 2])
    (lists / "testlist01.txt").write_text("")
    with pytest.raises(ManifestError, match="testlist01.txt: split list is empty"):
        build_manifest(videos, lists, splits=[1])
    with pytest.raises(ManifestError, match="not a directory"):
        build_manifest(tmp_path / "nope", lists, splits=[1])


def test_bad_class_index(tmp_path):
    p = tmp_path / "classInd.txt"
    p.write_text("1 A\r\n3 B\r\n")
    with pytest.raises(ManifestError, match="without gaps"):
        read_class_index(p)
    p.write_text("1 A\r\nB\r\n")
    with pytest.raises(ManifestError, match=r"classInd.txt:2"):
        read_class_index(p)


def test_val_groups_leaving_no_training_group(tmp_path):
    videos, lists = make_tree(tmp_path, groups=3, test_groups=(1,))
    with pytest.raises(ManifestError, match="val_groups=2 would leave no training group"):
        build_manifest(videos, lists, splits=[1], val_groups=2)


def test_corrupt_manifest_names_line(tmp_path):
    p = tmp_path / "m.tsv"
    p.write_text("\t".join(COLUMNS) + "\n" + "a\tb\n")
    with pytest.raises(
        BrokenFileError, match=r"m.tsv: ManifestError: .*m.tsv:2: .*; rebuild it with: \S*snakemake --forcerun"
    ):
        read_manifest(p)
    p.write_text(p.read_text()[:-1])  # cut short, even at the end of a whole row
    with pytest.raises(BrokenFileError, match=r"m.tsv: ValueError: cut short"):
        read_manifest(p)


def test_bad_lists_stop_the_parse_time_check(tmp_path):
    """What the Snakefile runs before any job (build_manifest over the lists) names a bad
    entry's file and line, and an empty list."""
    videos, lists = make_tree(tmp_path)
    build_manifest(videos, lists, splits=[1])
    lineno = _append(lists / "testlist01.txt", "../../etc/passwd")
    with pytest.raises(ManifestError, match=f"testlist01.txt:{lineno}"):
        build_manifest(videos, lists, splits=[1])
    (lists / "trainlist01.txt").write_text("\r\n")
    with pytest.raises(ManifestError, match="trainlist01.txt: split list is empty"):
        build_manifest(videos, lists, splits=[1])


def test_names_with_a_tab_or_a_line_break_are_refused_one_line_a_file(tmp_path):
    """The manifest and indexes are tab-separated lines: such names cannot be written. The
    parse-time check (the workflow's and check-config's) names each, where the manifest job
    used to stop on the first with a traceback."""
    from moclip.workflow.checks import check_run
    from moclip.workflow.config import ConfigError, load_config

    videos = tmp_path / "videos"
    (videos / "a").mkdir(parents=True)
    for name in ("ok.avi", "with\ttab.avi", "two\nlines.avi", "also fine.avi"):
        (videos / "a" / name).write_bytes(b"")
    with pytest.raises(ManifestError) as e:
        build_manifest(videos, None, format="folder")
    lines = str(e.value).splitlines()
    assert lines == [
        f"{str(videos / 'a' / n)!r}: a tab or line break in the file's name (the manifest is tab-separated lines): "
        "rename it"
        for n in ("two\nlines.avi", "with\ttab.avi")
    ]
    config = load_config([Path(__file__).resolve().parents[1] / "config.yaml"])
    config["dataset"].update(videos=str(videos), format="folder")
    with pytest.raises(ConfigError) as e:
        check_run(config, [], videos, None)
    assert str(e.value).splitlines() == lines


def test_a_tab_or_a_line_break_in_a_csv_tables_path_is_named_with_its_line(tmp_path):
    """A CSV field may quote a tab or a line break: such a file is named after the table's
    line that lists it (the line the row ends on, as the csv module counts)."""
    videos = tmp_path / "videos"
    (videos / "run").mkdir(parents=True)
    for name in ("a.avi", "b\tc.avi", "d\ne.avi"):
        (videos / "run" / name).write_bytes(b"")
    table = tmp_path / "t.csv"
    table.write_text('path,label\nrun/a.avi,run\n"run/b\tc.avi",run\n"run/d\ne.avi",run\n')
    with pytest.raises(ManifestError) as e:
        build_manifest(videos, table, [1], format="csv")
    why = "a tab or line break in the file's name (the manifest is tab-separated lines): rename it"
    tab, lines = videos / "run" / "b\tc.avi", videos / "run" / "d\ne.avi"
    assert str(e.value).splitlines() == [f"{table}:3: {str(tab)!r}: {why}", f"{table}:5: {str(lines)!r}: {why}"]


# --------------------------------------------------------------------------- validation by the format's rule


def make_hmdb51_shaped(root: Path, classes: int = 51) -> tuple[Path, Path]:
    """HMDB51's shape: 100 videos a class, 4 clips a source (25 sources a class, 5 of them
    shared with the next class, as HMDB51's films recur across actions), and a split file
    a class and split with 70 training and 30 test videos, the test block moving with the
    split."""
    videos, lists = root / "hmdb51_org", root / "splits"
    lists.mkdir(parents=True)
    for c in range(classes):
        cls = f"action{c:02d}"
        (videos / cls).mkdir(parents=True)
        names = [f"Film{c * 20 + s}_{cls}_f_cm_np1_fr_med_{k}.avi" for s in range(25) for k in range(4)]
        for n in names:
            (videos / cls / n).write_bytes(b"")
        for split in (1, 2, 3):
            test = set(range(30 * (split - 1), 30 * split))
            lines = "".join(f"{n} {2 if i in test else 1}\n" for i, n in enumerate(names))
            (lists / f"{cls}_test_split{split}.txt").write_text(lines)
    return videos, lists


def test_hmdb51_validation_by_default_is_a_tenth_to_a_fifth_with_every_class(tmp_path):
    """Without a user key (val_groups: auto), HMDB51-shaped data holds out 10-20% of each
    split's training videos, whole sources only, every class represented, seeded (a fixed
    number of groups gave 5-19 videos from 2-7 of 51 classes on HMDB51's real names)."""
    videos, lists = make_hmdb51_shaped(tmp_path)
    seen = set()
    for seed in range(5):
        rows = build_manifest(videos, lists, [1, 2, 3], val_groups="auto", format="hmdb51", seed=seed)
        for k in (1, 2, 3):
            val = [r for r in rows if r.split(k) == "val"]
            train = [r for r in rows if r.split(k) == "train"]
            share = len(val) / (len(val) + len(train))
            assert 0.10 <= share <= 0.20, (seed, k, share)
            assert len({r.label for r in val}) == 51 and len({r.label for r in train}) == 51
            assert not {r.group for r in val} & {r.group for r in train}  # whole sources
            seen.add(frozenset(r.video_id for r in val))
    assert len(seen) == 15  # seeds and splits draw differently
    again = build_manifest(videos, lists, [1, 2, 3], val_groups="auto", format="hmdb51", seed=4)
    assert again == rows


def test_ucf101_validation_by_default_is_three_of_its_25_groups(tmp_path):
    videos, lists = make_tree(tmp_path, groups=25, clips=1, test_groups=range(1, 8))
    rows = build_manifest(videos, lists, splits=[1], val_groups="auto")
    assert len({r.group for r in rows if r.split1 == "val"}) == 3  # 12%, the UCF101 presets' explicit 3
    small, small_lists = make_tree(tmp_path / "demo", groups=8, clips=1, test_groups=(1, 2))
    demo = build_manifest(small, small_lists, splits=[1], val_groups="auto")
    assert len({r.group for r in demo if r.split1 == "val"}) == 1  # the demo's 8 groups: 1, as before


def test_validation_by_default_on_a_few_large_groups_holds_out_one_and_says_so(caplog):
    """Three training groups of 9 classes each (a third of the videos a group): no group fits
    under a fifth, so the smallest that leaves every class a training video is held out,
    with a warning, instead of no validation at all."""
    train = [(f"c{k}", g) for g in (1, 2, 3) for k in range(9)]
    with caplog.at_level("WARNING", logger="moclip.dataset.manifest"):
        assert val_share_groups([*train, ("c0", 4)], seed=0, split=1) == {4}  # a small group fits: as usual
    assert caplog.text == ""
    with caplog.at_level("WARNING", logger="moclip.dataset.manifest"):
        held = val_share_groups(train, seed=0, split=1)
    assert len(held) == 1 and held < {1, 2, 3}
    assert (
        "every group holds more than 20% of the 27 training videos; validating on one group of 9 (33%)" in caplog.text
    )


def test_a_video_name_snakemake_would_read_as_a_wildcard_is_refused_like_a_tab(tmp_path):
    """A video is a job's input: ``{name}`` in its path ended the run with Snakemake's
    WildcardError; now the parse-time check names each such file (in a class folder too),
    and braces Snakemake leaves alone are kept."""
    from moclip.workflow.checks import check_run
    from moclip.workflow.config import ConfigError, load_config

    videos = tmp_path / "videos"
    (videos / "a").mkdir(parents=True)
    (videos / "class {c}").mkdir()
    for rel in ("a/ok.avi", "a/brace {wild}.avi", "a/fine {}.avi", "a/fine {a-b}.avi", "class {c}/v.avi"):
        (videos / rel).write_bytes(b"")
    end = "which Snakemake reads as a wildcard in a path (braces have no escape there): rename it"
    want = [
        f"{str(videos / 'a' / 'brace {wild}.avi')!r}: the name holds {{wild}}, {end}",
        f"{str(videos / 'class {c}' / 'v.avi')!r}: the name holds {{c}}, {end}",
    ]
    with pytest.raises(ManifestError) as e:
        build_manifest(videos, None, format="folder")
    assert sorted(str(e.value).splitlines()) == want
    config = load_config([Path(__file__).resolve().parents[1] / "config.yaml"])
    config["dataset"].update(videos=str(videos), format="folder")
    with pytest.raises(ConfigError) as e:
        check_run(config, [], videos, None)
    assert sorted(str(e.value).splitlines()) == want
