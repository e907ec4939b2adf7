"""The job runtime: progress lines a long job writes to its log."""

from __future__ import annotations

import logging
import subprocess
import sys

from moclip import runtime
from moclip.runtime import Progress


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


_HOLD = """
import fcntl, sys, time
f = open(sys.argv[1], "a")
fcntl.flock(f, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


def test_gpu_jobs_take_the_first_card_no_other_job_holds(tmp_path, monkeypatch):
    """Several GPU jobs at once (``--resources gpu=N``) spread over the cards: each takes
    the first card whose lock another process does not hold, and keeps it."""
    monkeypatch.setattr(runtime, "_CLAIMED", {})
    other = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(tmp_path / "moclip-gpu0.lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout.readline() == "held\n"
        assert runtime.claim_gpu(3, tmp_path) == 1  # card 0 is another job's
        assert runtime.claim_gpu(3, tmp_path) == 1  # asked again: the same card
    finally:
        other.kill()
        other.wait()
    held = dict(runtime._CLAIMED)  # card 1 stays held by this process
    probe = subprocess.run(
        [sys.executable, "-c", f"from moclip.runtime import claim_gpu; print(claim_gpu(3, {str(tmp_path)!r}))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "0" and held["index"] == 1  # card 0 freed when its holder died


def test_every_card_held_means_sharing_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "_CLAIMED", {})
    assert runtime.claim_gpu(1, tmp_path) == 0
    probe = subprocess.run(
        [sys.executable, "-c", f"from moclip.runtime import claim_gpu; print(claim_gpu(1, {str(tmp_path)!r}))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "0" and "all 1 GPUs are held" in probe.stderr
