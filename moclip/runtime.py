"""The process a stage runs in: its log file, its share of the cores, its device, its pools.

torch is imported only by the functions that need it: the cache and demo stages use this
module without paying for torch's start-up.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import time
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
    """``auto``: the GPU when there is one, else the CPU; anything else as torch reads it.
    With several cards visible, ``auto`` and ``cuda`` take the first card no other moclip
    job holds (``claim_gpu``), so that parallel GPU jobs spread over the cards."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and torch.cuda.device_count() > 1:
        return torch.device("cuda", claim_gpu(torch.cuda.device_count()))
    return torch.device(device)


_CLAIMED: dict[str, object] = {}  # the card this process holds: its index and open lock file


def claim_gpu(count: int, lock_dir: Path | str | None = None) -> int:
    """Index of the first of ``count`` cards whose lock file (``moclip-gpu<i>.lock`` in the
    temp directory) no other process holds; this process keeps it until it exits, and asking
    again returns the same card. When every card is held (more GPU jobs than cards were
    allowed: see the profile's ``resources: gpu``), the cards are shared, with a warning."""
    import fcntl
    import os
    import tempfile

    if "index" in _CLAIMED:
        return _CLAIMED["index"]
    lock_dir = Path(lock_dir or tempfile.gettempdir())
    for i in range(count):
        f = open(lock_dir / f"moclip-gpu{i}.lock", "a")  # noqa: SIM115 (held open: the lock lives with it)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _CLAIMED.update(index=i, file=f)
        return i
    i = os.getpid() % count
    logging.getLogger(__name__).warning(
        "all %d GPUs are held by other moclip jobs: sharing card %d (limit GPU jobs with --resources gpu=%d)",
        count,
        i,
        count,
    )
    _CLAIMED.update(index=i)
    return i


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


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Progress:
    """tqdm-style progress for a job's log file: done of total, rate, elapsed time and ETA,
    one line at most every ``every`` seconds (and always the last), so ``tail -f`` on a
    long job's log shows where it stands without flooding it."""

    def __init__(self, unit: str, total: int, log: logging.Logger, every: float = 5.0, clock=time.monotonic):
        self.unit, self.total, self.log, self.every, self.clock = unit, total, log, every, clock
        self.done, self.logged = 0, 0
        self.start = self.last = clock()

    def update(self, n: int = 1, note: str = "") -> None:
        """Count ``n`` more done; log a line if ``every`` seconds passed (``note`` appended)."""
        self.done += n
        now = self.clock()
        if now - self.last >= self.every or self.done >= self.total:
            self.last, self.logged = now, self.done
            self.log.info("%s", self.line(now, note))

    def line(self, now: float, note: str = "") -> str:
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        pct = 100 * self.done / self.total if self.total else 100.0
        one = self.unit.removesuffix("s")
        speed = f"{rate:.3g} {self.unit}/s" if rate >= 1 or rate == 0 else f"{1 / rate:.3g} s per {one}"
        text = f"{self.unit} {self.done}/{self.total} ({pct:.0f}%), {speed}, elapsed {_clock(elapsed)}"
        text += f", eta {_clock(eta)}" if eta == eta else ""
        return f"{text}{', ' + note if note else ''}"

    def close(self) -> None:
        """Log the final count unless the last line already showed it."""
        if self.logged != self.done:
            self.logged = self.done
            self.log.info("%s", self.line(self.clock()))
