"""The parse-time checks the workflow and ``moclip check-config`` share (moclip.checks)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import DEFAULTS, REPO, merged

from moclip.checks import check_experiments, check_run
from moclip.config import ConfigError, load_config
from moclip.experiments import experiment_configs, experiments
from moclip.layout import Layout


def test_the_demo_with_its_own_models_passes_without_the_registries():
    """The demo's own models are checked from their config files: a fresh interpreter runs
    the checks and has imported neither open_clip's nor timm's registry (nor torch) after."""
    code = (
        "import sys; from pathlib import Path; from moclip.checks import check_run; "
        "from moclip.config import load_config; files = [Path('config.yaml')]; "
        "check_run(load_config(files), files, None, None); "
        "print(' '.join(m for m in ('open_clip', 'timm', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_an_empty_folder_run_and_a_missing_prompt_file_are_one_line_each(tmp_path):
    (tmp_path / "notes.txt").write_text("no video here\n")
    folder = merged(DEFAULTS, {"dataset": {"format": "folder", "videos": str(tmp_path)}})
    with pytest.raises(ConfigError, match=r"no video files \(dataset.format: folder\)"):
        check_run(folder, [], str(tmp_path), None)
    paths = tmp_path / "my-paths.yaml"
    paths.write_text(f"dataset:\n  format: folder\n  videos: {tmp_path}\n")
    with pytest.raises(ConfigError, match=rf"^{paths}:3: dataset.videos: {tmp_path}: no video files"):
        check_run(folder, [paths], str(tmp_path), None)
    src = tmp_path / "mine.yaml"
    src.write_text("clip:\n  prompts: missing-prompts.yaml\n")
    config = merged(DEFAULTS, {"clip": {"prompts": "missing-prompts.yaml"}})
    with pytest.raises(ConfigError) as e:
        check_run(config, [REPO / "config.yaml", src], None, None)
    assert str(e.value).startswith(f"{src}:2: clip.prompts:") and "\n" not in str(e.value)


def test_an_experiments_missing_prompt_file_names_the_experiment_and_its_line(tmp_path):
    src = tmp_path / "run.yaml"
    src.write_text(
        "clip:\n  prompts: phrases\nexperiments:\n  base: {}\n  mine:\n    clip:\n      prompts: missing-prompts.yaml\n"
    )
    files = [REPO / "config.yaml", src]
    config = load_config(files)
    runs = experiments(config, experiment_configs(config, REPO / "schemas" / "config.schema.yaml", files))
    with pytest.raises(ConfigError) as e:
        check_experiments(config, runs, files, Layout(config))
    assert str(e.value).startswith(f"experiment 'mine': {src}:7: clip.prompts:") and "\n" not in str(e.value)
    check_experiments(config, runs[:1], files, Layout(config))  # the base alone is fine
