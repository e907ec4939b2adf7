"""moclip.settings: defaults from config.yaml and each numeric setting's range from the schema,
the one place the library's checks and the CLI's flags read it."""

from __future__ import annotations

import pytest

from moclip.cli import main
from moclip.dataset.demo import DemoSpec
from moclip.dataset.manifest import build_manifest
from moclip.dataset.videos import ManifestError
from moclip.settings import bound, check_bound, workflow_schema
from moclip.video.cache import FrameStorage

RANGE_KEYS = {"minimum", "maximum", "exclusiveMinimum"}


def ranged_settings() -> list[str]:
    """Every section.key of the schema with a numeric range, found by walking the schema."""
    out = []
    for section, spec in workflow_schema()["properties"].items():
        for key, prop in spec.get("properties", {}).items():
            if any(RANGE_KEYS & set(b) for b in prop.get("oneOf", [prop])):
                out.append(f"{section}.{key}")
    return out


def test_every_ranged_setting_has_its_bound_as_the_schema_writes_it():
    keys = ranged_settings()
    assert {"frames.jpeg_quality", "dataset.shards", "demo.frames", "dense.window_s"} <= set(keys)
    for key in keys:
        section, name = key.split(".")
        prop = workflow_schema()["properties"][section]["properties"][name]
        rule = next(b for b in prop.get("oneOf", [prop]) if RANGE_KEYS & set(b))
        b = bound(key)
        assert (b.minimum, b.maximum, b.above) == (
            rule.get("minimum"),
            rule.get("maximum"),
            rule.get("exclusiveMinimum"),
        )
        assert b.auto == ("auto" in str(prop.get("oneOf", "")))


@pytest.mark.parametrize(
    ("key", "good", "bad", "words"),
    [
        ("frames.jpeg_quality", [1, 100], [0, 101, "95"], "must be 1-100"),
        ("dataset.shards", ["auto", 1, 52], [0, -1, "many"], "must be auto or 1 or more"),
        ("dense.window_s", [0.5, 2], [0, -1.0], "must be more than 0"),
        ("demo.frames", [2], [1, True], "must be 2 or more"),
    ],
)
def test_a_value_out_of_range_is_named_with_its_key_and_range(key, good, bad, words):
    for v in good:
        check_bound(key, v)
    for v in bad:
        with pytest.raises(ValueError, match=rf"^{key}={v!r}: {words}$" if isinstance(v, str) else rf"^{key}="):
            check_bound(key, v)


def test_the_library_and_the_cli_refuse_a_value_in_the_same_words(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"^frames.jpeg_quality=0: must be 1-100$"):
        FrameStorage("jpeg", 0)
    with pytest.raises(ValueError, match=r"^demo.frames=1: must be 2 or more$"):
        DemoSpec(frames=1).validate()
    with pytest.raises(ManifestError, match=r"^dataset.shards=0: must be auto or 1 or more$"):
        build_manifest(tmp_path, tmp_path, num_shards=0)
    for argv, words in [
        (["cache", "v.avi", "--out", str(tmp_path), "--jpeg-quality", "0"], "must be 1-100, got 0"),
        (["demo-data", str(tmp_path), "--frames", "1"], "must be 2 or more, got 1"),
        (
            ["manifest", "--videos", str(tmp_path), "--out", "m.tsv", "--shards", "0"],
            "must be auto or 1 or more, got 0",
        ),
        (["cache", "v.avi", "--out", str(tmp_path), "--short-side", "4"], "must be 8 or more, got 4"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and words in capsys.readouterr().err, argv
    assert not list(tmp_path.iterdir())  # refused before anything is written
