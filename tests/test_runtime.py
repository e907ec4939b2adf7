"""The job runtime: progress lines a long job writes to its log and the console."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from moclip import runtime
from moclip.io import snakemake_program
from moclip.runtime import Progress, map_videos, process_pool


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_progress_lines_are_rate_limited_and_name_total_rate_and_eta(caplog):
    clock, log = _Clock(), logging.getLogger("progress-test")
    p = Progress("videos", 100, log, every=5.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="progress-test"):
        for _ in range(10):  # 10 videos in 2 s: no line yet
            clock.t += 0.2
            p.update()
        assert caplog.messages == []
        clock.t += 3.0  # 11 videos at 5 s
        p.update(note="12 frames decoded")
        assert caplog.messages == ["videos 11/100 (11%), 2.2 videos/s, elapsed 0:00:05, eta 0:00:40, 12 frames decoded"]
        clock.t += 1.0
        p.update(89)  # the last one is always logged
        assert caplog.messages[-1].startswith("videos 100/100 (100%)")
        assert "eta 0:00:00" in caplog.messages[-1]
        p.close()  # nothing new to say
        assert len(caplog.messages) == 2


def test_progress_close_reports_an_unfinished_count(caplog):
    clock, log = _Clock(), logging.getLogger("progress-test")
    p = Progress("videos", 10, log, every=60, clock=clock)
    with caplog.at_level(logging.INFO, logger="progress-test"):
        clock.t = 2.0
        p.update(4)
        p.close()  # e.g. failed videos skipped: the final count still reaches the log
    assert caplog.messages == ["videos 4/10 (40%), 2 videos/s, elapsed 0:00:02, eta 0:00:03"]


def test_slow_units_read_as_seconds_each(caplog):
    clock, log = _Clock(), logging.getLogger("progress-test")
    p = Progress("epochs", 200, log, every=0, clock=clock)
    with caplog.at_level(logging.INFO, logger="progress-test"):
        clock.t = 102.9
        p.update(note="epoch 0: loss 4.63")
    assert caplog.messages == ["epochs 1/200 (0%), 103 s per epoch, elapsed 0:01:43, eta 5:41:17, epoch 0: loss 4.63"]


# A job as a workflow script runs it: its log, a minute of start-up (here 1 s), then a count.
_COUNTING = """
import logging, sys, time
from moclip.runtime import Progress, log_to
log_to(sys.argv[1])
log = logging.getLogger("stage")
log.info("loading the model")
time.sleep(1.0)
p = Progress("videos", 8, log, every=60)
for _ in range(8):
    time.sleep(0.25)
    p.update(note="12 frames decoded")
time.sleep(0.6)
"""


def _counting_job(tmp_path, every: str) -> tuple[subprocess.CompletedProcess, float, Path]:
    log = tmp_path / "results" / "logs" / "cache" / "shard-00001.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, runtime.PROGRESS_EVERY: every}
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", _COUNTING, str(log)], capture_output=True, text=True, env=env)
    return out, time.monotonic() - t0, log


def test_a_jobs_progress_reaches_the_console_at_the_pace_asked(tmp_path):
    """A job with a log file says on stderr (Snakemake's console) where it stands: a line
    every MOCLIP_PROGRESS_EVERY seconds, stamped and named after its log, with its running
    count, or before one its age and last log message; never more often than asked."""
    out, wall, log = _counting_job(tmp_path, "0.2")
    lines = out.stderr.splitlines()
    assert out.returncode == 0 and lines, out.stderr
    assert all(re.fullmatch(r"\[\d\d:\d\d:\d\d\] cache/shard-00001: \S.*", ln) for ln in lines), lines
    counting = [i for i, ln in enumerate(lines) if re.search(r": videos \d/8 \(\d+%\), ", ln)]
    assert counting, lines
    assert all(re.search(r": videos [0-7]/8 ", lines[i]) for i in counting)  # a count done is no longer shown
    assert any("videos/s" in lines[i] and lines[i].endswith(", 12 frames decoded") for i in counting), lines
    before = lines[: counting[0]]  # start-up: the age and what the job logged last
    assert before and re.search(r": running 0:00:0\d, loading the model$", before[-1]), lines
    after = lines[counting[-1] + 1 :]  # the count done: its last line, as logged
    assert after and re.search(r": running 0:00:0\d, videos 8/8 \(100%\)", after[-1]), lines
    assert len(lines) <= wall / 0.2 + 1, (len(lines), wall)
    assert "cache/shard-00001:" not in log.read_text()  # the log keeps its own lines
    assert "videos 8/8 (100%)" in log.read_text()


def test_progress_on_the_console_is_off_with_zero_and_a_bad_pace_is_one_line(tmp_path):
    off, _, log = _counting_job(tmp_path, "0")
    assert off.returncode == 0 and off.stderr == "" and "videos 8/8" in log.read_text()
    for bad in ("soon", "-1", "inf"):
        out = subprocess.run(
            [sys.executable, "-c", _COUNTING, str(log)],
            capture_output=True,
            text=True,
            env={**os.environ, runtime.PROGRESS_EVERY: bad},
        )
        assert out.returncode == 1
        assert out.stderr == f"error: MOCLIP_PROGRESS_EVERY={bad!r}: seconds between a job's progress lines (0: none)\n"


def test_a_jobs_console_name_is_its_log_under_the_logs_folder():
    assert runtime.job_name("results/logs/mvnet/tiny/split1.log") == "mvnet/tiny/split1"
    assert runtime.job_name("/r/logs/experiments/a/heads/x/split1/fusion.log") == "experiments/a/heads/x/split1/fusion"
    assert runtime.job_name("elsewhere/job.log") == "job"


_HOLD = """
import fcntl, sys, time
f = open(sys.argv[1], "a")
fcntl.flock(f, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""
CARDS = ["GPU-aaaa", "GPU-bbbb", "GPU-cccc"]  # the cards' ids (UUIDs), as card_id gives them


def _claim_in_subprocess(cards: list[str], locks) -> subprocess.CompletedProcess:
    code = f"from moclip.runtime import claim_gpu; print(claim_gpu({cards!r}, {str(locks)!r})[0])"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)


def _slot0(locks: Path, card: str) -> Path:
    return locks / f"gpu-{card}.slot0.lock"


def test_gpu_jobs_take_the_first_card_no_other_job_holds(tmp_path, monkeypatch):
    """Several GPU jobs at once (``--resources gpu=N``) spread over the cards: each takes
    the first card whose lock another process does not hold, and keeps it."""
    monkeypatch.setattr(runtime, "_CLAIMED", {})
    other = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(_slot0(tmp_path, "GPU-aaaa"))], stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout.readline() == "held\n"
        assert runtime.claim_gpu(CARDS, tmp_path) == (1, 0)  # card 0 is another job's
        assert runtime.claim_gpu(CARDS, tmp_path) == (1, 0)  # asked again: the same card
    finally:
        other.kill()
        other.wait()
    assert _claim_in_subprocess(CARDS, tmp_path).stdout.strip() == "0"  # card 0 freed; card 1 still this one's
    assert runtime._CLAIMED["GPU-bbbb"][:2] == (1, 0)


def test_locks_follow_the_card_not_its_visible_index(tmp_path, monkeypatch):
    """Two jobs that see the cards in another order (CUDA_VISIBLE_DEVICES) still exclude
    each other: the lock is named by the card's id."""
    monkeypatch.setattr(runtime, "_CLAIMED", {})
    assert runtime.claim_gpu(CARDS, tmp_path) == (0, 0)  # this process holds GPU-aaaa
    assert _claim_in_subprocess(CARDS[::-1], tmp_path).stdout.strip() == "0"  # GPU-cccc, first in its order
    assert _claim_in_subprocess(["GPU-aaaa", "GPU-bbbb"], tmp_path).stdout.strip() == "1"


def test_a_lock_that_cannot_be_opened_counts_as_held(tmp_path, monkeypatch):
    """Another user's lock file in a shared directory cannot be opened (PermissionError):
    the job takes the next card instead of dying. A directory in the lock's place fails
    to open for root too, so it stands in for the other user's file here."""
    monkeypatch.setattr(runtime, "_CLAIMED", {})
    _slot0(tmp_path, "GPU-aaaa").mkdir()
    assert runtime.claim_gpu(CARDS, tmp_path) == (1, 0)


def test_the_lock_directory_is_this_users_and_ignores_tmpdir(tmp_path, monkeypatch):
    monkeypatch.delenv("MOCLIP_LOCK_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    d = runtime.lock_dir()
    assert d == Path(f"/tmp/moclip-locks-{os.getuid()}") and d.is_dir() and d.stat().st_uid == os.getuid()
    monkeypatch.setenv("MOCLIP_LOCK_DIR", str(tmp_path / "locks"))
    assert runtime.lock_dir() == tmp_path / "locks" and (tmp_path / "locks").is_dir()


def _foreign(d: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("giving a folder to another user needs root")
    os.chown(d, os.getuid() + 4242, -1)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda d: (d.mkdir(), d.chmod(0o755)), "has mode 0755, not 0700"),
        (lambda d: (d.mkdir(mode=0o700), _foreign(d)), "belongs to user id"),
        (
            lambda d: (d.parent.joinpath("real").mkdir(mode=0o700), d.symlink_to(d.parent / "real")),
            "is not a directory",
        ),
    ],
    ids=["open-mode", "another-users", "symlink"],
)
def test_a_lock_folder_not_this_users_own_0700_is_refused_before_use(tmp_path, monkeypatch, make, problem):
    """/tmp is shared: a folder another user made at this user's lock path, a link, or one
    others can write to could hold or swap the locks. Refused by name, nothing locked."""
    monkeypatch.setattr(runtime, "_CLAIMED", {})
    d = tmp_path / "locks"
    make(d)
    with pytest.raises(PermissionError, match=rf"^GPU lock folder {re.escape(str(d))} {problem}"):
        runtime.claim_gpu(CARDS, d)
    assert runtime._CLAIMED == {} and not list(d.glob("*.lock"))
    monkeypatch.setenv("MOCLIP_LOCK_DIR", str(d))
    with pytest.raises(PermissionError, match="GPU lock folder"):
        runtime.claim_gpu(CARDS)  # the default folder is checked alike
    monkeypatch.setenv("MOCLIP_LOCK_DIR", str(tmp_path / "fresh"))
    assert runtime.claim_gpu(CARDS) == (0, 0) and oct((tmp_path / "fresh").stat().st_mode & 0o777) == "0o700"


# A GPU job elsewhere: claims a slot (claim_gpu's keywords as JSON), prints it, holds it until killed.
_JOB = """
import json, sys, time
from moclip.runtime import claim_gpu
print(json.dumps(claim_gpu(**json.loads(sys.argv[1]))), flush=True)
time.sleep(120)
"""


class Jobs:
    """Other GPU jobs, each holding the slot it claimed: started one after the other."""

    def __init__(self, locks: Path):
        self.locks, self.procs = locks, []

    def start(self, **kw) -> subprocess.Popen:
        args = json.dumps({"locks": str(self.locks), **kw})
        p = subprocess.Popen(
            [sys.executable, "-c", _JOB, args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.procs.append(p)
        return p

    def claim(self, **kw) -> tuple[int, int]:
        """A job that claims a slot: the slot it got, once it has it."""
        p = self.start(**kw)
        line = p.stdout.readline()
        assert line, p.stderr.read()
        return tuple(json.loads(line))

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


@pytest.fixture
def jobs(tmp_path):
    j = Jobs(tmp_path)
    yield j
    j.close()


def test_one_card_runs_jobs_per_card_jobs_and_the_next_waits_for_a_slot(tmp_path, monkeypatch, jobs):
    """gpu.jobs_per_card 3 on a one-card machine: three jobs get cuda:0's slots 0, 1 and 2
    (the third here, through resolve_device on stand-in cards); a fourth is refused when it
    may not wait, and with waiting takes the slot a finished job leaves."""
    import torch

    monkeypatch.setattr(runtime, "_CLAIMED", {})
    monkeypatch.setenv("MOCLIP_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("MOCLIP_JOBS_PER_CARD", "3")
    current = _fake_cards(monkeypatch, (9, 0), count=1)
    one = ["GPU-0"]
    assert jobs.claim(cards=one, jobs=3) == (0, 0) and jobs.claim(cards=one, jobs=3) == (0, 1)
    assert runtime.resolve_device("cuda") == torch.device("cuda", 0) and current == [torch.device("cuda", 0)]
    assert runtime._CLAIMED["GPU-0"][:2] == (0, 2)
    refused = jobs.start(cards=one, jobs=3, timeout=0)
    holders = ", ".join(str(pid) for pid in (jobs.procs[0].pid, jobs.procs[1].pid, os.getpid()))
    assert refused.wait(60) == 1 and "RuntimeError: all 3 GPU slots (1 card(s) x 3 jobs a card" in (
        err := refused.stderr.read()
    )
    assert f"held by other moclip jobs (process ids {holders}, locks in {tmp_path})" in err
    waiting = jobs.start(cards=one, jobs=3, poll=0.05)
    time.sleep(1.0)
    assert waiting.poll() is None  # still waiting: every slot held
    jobs.procs[1].kill()  # the job on slot 1 ends
    assert json.loads(waiting.stdout.readline()) == [0, 1]


def test_two_cards_spread_the_jobs_before_doubling_up(tmp_path, monkeypatch, jobs):
    """With two cards and 3 jobs a card the first jobs take slot 0 of each card, then slot 1;
    one job a card (the default) never shares: the third job of two cards waits. A named
    card (cuda:0) is used as asked, without a slot."""
    import torch

    monkeypatch.setattr(runtime, "_CLAIMED", {})
    monkeypatch.setenv("MOCLIP_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("MOCLIP_JOBS_PER_CARD", "3")
    _fake_cards(monkeypatch, (9, 0), count=2)
    two = ["GPU-0", "GPU-1"]
    assert [jobs.claim(cards=two, jobs=3) for _ in range(3)] == [(0, 0), (1, 0), (0, 1)]
    assert runtime.resolve_device("cuda") == torch.device("cuda", 1) and runtime._CLAIMED["GPU-1"][:2] == (1, 1)
    assert jobs.claim(cards=two, jobs=3) == (0, 2)
    assert jobs.start(cards=two, jobs=1, timeout=0).wait(60) == 1  # one a card: both cards' slot 0 are held
    claimed = dict(runtime._CLAIMED)
    monkeypatch.setattr(runtime, "_CLAIMED", {})
    assert runtime.resolve_device("cuda:0") == torch.device("cuda", 0) and runtime._CLAIMED == {}
    with pytest.raises(ValueError, match=r"device 'cuda:2': this process sees 2 CUDA card"):
        runtime.resolve_device("cuda:2")
    assert list(claimed) == ["GPU-1"]


def test_jobs_per_card_is_a_whole_number_from_the_setting_or_the_environment(monkeypatch):
    monkeypatch.delenv("MOCLIP_JOBS_PER_CARD", raising=False)
    assert runtime.jobs_per_card() == 1
    monkeypatch.setenv("MOCLIP_JOBS_PER_CARD", "3")
    assert runtime.jobs_per_card() == 3 and runtime.jobs_per_card(2) == 2
    for bad in ("0", "x", "2.5", ""):
        monkeypatch.setenv("MOCLIP_JOBS_PER_CARD", bad)
        with pytest.raises(ValueError, match=r"^\$MOCLIP_JOBS_PER_CARD: .* is not a whole number"):
            runtime.jobs_per_card()
    with pytest.raises(ValueError, match="^jobs_per_card: True"):
        runtime.jobs_per_card(True)


def test_the_cards_the_jobs_see_without_torch(monkeypatch):
    monkeypatch.setattr(runtime.glob, "glob", lambda pat: [f"/dev/nvidia{i}" for i in range(4)] if "dev" in pat else [])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert runtime.local_gpus() == 4
    for visible, n in [("0,1", 2), ("", 0), ("-1", 0), ("2,-1,3", 1), ("0,1,2,3,4,5", 4), ("GPU-abc", 1)]:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        assert runtime.local_gpus() == n, visible


def _fake_cards(monkeypatch, capability: tuple[int, int], count: int = 1) -> list:
    """torch.cuda as a machine with ``count`` cards of ``capability`` would answer it."""
    import torch

    current = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: current.append(torch.device(d)))
    monkeypatch.setattr(runtime, "card_id", lambda i: f"GPU-{i}")
    return current


def test_precision_follows_the_cards_native_support(monkeypatch):
    """bfloat16 only where the card computes it natively (compute capability 8.0 or more);
    older cards (V100 7.0, T4 7.5), which torch.cuda.is_bf16_supported() counts by
    emulation, get float16 (with a gradient scaler when training); the CPU float32."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what emulation reports
    assert runtime.autocast_dtype("cpu") is None
    for capability, want in [((7, 0), torch.float16), ((7, 5), torch.float16), ((8, 0), torch.bfloat16)]:
        _fake_cards(monkeypatch, capability)
        assert runtime.autocast_dtype("cuda:0") == want, capability
    assert runtime.autocast_dtype("cuda:0", "float32") is None
    assert runtime.autocast_dtype("cpu", "bfloat16") == torch.bfloat16  # asked for: given
    assert runtime.precision_name(None) == "float32" and runtime.precision_name(torch.float16) == "float16"


def test_a_cuda_device_becomes_the_current_one(tmp_path, monkeypatch):
    """resolve_device sets the card it chose as the process's device, so that every later
    context and check lands on it (with several cards: the one it claimed)."""
    import torch

    monkeypatch.setenv("MOCLIP_LOCK_DIR", str(tmp_path))
    monkeypatch.setattr(runtime, "_CLAIMED", {})
    current = _fake_cards(monkeypatch, (9, 0), count=3)
    _slot0(tmp_path, "GPU-0").mkdir()  # card 0 cannot be had
    assert runtime.resolve_device("auto") == torch.device("cuda", 1) and current == [torch.device("cuda", 1)]
    assert runtime.resolve_device("cuda:2") == torch.device("cuda", 2) and current[-1] == torch.device("cuda", 2)
    assert runtime.resolve_device("cpu") == torch.device("cpu") and len(current) == 2


def test_process_age_counts_from_the_process_start():
    code = "import time; time.sleep(0.5); from moclip.runtime import process_age; print(process_age())"
    age = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 0.5 <= age < 30


def test_a_broken_file_ending_a_stage_is_one_line_on_stderr_and_its_traceback_in_the_log(tmp_path):
    log = tmp_path / "stage.log"
    code = (
        "from moclip.runtime import log_to; from moclip.io import read_json; import sys; "
        f"log_to({str(log)!r}); read_json(sys.argv[1])"
    )
    out = subprocess.run([sys.executable, "-c", code, "results/m.json"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 1
    rebuild = f"{snakemake_program()} --forcerun results/m.json"
    assert out.stderr == f"error: results/m.json: missing; rebuild it with: {rebuild}\n"
    assert "Traceback" in log.read_text() and "FileNotFoundError" in log.read_text()
    other = subprocess.run(
        [sys.executable, "-c", f"from moclip.runtime import log_to; log_to({str(log)!r}); 1 / 0"],
        capture_output=True,
        text=True,
    )
    assert other.returncode == 1 and "Traceback" in other.stderr and "ZeroDivisionError" in other.stderr  # as ever


def test_ctrl_c_in_a_job_is_a_line_in_its_log_and_none_on_the_console(tmp_path):
    log = tmp_path / "job.log"
    code = f"from moclip.runtime import log_to; log_to({str(log)!r}); raise KeyboardInterrupt"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0 and out.stderr == ""
    assert "interrupted (Ctrl-C)" in log.read_text()


def test_pool_workers_leave_ctrl_c_to_the_jobs_process():
    import signal

    # As in a job started from a terminal (a shell's background job starts with it ignored).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with process_pool(2) as pool:
            assert list(pool.map(signal.getsignal, [signal.SIGINT] * 2)) == [signal.SIG_IGN] * 2
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # this process is untouched
    finally:
        signal.signal(signal.SIGINT, before)


def _pid_of(x: int) -> tuple[int, int]:
    return x, os.getpid()


@pytest.mark.parametrize("threads, jobs, pooled", [(1, 5, False), (4, 1, False), (2, 5, True), (8, 3, True)])
def test_videos_map_in_a_pool_only_where_more_than_one_process_can_work(threads, jobs, pooled):
    with map_videos(_pid_of, list(range(jobs)), threads) as results:
        out = list(results)
    assert [x for x, _ in out] == list(range(jobs))  # job order, pool or not
    pids = {pid for _, pid in out}
    assert (os.getpid() not in pids) is pooled and len(pids) <= min(threads, jobs)


def test_determinism_is_a_switch_both_ways(monkeypatch):
    """mvnet.deterministic on a GPU: cuDNN's deterministic algorithms and torch's
    deterministic mode (warnings), or cuDNN's benchmark search with both off; one process
    can switch back and forth (the GPU check times both)."""
    import torch

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    cudnn = torch.backends.cudnn
    before = (cudnn.benchmark, cudnn.deterministic, torch.are_deterministic_algorithms_enabled())
    try:
        runtime.set_determinism(True)
        assert (cudnn.benchmark, cudnn.deterministic, torch.are_deterministic_algorithms_enabled()) == (
            False,
            True,
            True,
        )
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        runtime.set_determinism(False)
        assert (cudnn.benchmark, cudnn.deterministic, torch.are_deterministic_algorithms_enabled()) == (
            True,
            False,
            False,
        )
    finally:
        cudnn.benchmark, cudnn.deterministic = before[:2]
        torch.use_deterministic_algorithms(before[2])


def test_torch_computes_with_the_configured_threads_even_past_the_cores(monkeypatch, caplog):
    """The count is part of the arithmetic: never capped at the cores a job has (a 1-CPU
    SLURM job must compute as a 2-core laptop does), only warned about."""
    import torch

    before = torch.get_num_threads()
    monkeypatch.setattr(runtime, "cpu_count", lambda: 1)
    try:
        with caplog.at_level(logging.WARNING):
            runtime.use_threads(3, "mvnet.cpu_threads")
        assert torch.get_num_threads() == 3
        assert "mvnet.cpu_threads: 3 threads on 1 cores: the same numbers, slower" in caplog.text
    finally:
        torch.set_num_threads(before)


def test_torch_threads_past_the_jobs_share_are_kept_and_warned(monkeypatch, caplog):
    """--cores 1 gives a job one core; torch still computes with the config's count (the
    arithmetic), and the job's log says why it may be slow."""
    import torch

    before = torch.get_num_threads()
    monkeypatch.setattr(runtime, "cpu_count", lambda: 2)
    try:
        with caplog.at_level(logging.WARNING):
            runtime.use_threads(2, "clip.cpu_threads", job_threads=2)
            assert caplog.text == ""
            runtime.use_threads(2, "clip.cpu_threads", job_threads=1)
        assert torch.get_num_threads() == 2
        assert "clip.cpu_threads: 2 threads in a job given 1 (--cores): the same numbers" in caplog.text
    finally:
        torch.set_num_threads(before)
