"""The post-scan stage of a session: -sV over the open ports, then -O, their results handed to the
outputs, the store and the session's events."""
from __future__ import annotations

import time
from typing import Optional

from .engine import DEFAULT_INTENSITY, ServiceScanner, service_targets
from .probedb import load_db


class RowCollector:
    """A sink consumer keeping what -sV and -O need from the scan's rows: open ports (with the
    SYN-ACK fingerprint fields) and one RST per host."""
    grouped = False
    error = None

    def __init__(self):
        self.batches = []
        self._rst_hosts = set()

    def write(self, rows) -> None:
        from ..states import REASONS, STATES
        keep = rows["state"] == STATES["open"]
        rst = (rows["reason"] == REASONS["reset"]) & (rows["proto"] == 6)
        if rst.any():
            idx = rst.nonzero()[0]
            keys = (rows["ip"][idx].tolist(), [bytes(x) for x in rows["ip6"][idx]])
            for i, a, b in zip(idx.tolist(), *keys):
                if (a, b) not in self._rst_hosts:
                    self._rst_hosts.add((a, b))
                    keep[i] = True
        if keep.any():
            self.batches.append(rows[keep].copy())

    def close(self, summary=None) -> None:
        pass

    def rows(self):
        import numpy as np
        from ..states import RESULT_DTYPE
        return np.concatenate(self.batches) if self.batches else np.zeros(0, dtype=RESULT_DTYPE)


class PostScan:
    """-sV and/or -O after the port scan: run() hands the results to the outputs and the store."""

    def __init__(self, versions: bool, os_detect: bool, intensity: int = DEFAULT_INTENSITY,
                 db_path: Optional[str] = None, concurrency: int = 128):
        self.versions, self.os_detect = versions, os_detect
        self.intensity, self.concurrency = intensity, concurrency
        self.db = load_db(db_path) if versions else None      # a bad --service-db fails before the scan
        self.collector = RowCollector()
        self.os_limit = self.os_guess_more = False      # --osscan-limit, --osscan-guess
        self.scripts: Optional[frozenset] = None         # -sC/--script: scripts.select(); None: plain -sV's
        self.script_args: dict = {}
        self.script_named: frozenset = frozenset()      # scripts.named()
        self.verbose = 0
        self.services: dict = {}
        self.os_guesses: dict = {}
        self.elapsed = 0.0
        self.interrupted = False

    def run(self, session, outputs, recorder=None) -> None:
        """-sV, then -O, over the collected rows; the results go to the outputs and the store.
        session: the Session (its events, and stop() which ends the service scan early)."""
        from .. import events as ev
        from ..session import _Ticker
        t_start = time.monotonic()
        rows = self.collector.rows()
        if self.versions:
            targets = service_targets(rows)
            scanner = ServiceScanner(self.db, self.intensity, self.concurrency, scripts=self.scripts,
                                     script_args=self.script_args, verbose=self.verbose, named=self.script_named)
            scanner.on_warning = lambda text: session.emit(ev.Warning(text))
            session._current = scanner
            if session.stopping:
                scanner.stop()
            t0 = time.monotonic()
            session.emit(ev.StageStarted("service", len(targets), len(targets)))
            ticker = _Ticker(session, "service", scanner.progress)
            try:
                self.services = scanner.scan(targets)
            finally:
                ticker.stop()
                session._current = None
            if scanner.stopped:
                self.interrupted = True
                session.emit(ev.Note("service scan interrupted: the ports done so far are reported"))
            found = sum(1 for s in self.services.values() if not s.guess)
            session.emit(ev.Note(f"service scan: {found} of {len(targets)} open ports identified in "
                                 f"{time.monotonic() - t0:.2f}s ({self.concurrency} at once)"))
        if self.os_detect:
            from ..osguess import guess_hosts
            self.os_guesses = guess_hosts(rows, self.services, limit=self.os_limit, aggressive=self.os_guess_more)
            if not self.os_guesses:
                session.emit(ev.Note("OS detection: no host gave a SYN-ACK to fingerprint (needs an open "
                                     "TCP port and the SYN scan, -sS)"))
        outputs.set_details(self.services if self.versions else None, self.os_guesses if self.os_detect else None)
        if recorder is not None:
            recorder.set_details(self.services, self.os_guesses)
        session.emit(ev.Details(self.services, self.os_guesses))
        self.elapsed = time.monotonic() - t_start
