"""The status line: a live line only on a terminal, a logged line per --stats-every interval."""
from __future__ import annotations

import io

from scanner.progress import StatusLine, format_duration, status_text


def feed(line: StatusLine, seconds: float, tick: float = 0.01) -> None:
    """Progress events of a scan sending 100 probes a tick, as a session's ticker sends them."""
    for i in range(1, int(seconds / tick) + 1):
        line.update("raw", {"sent": 100 * i, "total": 10_000, "replies": 7, "open": 3}, i * tick)
    line.end()


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
        feed(StatusLine(stream=stream, live=True), 0.1)
    assert pipe.getvalue() == ""
    out = tty.getvalue()
    assert "\r\033[K" in out and "% done" in out and "found: 3" in out and out.endswith("\r\033[K")


def test_quiet_means_nothing_even_on_a_terminal():
    tty = Tty()
    feed(StatusLine(stream=tty, live=False), 0.05)
    assert tty.getvalue() == ""


def test_stats_every_logs_lines_without_a_terminal():
    pipe = io.StringIO()
    feed(StatusLine(stream=pipe, live=True, every=0.05), 0.33)
    lines = pipe.getvalue().splitlines()
    assert 3 <= len(lines) <= 8, lines
    assert all(line.startswith("scanner: [0:00:00] rate: ") and "replies: 7" in line for line in lines)
    assert "\r" not in pipe.getvalue()
