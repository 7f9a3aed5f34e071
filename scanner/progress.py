"""Progress while scanning, from scan.progress() snapshots taken by a background thread: a live
status line on stderr (rewritten in place, as masscan and zmap show it) when stderr is a
terminal, and/or with --stats-every a plain line per interval, for logs."""
from __future__ import annotations

import sys
import threading
import time


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


class Progress:
    """start() before the scan, stop() after. live: the in-place status line (only shown when
    the stream is a terminal); every: seconds between logged lines (None: no log)."""

    def __init__(self, scan, stream=None, live: bool = True, every=None, tick: float = 0.25, describe=None):
        """scan: anything with progress() -> {"sent", "total", "replies", "open"}; describe, if
        given, replaces the packet-scan status with describe(elapsed seconds) -> text."""
        self.scan = scan
        self.describe = describe
        self.stream = stream or sys.stderr
        self.live = live and _isatty(self.stream)
        self.every = every
        self.tick = tick
        self._stop = threading.Event()
        self._thread = None
        self._shown = False

    @property
    def active(self) -> bool:
        return self.live or bool(self.every)

    def start(self) -> "Progress":
        if self.active:
            self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self._shown:
            self._write("\r\033[K")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def _run(self) -> None:
        began = last_t = time.monotonic()
        last_sent, pps = 0, 0.0
        next_log = began + self.every if self.every else None
        tick = min(self.tick, self.every) if self.every else self.tick
        while not self._stop.wait(tick):
            now = time.monotonic()
            if self.describe is not None:
                text = self.describe(now - began)
            else:
                snap = self.scan.progress()
                if now > last_t:
                    current = (snap.get("sent", 0) - last_sent) / (now - last_t)
                    pps = current if pps == 0 else 0.7 * pps + 0.3 * current
                last_sent, last_t = snap.get("sent", 0), now
                text = status_text(snap, pps, now - began)
            if next_log is not None and now >= next_log:
                while next_log <= now:
                    next_log += self.every
                stamp = format_duration(now - began)
                self._write(("\r\033[K" if self._shown else "") + f"scanner: [{stamp}] {text}\n")
                self._shown = False
            if self.live:
                self._write("\r\033[K" + text)
                self._shown = True


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
