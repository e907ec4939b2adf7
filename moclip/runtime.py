"""The process a stage runs in: its log file, its share of the cores, its device, its pools.

torch is imported only by the functions that need it: the cache and demo stages use this
module without paying for torch's start-up.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import multiprocessing
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from moclip.io import BrokenFileError

T, R = TypeVar("T"), TypeVar("R")


def log_to(path: Path | str | None, level: int = logging.INFO) -> None:
    """Send this process's ``logging`` (and warnings) to ``path``, or to stderr when None; a
    broken file that ends the process is one line on stderr, its traceback in the log. With
    a log file, a line on stderr (the run's console) every :func:`progress_every` seconds
    says where the job stands (:class:`Heartbeat`)."""
    every = progress_every() if path else 0.0  # first: a bad value stops the job before it starts
    handler = logging.FileHandler(path, mode="w") if path else logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)
    sys.excepthook = _report_broken_file
    if every > 0:
        last = _LastLine(level)
        root.addHandler(last)
        Heartbeat(job_name(path), every, last).start()


# Seconds between a job's progress lines on the console (0: none); a process-wide setting of
# the console, not of any output, so an environment variable and not the config.
PROGRESS_EVERY = "MOCLIP_PROGRESS_EVERY"
DEFAULT_PROGRESS_EVERY = 15.0


def progress_every() -> float:
    """$MOCLIP_PROGRESS_EVERY, seconds (default 15; 0 turns the console lines off); anything
    but a number of 0 or more stops the process with one line naming the variable."""
    raw = os.environ.get(PROGRESS_EVERY, "").strip()
    if not raw:
        return DEFAULT_PROGRESS_EVERY
    try:
        every = float(raw)
    except ValueError:
        every = -1.0
    if not 0 <= every < float("inf"):
        raise SystemExit(f"error: {PROGRESS_EVERY}={raw!r}: seconds between a job's progress lines (0: none)")
    return every


def job_name(log: Path | str) -> str:
    """A job's name on the console: its log's path under the logs folder, without ``.log``
    (``results/logs/mvnet/tiny/split1.log`` -> ``mvnet/tiny/split1``), which also says
    where its whole log is."""
    parts = Path(log).with_suffix("").parts
    below = [i for i, part in enumerate(parts) if part == "logs"]
    return "/".join(parts[below[-1] + 1 :]) if below and below[-1] + 1 < len(parts) else parts[-1]


class _LastLine(logging.Handler):
    """Keeps the message of the last record logged (what a job is doing before it counts)."""

    def __init__(self, level: int):
        super().__init__(level)
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # arguments that do not format: the file handler says so
            self.message = (record.getMessage().splitlines() or [""])[0]


class Heartbeat(threading.Thread):
    """A job's progress on the run's console: every ``every`` seconds one line on stderr,
    ``[HH:MM:SS] job: ...`` with the counts still running in this process (:class:`Progress`,
    outer first) or, before any, its age and last log message. Written with one ``write``
    to the file descriptor: no lock a forked worker could inherit held, and parallel jobs'
    lines never interleave. A job shorter than ``every`` prints nothing."""

    def __init__(self, job: str, every: float, last: _LastLine, fd: int = 2):
        super().__init__(name="moclip-progress", daemon=True)
        self.job, self.every, self.last, self.fd = job, every, last, fd

    def run(self) -> None:
        stamp = os.environ.get(CONSOLE_STAMP)
        while True:  # a daemon: the thread ends with the process
            time.sleep(self.every)
            try:
                os.write(self.fd, (self.text() + "\n").encode("utf-8", "replace"))
            except OSError:  # the console has gone (a closed pipe): nothing more to say
                return
            if stamp:
                with contextlib.suppress(OSError):  # a job on another machine: not the run's console
                    os.utime(stamp)

    def text(self) -> str:
        counts = running_counts()  # an inner count's note only: one line, not a paragraph
        counts = [p.line(p.clock(), p.note if p is counts[-1] else "") for p in counts]
        what = "; ".join(counts) or (
            f"running {_clock(process_age())}" + (f", {m}" if (m := self.last.message) else "")
        )
        return f"[{time.strftime('%H:%M:%S')}] {self.job}: {what}"


# A file the jobs' heartbeats touch after each line: when the run's console last heard of a job.
CONSOLE_STAMP = "MOCLIP_CONSOLE_STAMP"


class RunWatch(threading.Thread):
    """The run's own line on its console, ``[HH:MM:SS] running: job (wildcards), ...``, when
    no job has printed one for ``every`` seconds while jobs run: a job still starting (its
    Python and imports, minutes on a loaded machine) or one on a cluster node says nothing
    itself. Started by the Snakefile's onstart with ``running``, the names of the jobs
    running now; sets $MOCLIP_CONSOLE_STAMP for the jobs it starts."""

    def __init__(self, running, every: float, fd: int = 2):
        import tempfile

        super().__init__(name="moclip-run-watch", daemon=True)
        self.running, self.every, self.fd = running, every, fd
        self.stamp = tempfile.NamedTemporaryFile(prefix="moclip-console-")  # noqa: SIM115 (the run's, removed at its end)
        os.environ[CONSOLE_STAMP] = self.stamp.name

    def run(self) -> None:
        while True:  # a daemon: the thread ends with the process
            time.sleep(self.every / 3)  # a line at most 4/3 of ``every`` after the last
            try:
                quiet = time.time() - os.stat(self.stamp.name).st_mtime >= self.every
                jobs = list(self.running()) if quiet else []
            except (OSError, RuntimeError):  # the stamp gone (the run ends), the job set changing under us
                continue
            if jobs:
                more = f" and {len(jobs) - 3} more" if len(jobs) > 3 else ""
                line = f"[{time.strftime('%H:%M:%S')}] running: {', '.join(jobs[:3])}{more}\n"
                try:
                    os.write(self.fd, line.encode("utf-8", "replace"))
                    os.utime(self.stamp.name)
                except OSError:
                    return


def watch_run(running) -> RunWatch | None:
    """Start :class:`RunWatch` at the :func:`progress_every` pace (none at 0)."""
    every = progress_every()
    if every <= 0:
        return None
    watch = RunWatch(running, every)
    watch.start()
    return watch


_COUNTS: list[weakref.ref] = []  # every Progress of this process, oldest first


def running_counts() -> list[Progress]:
    """This process's counts not yet done (nor closed, nor dropped), oldest first."""
    return [p for r in list(_COUNTS) if (p := r()) is not None and not p.closed and p.done < p.total]


def _report_broken_file(kind, error, tb) -> None:
    """sys.excepthook: a BrokenFileError in one line on stderr (which file, what is wrong, how
    to rebuild it), the traceback (and a loader worker's) in the log; Ctrl-C a line in the log
    and nothing on the console (Snakemake says the run was interrupted); anything else as
    Python does."""
    if isinstance(error, KeyboardInterrupt):
        logging.getLogger(__name__).warning("interrupted (Ctrl-C): this job's outputs were not written")
        return
    if not isinstance(error, BrokenFileError):
        sys.__excepthook__(kind, error, tb)
        return
    log = logging.getLogger(__name__)
    if error.details:  # the worker's traceback reaches the reader; the stage's adds only the loader
        log.error("broken file, in a loader worker: %s", error.details)
    else:
        log.error("broken file: %s", error, exc_info=(kind, error, tb))
    print(f"error: {error}", file=sys.stderr)


def cpu_count() -> int:
    """The cores this process may run on (its affinity: a cluster job's allocation)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def use_threads(n: int, key: str = "cpu_threads", job_threads: int | None = None) -> None:
    """Compute with exactly ``n`` torch intra-op threads (config ``key``), whatever the job's
    share of the cores (``job_threads``, Snakemake's, capped by --cores): how a CPU reduction
    is split among threads sets its rounding, so the count is part of the arithmetic. More
    threads than the cores a job has is slower, never different (OpenMP threads spinning on
    too few cores slowed a job 100-fold here): a warning says so."""
    import torch

    torch.set_num_threads(int(n))
    log = logging.getLogger(__name__)
    if n > cpu_count():
        log.warning(
            "%s: %d threads on %d cores: the same numbers, slower (set %s to the cores a job has)",
            key,
            n,
            cpu_count(),
            key,
        )
    elif job_threads is not None and n > job_threads:
        log.warning(
            "%s: %d threads in a job given %d (--cores): the same numbers; other jobs on these cores slow it",
            key,
            n,
            job_threads,
        )


PRECISIONS = ("auto", "float32", "bfloat16", "float16")  # a network's arithmetic: see autocast_dtype


def local_gpu() -> bool:
    """Whether this machine shows an NVIDIA card (its device nodes, CUDA_VISIBLE_DEVICES
    honoured), decided without importing torch: the workflow asks it at parse time."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.isdir("/proc/driver/nvidia/gpus")


def local_gpus() -> int:
    """How many NVIDIA cards the jobs here see (device nodes or the driver's list, at most
    CUDA_VISIBLE_DEVICES' entries before any ``-1``), without importing torch: the workflow
    compares it with its GPU slots at parse time."""
    cards = max(len(glob.glob("/dev/nvidia[0-9]*")), len(glob.glob("/proc/driver/nvidia/gpus/*")))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return cards
    entries = [v.strip() for v in visible.split(",")]
    shown = len(entries[: entries.index("-1")] if "-1" in entries else [v for v in entries if v])
    return min(shown, cards)


JOBS_PER_CARD = "MOCLIP_JOBS_PER_CARD"  # the environment variable: the workflow sets it from gpu.jobs_per_card


def jobs_per_card(value: int | None = None) -> int:
    """GPU jobs a card runs at once: ``value``, else ``$MOCLIP_JOBS_PER_CARD`` (the workflow
    sets it from ``gpu.jobs_per_card`` for every job), else 1; ValueError naming the source
    unless a whole number of at least 1."""
    source = "jobs_per_card" if value is not None else f"${JOBS_PER_CARD}"
    raw = value if value is not None else os.environ.get(JOBS_PER_CARD, "1")
    try:
        n = int(raw)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(n) != str(raw).strip():
        raise ValueError(f"{source}: {raw!r} is not a whole number of GPU jobs a card (1 or more)")
    return n


def resolve_device(device: str, *, jobs: int | None = None, timeout: float | None = None):
    """``auto``: the GPU when there is one, else the CPU; anything else as torch reads it.
    A bare ``cuda`` (and ``auto``'s) is a slot of a card (:func:`claim_gpu`, ``jobs`` a
    card: :func:`jobs_per_card`), the first free one, spreading over the cards; with every
    slot held by other moclip jobs it waits up to ``timeout`` seconds (None: as long as it
    takes). ``cuda:k`` is card k as asked, no slot claimed (a user's or a benchmark's own
    choice). The card becomes the process's current device, so that every later context
    lands on it."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        n = torch.cuda.device_count()
        if not 0 <= (dev.index or 0) < n:
            raise ValueError(f"device {device!r}: this process sees {n} CUDA card(s) (CUDA_VISIBLE_DEVICES)")
        if dev.index is None:
            index, _ = claim_gpu([card_id(i) for i in range(n)], jobs=jobs_per_card(jobs), timeout=timeout)
            dev = torch.device("cuda", index)
        torch.cuda.set_device(dev)
    return dev


def card_id(index: int) -> str:
    """A card's identity that every process sees alike, whatever its CUDA_VISIBLE_DEVICES or
    visible index: the UUID of the device."""
    import torch

    return str(torch.cuda.get_device_properties(index).uuid)


_CLAIMED: dict[str, tuple[int, int, object]] = {}  # card id -> (index, slot, open lock file) this process holds


def lock_dir() -> Path:
    """Where the card locks live: ``$MOCLIP_LOCK_DIR``, else ``/tmp/moclip-locks-<uid>``, a
    fixed place, so that jobs started with different ``TMPDIR``s still see each other's
    locks, and this user's own, so that another user's files there never stop a job."""
    import os

    path = Path(os.environ.get("MOCLIP_LOCK_DIR") or f"/tmp/moclip-locks-{os.getuid()}")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def check_lock_dir(path: Path) -> None:
    """Refuse a lock folder that is not this user's own with mode 0700 (a symbolic link, or
    one another user made in the shared /tmp before this user's first GPU job, could hold or
    swap the locks): PermissionError naming the folder, what is wrong and the remedy."""
    import os
    import stat

    st = os.lstat(path)
    problem = None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        problem = "is not a directory (a symbolic link or a file)"
    elif st.st_uid != os.getuid():
        problem = f"belongs to user id {st.st_uid}, not to this user ({os.getuid()})"
    elif stat.S_IMODE(st.st_mode) != 0o700:
        problem = f"has mode {stat.S_IMODE(st.st_mode):04o}, not 0700"
    if problem:
        raise PermissionError(
            f"GPU lock folder {path} {problem}: remove it (or chmod 700 your own), or set MOCLIP_LOCK_DIR "
            "to a folder of yours"
        )


def _try_lock(path: Path):
    """The open lock file at ``path`` held by this process, or None when another process holds
    it or it cannot be opened at all (another user's file, a directory in its place...)."""
    import fcntl

    try:
        f = open(path, "a")  # noqa: SIM115 (held open: the lock lives with it)
    except OSError:
        return None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f


def slot_lock(locks: Path, card: str, slot: int) -> Path:
    """The lock file of ``slot`` of ``card`` (its id: :func:`card_id`)."""
    return locks / f"gpu-{re.sub(r'[^A-Za-z0-9._-]', '_', card)}.slot{slot}.lock"


def _holders(files: list[Path]) -> str:
    """The process ids slot files hold (every one of them held), for a message."""
    pids = []
    for p in files:
        try:
            pids.append(p.read_text().strip())
        except OSError:  # another user's file, a directory in its place: held, by whom unknown
            pids.append("?")
    return f"process ids {', '.join(pids)}, locks in {files[0].parent}"


def claim_gpu(
    cards: list[str],
    locks: Path | str | None = None,
    *,
    jobs: int = 1,
    timeout: float | None = None,
    poll: float = 2.0,
) -> tuple[int, int]:
    """(card index, slot) of a slot no other process holds: ``jobs`` slots a card, each a
    lock file in ``locks`` (default :func:`lock_dir`), tried slot by slot over the cards
    (the first jobs spread over the cards, one a card, before any card takes a second).
    This process keeps its slot until it exits (its pid in the file), and asking again
    returns it. A lock that cannot be opened counts as held. With every slot held (more GPU
    jobs than slots were allowed: ``--resources gpu``), it waits, trying again every
    ``poll`` seconds, up to ``timeout`` seconds (None: as long as it takes; 0: not at all),
    then RuntimeError. The folder must be this user's own with mode 0700
    (:func:`check_lock_dir`)."""
    if _CLAIMED:
        return next(iter(_CLAIMED.values()))[:2]
    locks = Path(locks) if locks else lock_dir()
    check_lock_dir(locks)
    log = logging.getLogger(__name__)
    start, waiting = time.monotonic(), False
    while True:
        for slot in range(jobs):
            for i, card in enumerate(cards):
                f = _try_lock(slot_lock(locks, card, slot))
                if f is not None:
                    f.truncate(0)
                    f.write(f"{os.getpid()}\n")
                    f.flush()
                    _CLAIMED[card] = (i, slot, f)
                    log.info("GPU: card %d (%s), slot %d of %d", i, card, slot, jobs)
                    return i, slot
        held = [slot_lock(locks, card, slot) for slot in range(jobs) for card in cards]
        what = f"all {len(cards) * jobs} GPU slots ({len(cards)} card(s) x {jobs} jobs a card, gpu.jobs_per_card)"
        if timeout is not None and time.monotonic() - start >= timeout:
            raise RuntimeError(
                f"{what} are held by other moclip jobs ({_holders(held)}): let fewer GPU jobs run at once "
                f"(--resources gpu=N) or more share a card (gpu.jobs_per_card)"
            )
        if not waiting:
            log.warning("%s are held by other moclip jobs (%s): waiting for one to finish", what, _holders(held))
            waiting = True
        time.sleep(poll if timeout is None else max(0.0, min(poll, start + timeout - time.monotonic())))


def native_bf16(device) -> bool:
    """Whether the card computes bfloat16 natively (compute capability 8.0, Ampere, or
    newer). ``torch.cuda.is_bf16_supported()`` also counts emulation (V100, T4), which is
    slower than float16 there."""
    import torch

    return torch.cuda.get_device_capability(device) >= (8, 0)


def autocast_dtype(device, precision: str = "auto"):
    """The autocast dtype of a network on ``device`` (None: float32, no autocast).
    ``auto``: on a GPU bfloat16 where the card has it natively (float32's range, so no loss
    scaling), else float16 (train it with a GradScaler: small gradients underflow); float32
    elsewhere. ``float32``, ``bfloat16`` or ``float16`` ask for that arithmetic anywhere."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision: {precision!r} is not one of {PRECISIONS}")
    if precision == "float32":
        return None
    if precision != "auto":
        return getattr(torch, precision)
    if torch.device(device).type != "cuda":
        return None
    return torch.bfloat16 if native_bf16(device) else torch.float16


def autocast(device, amp):
    """``torch.autocast`` to ``amp`` on ``device``'s kind, or no context at all for float32
    (None): a device without autocast (``meta`` in the tests) runs float32 code unchanged."""
    import contextlib

    import torch

    return contextlib.nullcontext() if amp is None else torch.autocast(torch.device(device).type, dtype=amp)


def precision_name(amp) -> str:
    """An autocast dtype as the outputs record it: ``float32`` for None."""
    return "float32" if amp is None else str(amp).removeprefix("torch.")


def make_deterministic() -> None:
    """Repeatable GPU arithmetic where it is cheap: cuDNN's deterministic algorithms (no
    benchmark search), cuBLAS's fixed workspace, and torch's deterministic mode as warnings
    (an op without a deterministic kernel still runs, and its warning names it in the
    job's log). The networks avoid the ones they would hit (see moclip.mv.nets, moclip.mv.train)."""
    import os

    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def set_determinism(deterministic: bool) -> None:
    """On a GPU: :func:`make_deterministic` (``True``), or cuDNN's fastest algorithms, chosen
    by its benchmark search, and torch's deterministic mode off (``False``); the whole
    process's setting, so that one process can time both."""
    import torch

    if deterministic:
        make_deterministic()
        return
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.deterministic = False
    torch.use_deterministic_algorithms(False)


def synchronize(device) -> None:
    """Wait for the work queued on ``device``: a CUDA card's stream; nothing elsewhere (the
    CPU computes as it is asked; the ``meta`` stand-in computes nothing)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def process_age() -> float:
    """Seconds since this process started (Linux: from /proc, to 10 ms), else since moclip
    was imported: a job's start-up, process start to first batch, in its log."""
    import os

    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.time() - _IMPORTED


_IMPORTED = time.time()


_STARTED: list[float] = []  # this process's start-up, once logged


def log_startup(log: logging.Logger, what: str = "first batch") -> None:
    """Log a job's start-up once its first batch is done (once a process, whatever the
    shards or networks it goes on to): process start (Python, imports, model, device) to
    that point, the fixed cost each job of a GPU stage pays."""
    if not _STARTED:
        _STARTED.append(process_age())
        log.info("start-up: %s done %.2f s after the process started", what, _STARTED[0])


def pool_context():
    """Process-pool start method: fork where it is safe and cheap (Linux), spawn elsewhere."""
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def process_pool(workers: int):
    """A process pool of ``workers`` whose processes leave Ctrl-C to the job's main process
    (which stops them), instead of each printing a traceback to the run's console."""
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=pool_context(), initializer=_leave_interrupt)


@contextlib.contextmanager
def map_videos(fn: Callable[[T], R], jobs: Sequence[T], threads: int, chunksize: int = 1) -> Iterator[Iterator[R]]:
    """``fn`` over ``jobs``, results in job order as they come: in a :func:`process_pool` of
    up to ``threads`` processes, or in this process where one would do (one thread or one
    job), so that every stage maps its videos one way. The pool lives as long as the block."""
    workers = min(threads, len(jobs))
    if workers <= 1:
        yield map(fn, jobs)
        return
    with process_pool(workers) as pool:
        yield pool.map(fn, jobs, chunksize=chunksize)


def _leave_interrupt() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Progress:
    """tqdm-style progress for a job's log file: done of total, rate, elapsed time and ETA,
    one line at most every ``every`` seconds (and always the last), so ``tail -f`` on a
    long job's log shows where it stands without flooding it; the console's
    :class:`Heartbeat` shows the same line while the count runs."""

    def __init__(self, unit: str, total: int, log: logging.Logger, every: float = 5.0, clock=time.monotonic):
        self.unit, self.total, self.log, self.every, self.clock = unit, total, log, every, clock
        self.done, self.logged, self.note, self.closed = 0, 0, "", False
        self.start = self.last = clock()
        _COUNTS[:] = [r for r in _COUNTS if r() is not None]  # here, not in the heartbeat's thread
        _COUNTS.append(weakref.ref(self))

    def update(self, n: int = 1, note: str = "") -> None:
        """Count ``n`` more done; log a line if ``every`` seconds passed (``note`` appended)."""
        self.done += n
        self.note = note or self.note
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
        speed = f"{rate:.3g} {self.unit}/s, " if rate >= 1 else f"{1 / rate:.3g} s per {one}, " if rate else ""
        text = f"{self.unit} {self.done}/{self.total} ({pct:.0f}%), {speed}elapsed {_clock(elapsed)}"
        text += f", eta {_clock(eta)}" if eta == eta else ""
        return f"{text}{', ' + note if note else ''}"

    def close(self) -> None:
        """Log the final count unless the last line already showed it."""
        self.closed = True
        if self.logged != self.done:
            self.logged = self.done
            self.log.info("%s", self.line(self.clock()))
