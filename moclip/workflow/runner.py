"""The workflow's ``snakemake`` command line run from Python, as a user types it: the one
runner of the tests and the benchmarks. A config (a dict) is written to a file in the run's
directory and given with ``--configfile``, merged over the repository's config.yaml.

The Snakefile is the repository's, beside this package (an editable install)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "Snakefile"
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")  # the venv's, beside this Python
CONFIG_NAME = "run-config.yaml"


class SnakemakeFailed(RuntimeError):
    """A run that exited non-zero: the command and what it printed."""


def command(
    workdir: Path,
    config: dict | Path,
    *args: str,
    cores: str | int | None = 2,
    snakefile: Path = SNAKEFILE,
    program: list[str] | None = None,
    config_name: str = CONFIG_NAME,
) -> list[str]:
    """The command line of a run in ``workdir`` (made if missing): ``config`` a file, or a
    dict written to ``workdir/config_name`` (in its order: experiments keep theirs).
    ``program`` replaces the ``snakemake`` executable; ``cores=None`` gives no --cores."""
    workdir.mkdir(parents=True, exist_ok=True)
    if isinstance(config, dict):
        cfg = workdir / config_name
        cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    else:
        cfg = Path(config)
    cmd = [*(program or [SNAKEMAKE]), "--snakefile", str(snakefile), "--directory", str(workdir)]
    cmd += ["--configfile", str(cfg)]
    cmd += ["--cores", str(cores)] if cores is not None else []
    return cmd + list(args)


def environment(env: dict | None = None) -> dict[str, str]:
    """The caller's environment with a fixed hash seed (set iteration orders in the jobs) and ``env``."""
    return {**os.environ, "PYTHONHASHSEED": "0", **(env or {})}


def run(
    workdir: Path,
    config: dict | Path,
    *args: str,
    check: bool = True,
    env: dict | None = None,
    timeout: float | None = None,
    **kw,
) -> subprocess.CompletedProcess:
    """One run to its end from ``workdir``, its output captured; ``check``: a failed run
    raises :class:`SnakemakeFailed` with its output. ``kw``: :func:`command`'s."""
    cmd = command(workdir, config, *args, **kw)
    out = subprocess.run(cmd, capture_output=True, text=True, env=environment(env), cwd=workdir, timeout=timeout)
    if check and out.returncode != 0:
        raise SnakemakeFailed(f"snakemake failed ({out.returncode}): {' '.join(cmd)}\n{out.stdout}\n{out.stderr}")
    return out


def start(
    workdir: Path, config: dict | Path, *args: str, log: Path, env: dict | None = None, popen: dict | None = None, **kw
) -> subprocess.Popen:
    """One run started in the background from ``workdir``, its console (stdout and stderr)
    written to ``log``; ``popen``: more arguments of :class:`subprocess.Popen`
    (``start_new_session``...). ``kw``: :func:`command`'s."""
    cmd = command(workdir, config, *args, **kw)
    with open(log, "w") as f:  # the child keeps its own handle
        return subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, env=environment(env), cwd=workdir, **(popen or {})
        )
