"""The parse-time checks the workflow and ``moclip check-config`` share (moclip.workflow.checks)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import DEFAULTS, REPO, merged

from moclip.workflow.checks import check_experiments, check_run
from moclip.workflow.config import ConfigError, load_config
from moclip.workflow.experiments import experiment_configs, experiments
from moclip.workflow.layout import Layout


def test_the_demo_with_its_own_models_passes_without_the_registries():
    """The demo's own models are checked from their config files: a fresh interpreter runs
    the checks and has imported neither open_clip's nor timm's registry (nor torch) after."""
    code = (
        "import sys; from pathlib import Path; from moclip.workflow.checks import check_run; "
        "from moclip.workflow.config import load_config; files = [Path('config.yaml')]; "
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


@pytest.fixture
def dropped_packets():
    """An address whose connections hang, as on a machine whose packets go nowhere: a local
    listener with a full queue (the kernel drops the next connections' SYNs)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    filler = socket.create_connection(server.getsockname())  # the queue's one place, taken
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    filler.close()
    server.close()


def _no_network(monkeypatch, tmp_path, endpoint: str) -> list[tuple[str, int]]:
    """The hub at ``endpoint``, an empty cache, no proxy, HF_HUB_OFFLINE unset, and this
    process's verdict forgotten; the connections the check opens are recorded."""
    import socket

    from huggingface_hub import constants

    from moclip.workflow import checks

    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)  # as $HF_ENDPOINT sets both at import
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(checks, "_PROBES", {}, raising=False)
    monkeypatch.setattr(checks, "_VERDICTS", {}, raising=False)
    opened, connect = [], socket.create_connection
    monkeypatch.setattr(socket, "create_connection", lambda a, *k, **kw: opened.append(a) or connect(a, *k, **kw))
    return opened


def test_the_weights_check_knows_there_is_no_network_once_and_in_seconds(monkeypatch, tmp_path, dropped_packets):
    """Connections to the hub hang and HF_HUB_OFFLINE is not set: the paper preset's two
    tags (10 s of HTTP timeout each, before) are refused within 5 s, from one connection
    tried for 2 s, and the message says that HF_HUB_OFFLINE=1 skips the wait."""
    import time

    from moclip.workflow.checks import CONNECT_TIMEOUT, check_weights, weight_files

    files = [REPO / "config.yaml", REPO / "config" / "ucf101-paper.yaml"]
    cfg = load_config(files)
    weight_files(cfg)  # the registries loaded: what is timed is the check's own waiting
    opened = _no_network(monkeypatch, tmp_path, dropped_packets)
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as e:
        check_weights(cfg, files)
    took = time.monotonic() - t0
    print(f"the weights check without network: {took:.2f} s")
    lines = str(e.value).splitlines()
    port = dropped_packets.rsplit(":", 1)[1]
    assert len(lines) == 2 and opened == [("127.0.0.1", int(port))], (lines, opened)
    for line in lines:
        assert (
            f"cannot be fetched (no connection to 127.0.0.1:{port} within 2 s; on a machine without network, " in line
        )
        assert "HF_HUB_OFFLINE=1 skips this wait)" in line
    assert CONNECT_TIMEOUT <= took < 5
    with pytest.raises(ConfigError):  # the same process asks again: no second connection
        check_weights(cfg, files)
    assert len(opened) == 1


def test_hf_hub_offline_opens_no_connection(monkeypatch, tmp_path, dropped_packets):
    from huggingface_hub import constants

    from moclip.workflow.checks import check_weights

    files = [REPO / "config.yaml", REPO / "config" / "ucf101-paper.yaml"]
    opened = _no_network(monkeypatch, tmp_path, dropped_packets)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match=r"cannot be fetched \(HF_HUB_OFFLINE is set\)"):
        check_weights(load_config(files), files)
    assert opened == []


def test_check_config_without_network_is_one_line_a_tag(tiny_demo, tmp_path, dropped_packets):
    """`moclip check-config` on the UCF101 preset (OpenAI's ViT-B-32, ImageNet B0) where
    connections hang: one line a tag, exit status 2, the time printed (the imports of
    torch, open_clip and timm are most of it: about 4 s on an idle 2-core machine)."""
    import os
    import time

    paths = tmp_path / "paths.yaml"
    paths.write_text(f"dataset:\n  videos: {tiny_demo[0]}\n  lists: {tiny_demo[1]}\n")
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and k != "HF_HUB_OFFLINE"}
    env |= {"HF_ENDPOINT": dropped_packets, "HF_HUB_CACHE": str(tmp_path / "empty-hub")}
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "moclip.cli", "check-config", str(REPO / "config" / "ucf101.yaml"), str(paths)],
        capture_output=True,
        text=True,
        env=env,
    )
    print(f"moclip check-config without network: {time.monotonic() - t0:.2f} s")
    lines = out.stderr.splitlines()
    assert out.returncode == 2 and len(lines) == 2 and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith("moclip check-config: error: ") and "clip.pretrained: the weights of" in lines[0]
    assert all("(no connection to 127.0.0.1:" in ln and "HF_HUB_OFFLINE=1 skips this wait" in ln for ln in lines)
