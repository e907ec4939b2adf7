"""The process a stage runs in: its log file, its share of the cores, its device, its pools.

torch is imported only by the functions that need it: the cache and demo stages use this
module without paying for torch's start-up.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
from pathlib import Path


def log_to(path: Path | str | None, level: int = logging.INFO) -> None:
    """Send this process's ``logging`` (and warnings) to ``path``, or to stderr when None."""
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


def resolve_device(device: str):
    """``auto``: the GPU when there is one, else the CPU; anything else as torch reads it."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast_dtype(device):
    """Mixed precision on ``device``: bfloat16 on a GPU that supports it (float32's range, so
    no loss scaling), else float16 (train it with a GradScaler: small gradients underflow);
    None on the CPU, which computes in float32."""
    import torch

    if torch.device(device).type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def pool_context():
    """Process-pool start method: fork where it is safe and cheap (Linux), spawn elsewhere."""
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
