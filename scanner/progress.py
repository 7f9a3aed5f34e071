"""Progress while scanning, from the snapshots of a session's Progress events: a live status line
on stderr (rewritten in place, as masscan and zmap show it) when stderr is a terminal, and/or
with --stats-every a plain line per interval, for logs."""
from __future__ import annotations

import sys
from typing import Optional


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def format_rate(pps: float) -> str:
    if pps >= 1e6:
        return f"{pps / 1e6:.2f}-Mpps"
    if pps >= 1e3:
        return f"{pps / 1e3:.2f}-kpps"
    return f"{pps:.0f}-pps"


def status_text(snap: dict, pps: float, elapsed: float) -> str:
    """'rate: 9.98-kpps, 45.21% done, 0:00:03 remaining, sent: 4521, replies: 30, found: 3'"""
    sent, total = snap.get("sent", 0), snap.get("total", 0)
    done = min(1.0, sent / total) if total else 0.0
    if 0 < done < 1 and sent:
        eta = format_duration(elapsed / done - elapsed) + " remaining"
    else:
        eta = "waiting for replies" if done >= 1 else "-:--:-- remaining"
    return (f"rate: {format_rate(pps)}, {done * 100:.2f}% done, {eta}, sent: {sent}, "
            f"replies: {snap.get('replies', 0)}, found: {snap.get('open', 0)}")


def describe(stage: str, snap: dict, pps: float, elapsed: float) -> str:
    """The status text of a stage's snapshot: packet stages by status_text, -sV by its counts."""
    if stage == "service":
        return (f"service scan: {snap.get('done', 0)}/{snap.get('total', 0)} ports done, "
                f"{snap.get('found', 0)} identified, {format_duration(elapsed)}")
    text = status_text(snap, pps, elapsed)
    return text + (f", workers: {len(snap['workers'])}" if snap.get("workers") else "")


def worker_lines(snap: dict) -> list:
    """A cluster stage's workers, one line each: probes sent, rate while sending, results."""
    return [f"worker {addr}: {w['sent']} sent ({format_rate(w['rate'])}), {w['results']} results"
            for addr, w in sorted((snap.get("workers") or {}).items())]


class StatusLine:
    """Renders a session's Progress events (a snapshot every fraction of a second): live: the
    in-place line (only shown when the stream is a terminal); every: seconds between logged
    lines (None: no log). end() clears the live line at the end of a stage."""

    def __init__(self, stream=None, live: bool = True, every=None):
        self.stream = stream or sys.stderr
        self.live = live and _isatty(self.stream)
        self.every = every
        self._shown = False
        self._stage: Optional[str] = None

    @property
    def active(self) -> bool:
        return self.live or bool(self.every)

    def _start(self, stage: str) -> None:
        self._stage = stage
        self._last_sent, self._last_t, self._pps = 0, 0.0, 0.0
        self._next_log = self.every if self.every else None

    def update(self, stage: str, snap: dict, elapsed: float) -> None:
        if not self.active:
            return
        if stage != self._stage:
            self._start(stage)
        if elapsed > self._last_t:
            current = (snap.get("sent", 0) - self._last_sent) / (elapsed - self._last_t)
            self._pps = current if self._pps == 0 else 0.7 * self._pps + 0.3 * current
        self._last_sent, self._last_t = snap.get("sent", 0), elapsed
        text = describe(stage, snap, self._pps, elapsed)
        if self._next_log is not None and elapsed >= self._next_log:
            while self._next_log <= elapsed:
                self._next_log += self.every
            self._write(("\r\033[K" if self._shown else "") + f"scanner: [{format_duration(elapsed)}] {text}\n"
                        + "".join(f"scanner:   {line}\n" for line in worker_lines(snap)))
            self._shown = False
        if self.live:
            self._write("\r\033[K" + text)
            self._shown = True

    def end(self) -> None:
        self._stage = None
        if self._shown:
            self._write("\r\033[K")
            self._shown = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
