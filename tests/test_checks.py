"""The parse-time checks the workflow and ``moclip check-config`` share (moclip.checks.check_run)."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO, merged

from moclip.checks import check_run
from moclip.config import ConfigError

DEFAULTS = yaml.safe_load((REPO / "config.yaml").read_text())


def test_the_demo_with_its_own_models_passes_without_the_registries():
    check_run(DEFAULTS, [REPO / "config.yaml"], None, None)


def test_an_empty_folder_run_and_a_missing_prompt_file_are_one_line_each(tmp_path):
    (tmp_path / "notes.txt").write_text("no video here\n")
    folder = merged(DEFAULTS, {"dataset": {"format": "folder", "videos": str(tmp_path)}})
    with pytest.raises(ConfigError, match=r"no video files \(dataset.format: folder\)"):
        check_run(folder, [], str(tmp_path), None)
    src = tmp_path / "mine.yaml"
    src.write_text("clip:\n  prompts: missing-prompts.yaml\n")
    config = merged(DEFAULTS, {"clip": {"prompts": "missing-prompts.yaml"}})
    with pytest.raises(ConfigError) as e:
        check_run(config, [REPO / "config.yaml", src], None, None)
    assert str(e.value).startswith(f"{src}:2: clip.prompts:") and "\n" not in str(e.value)
