"""The configuration: one set of defaults, presets that merge over it, a schema with none."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import merged

from moclip.codec import DecodeSettings
from moclip.heads import HeadSettings
from moclip.mv_stream import MVSettings

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())
DEFAULTS = yaml.safe_load((REPO / "config" / "default.yaml").read_text())


def _walk(schema: dict, path: str = ""):
    yield path, schema
    for k, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{k}" if path else k)


def test_schema_holds_no_defaults_and_requires_every_key():
    for path, node in _walk(SCHEMA):
        assert "default" not in node, path
        if "properties" in node:
            assert sorted(node["required"]) == sorted(node["properties"]), path
            assert node["additionalProperties"] is False, path


@pytest.mark.parametrize("preset", sorted(p.name for p in (REPO / "config").glob("*.yaml")))
def test_defaults_and_every_preset_merged_over_them_are_valid(preset):
    cfg = merged(DEFAULTS, yaml.safe_load((REPO / "config" / preset).read_text()))
    jsonschema.validate(cfg, SCHEMA)


def test_a_key_missing_after_the_merge_is_named():
    cfg = merged(DEFAULTS, {})
    del cfg["mvnet"]["max_displacement"]
    with pytest.raises(jsonschema.ValidationError, match="max_displacement"):
        jsonschema.validate(cfg, SCHEMA)


def test_settings_objects_take_their_config_sections():
    mv = MVSettings.from_config({**DEFAULTS["mvnet"], "seed": 0})
    assert mv.milestones == tuple(DEFAULTS["mvnet"]["milestones"]) and mv.max_displacement == 20.0
    HeadSettings.from_config({k: v for k, v in DEFAULTS["heads"].items() if k != "seeds"})
    with pytest.raises(ValueError, match=r"DecodeSettings: unknown setting\(s\) \['mv_cel'\]"):
        DecodeSettings.from_config({"mv_cel": 8})
