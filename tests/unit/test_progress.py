"""The status line: a live line only on a terminal, a logged line per --stats-every interval."""
from __future__ import annotations

import io
import time

from scanner.progress import Progress, format_duration, status_text


class FakeScan:
    def __init__(self):
        self.sent = 0

    def progress(self):
        self.sent += 100
        return {"sent": self.sent, "total": 10_000, "replies": 7, "open": 3}


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_status_text():
    text = status_text({"sent": 2500, "total": 10000, "replies": 20, "open": 4}, 12_345.0, 3.0)
    assert text == "rate: 12.35-kpps, 25.00% done, 0:00:09 remaining, sent: 2500, replies: 20, found: 4"
    assert "waiting for replies" in status_text({"sent": 10, "total": 10}, 0, 1)
    assert format_duration(3725) == "1:02:05"


def test_live_line_only_on_a_terminal():
    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        p = Progress(FakeScan(), stream=stream, live=True, tick=0.01).start()
        time.sleep(0.1)
        p.stop()
    assert pipe.getvalue() == ""
    out = tty.getvalue()
    assert "\r\033[K" in out and "% done" in out and "found: 3" in out and out.endswith("\r\033[K")


def test_quiet_means_nothing_even_on_a_terminal():
    tty = Tty()
    p = Progress(FakeScan(), stream=tty, live=False, tick=0.01).start()
    time.sleep(0.05)
    p.stop()
    assert tty.getvalue() == ""


def test_stats_every_logs_lines_without_a_terminal():
    pipe = io.StringIO()
    p = Progress(FakeScan(), stream=pipe, live=True, every=0.05).start()
    time.sleep(0.33)
    p.stop()
    lines = pipe.getvalue().splitlines()
    assert 3 <= len(lines) <= 8, lines
    assert all(line.startswith("scanner: [0:00:00] rate: ") and "replies: 7" in line for line in lines)
    assert "\r" not in pipe.getvalue()
