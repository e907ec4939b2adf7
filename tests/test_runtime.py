"""The job runtime: progress lines a long job writes to its log."""

from __future__ import annotations

import logging

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
