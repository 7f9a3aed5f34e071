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
        self._rst_hosts: dict = {}      # (ip, ip6, proto) -> the lowest closed port kept

    def write(self, rows) -> None:
        from ..states import REASONS, STATES
        keep = rows["state"] == STATES["open"]
        rst = (rows["reason"] == REASONS["reset"]) & (rows["proto"] == 6)
        # -O with nmap's database also sends its U1 probe to a closed UDP port when there is one
        closed_udp = (rows["state"] == STATES["closed"]) & (rows["proto"] == 17)
        first = rst | closed_udp
        if first.any():
            idx = first.nonzero()[0]
            keys = (rows["ip"][idx].tolist(), [bytes(x) for x in rows["ip6"][idx]], rows["proto"][idx].tolist(),
                    rows["port"][idx].tolist())
            for i, a, b, p, port in zip(idx.tolist(), *keys):
                low = self._rst_hosts.get((a, b, p))
                if low is None or port < low:          # nmap's OS scan takes the lowest closed port
                    self._rst_hosts[(a, b, p)] = port
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
                 db_path: Optional[str] = None, concurrency: int = 128, os_db: Optional[str] = None):
        self.versions, self.os_detect = versions, os_detect
        self.intensity, self.concurrency = intensity, concurrency
        self.db = load_db(db_path) if versions else None      # a bad --service-db fails before the scan
        self.os_db_path: Optional[str] = None    # -O: nmap's database (--os-db, or Debian's nmap-os-db)
        if os_detect:
            from ..osdb import check_db, find_db
            self.os_db_path = find_db(os_db)
            if self.os_db_path:
                check_db(self.os_db_path)         # a bad --os-db fails before the scan (parsing it waits for -O)
        self.udp_scanned = False      # -sU ran (nmap's U1 then needs no closed UDP port known)
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
            if self.os_db_path is not None:
                self.os_guesses = self._nmap_os(session, rows)
            # the built-in guess: without nmap's database, and for the hosts it cannot do (IPv6, no raw socket)
            for addr, g in guess_hosts(rows, self.services, limit=self.os_limit,
                                       aggressive=self.os_guess_more).items():
                self.os_guesses.setdefault(addr, g)
            if not self.os_guesses:
                session.emit(ev.Note("OS detection: no host gave a SYN-ACK to fingerprint (needs an open "
                                     "TCP port and the SYN scan, -sS)"))
        outputs.set_details(self.services if self.versions else None, self.os_guesses if self.os_detect else None)
        if recorder is not None:
            recorder.set_details(self.services, self.os_guesses)
        session.emit(ev.Details(self.services, self.os_guesses))
        self.elapsed = time.monotonic() - t_start

    def _nmap_os(self, session, rows) -> dict:
        """-O with nmap's database: nmap's probes to every IPv4 host at once, nmap's matching."""
        from .. import events as ev
        from ..osdb import load_db as load_os_db
        from ..osprobe import detect, ports_of
        from ..privileges import can_raw_scan
        if self.os_db_path is None or not can_raw_scan() or session.stopping or not ports_of(rows):
            return {}       # IPv6 hosts keep the built-in guess: nmap uses a trained classifier there
        t0 = time.monotonic()
        db = load_os_db(self.os_db_path)

        def started(scan) -> None:
            session._current = scan
        try:
            wrapped = frozenset((a, port) for (a, proto, port), info in self.services.items()
                                if proto == "tcp" and getattr(info, "name", "") == "tcpwrapped")
            found = detect(rows, db, limit=self.os_limit, aggressive=self.os_guess_more,
                           udp_scanned=self.udp_scanned, on_scan=started, wrapped=wrapped)
        finally:
            session._current = None
        session.emit(ev.Note(f"OS detection (nmap-os-db, {len(db.prints)} fingerprints): {len(found)} "
                             f"hosts in {time.monotonic() - t0:.2f}s"))
        return found
