"""Helpers shared by every stage: atomic writes, log files, threads and process pools."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temp path beside ``path`` for the block to create; rename it onto ``path`` only
    if the block succeeds.

    A killed or failing writer leaves a ``.tmp`` file that no reader mistakes for a result.
    The name is unique (process id and a random token) but not created here: the writer
    creates it, so a cache file costs one file creation, not two.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(6)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def log_to(path: Path | str | None, level: int = 20) -> None:
    """Send this process's ``logging`` (and warnings) to ``path``, or to stderr when None."""
    import logging

    handler = logging.FileHandler(path, mode="w") if path else logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)


def use_threads(n: int) -> None:
    """Cap torch's intra-op threads at the job's share of the cores (no oversubscription)."""
    import torch

    torch.set_num_threads(max(1, int(n)))


def pool_context():
    """Process-pool start method: fork where it is safe and cheap (Linux), spawn elsewhere."""
    import multiprocessing
    import sys

    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
