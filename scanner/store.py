"""The result store: every scan recorded in SQLite (configuration, start and end, counters and all
results), written batch by batch as results arrive so that they survive a failed output or a
crash. Read back by `scanner history`, `scanner show ID` and `scanner diff A B`."""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import EnvironmentFault, InputError
from .ports import service_name
from .states import PROTO_NAMES, PROTO_NUMBERS, REASON_NAMES, REASONS, RESULT_DTYPE, STATE_NAMES, STATES, addresses, host_keys

SCHEMA = """
CREATE TABLE IF NOT EXISTS scans (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    started     REAL NOT NULL,          -- epoch seconds
    ended       REAL,                   -- NULL while running (or if it crashed)
    command     TEXT NOT NULL,
    config      TEXT NOT NULL,          -- JSON
    counters    TEXT,                   -- JSON: the scan summary
    interrupted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS results (
    scan_id INTEGER NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
    ip      TEXT NOT NULL,              -- the address as text (IPv4 or IPv6)
    port    INTEGER NOT NULL,           -- 0 for host discovery replies (proto icmp)
    proto   TEXT NOT NULL,              -- tcp, udp, icmp
    state   TEXT NOT NULL,              -- nmap's state names: open, closed, filtered...
    reason  TEXT NOT NULL,              -- nmap's reason names: syn-ack, reset, no-response...
    ttl     INTEGER
);
CREATE INDEX IF NOT EXISTS results_by_scan ON results(scan_id, ip, port);
CREATE TABLE IF NOT EXISTS details (   -- -sV services and -O guesses
    scan_id INTEGER NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
    addr    TEXT NOT NULL,
    proto   TEXT,                   -- NULL for an OS guess (host-wide)
    port    INTEGER,
    kind    TEXT NOT NULL,          -- service or os
    data    TEXT NOT NULL           -- JSON: ServiceInfo.to_dict() / OsGuess.to_dict()
);
"""

_STATE_LUT = np.array([STATE_NAMES.get(i, "unknown") for i in range(256)], dtype=object)
_REASON_LUT = np.array([REASON_NAMES.get(i, "unknown") for i in range(256)], dtype=object)


def default_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "scanner" / "scans.db"


@dataclass
class ScanRecord:
    id: int
    started: float
    ended: Optional[float]
    command: str
    config: dict
    counters: dict
    interrupted: bool

    @property
    def elapsed(self) -> float:
        if self.counters.get("elapsed") is not None:
            return float(self.counters["elapsed"])
        return (self.ended or self.started) - self.started


def _disk_full(path: Path) -> bool:
    try:
        st = os.statvfs(path.parent)
        return st.f_blocks > 0 and st.f_bavail == 0        # (pseudo file systems have no blocks)
    except OSError:
        return False


class Store:
    def __init__(self, path=None, create: bool = True):
        self.path = Path(path) if path else default_path()
        if not create and not self.path.exists():
            raise InputError(f"no scan database at '{self.path}' (scans are recorded there by `scanner` scans)")
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            # The (scan_id, ip, port) index takes results in random order: a 64 MiB page cache
            # keeps its pages in memory for dense sweeps (~1.4x the rows/s of the 2 MiB default).
            self.db.execute("PRAGMA cache_size=-65536")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as e:
            # A path that cannot hold a database is the user's to fix (exit 2); a full or failing
            # disk is the machine's (exit 1).
            full = isinstance(e, sqlite3.Error) and "full" in str(e) or _disk_full(self.path)
            raise (EnvironmentFault if full else InputError)(
                f"cannot use the scan database '{self.path}': {getattr(e, 'strerror', None) or e}") from None
        self.lock = threading.Lock()

    def close(self) -> None:
        self.db.close()

    # -------------------------------------------------------------- writing

    def begin(self, info, config: dict) -> int:
        with self.lock, self.db:
            cur = self.db.execute("INSERT INTO scans (started, command, config) VALUES (?, ?, ?)",
                                  (info.start, info.command, json.dumps(config)))
        return int(cur.lastrowid or 0)

    def add(self, scan_id: int, rows: np.ndarray) -> None:
        if not len(rows):
            return
        data = zip([scan_id] * len(rows), addresses(rows), rows["port"].tolist(),
                   [PROTO_NAMES.get(p, str(p)) for p in rows["proto"].tolist()],
                   _STATE_LUT[rows["state"]].tolist(), _REASON_LUT[rows["reason"]].tolist(),
                   [t or None for t in rows["ttl"].tolist()])
        with self.lock, self.db:
            self.db.executemany("INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?)", data)

    def finish(self, scan_id: int, summary, ended: Optional[float] = None) -> None:
        counters = (dataclasses.asdict(summary) if dataclasses.is_dataclass(summary)   # type: ignore[arg-type]
                    else dict(summary))
        with self.lock, self.db:
            self.db.execute("UPDATE scans SET ended=?, counters=?, interrupted=? WHERE id=?",
                            (ended or time.time(), json.dumps(counters), int(bool(counters.get("interrupted"))),
                             scan_id))

    def add_details(self, scan_id: int, services: dict, os_guesses: dict) -> None:
        """-sV's {(addr, proto, port): ServiceInfo} and -O's {addr: OsGuess}."""
        data = [(scan_id, a, proto, port, "service", json.dumps(s.to_dict()))
                for (a, proto, port), s in (services or {}).items()]
        data += [(scan_id, a, None, None, "os", json.dumps(g.to_dict())) for a, g in (os_guesses or {}).items()]
        with self.lock, self.db:
            self.db.executemany("INSERT INTO details VALUES (?, ?, ?, ?, ?, ?)", data)

    def add_traces(self, scan_id: int, traces: dict) -> None:
        """--traceroute's {addr: Trace}."""
        data = [(scan_id, a, None, None, "trace", json.dumps(t.to_dict())) for a, t in traces.items()]
        with self.lock, self.db:
            self.db.executemany("INSERT INTO details VALUES (?, ?, ?, ?, ?, ?)", data)

    def traces(self, scan_id: int) -> dict:
        """{addr: Trace} recorded for a scan (--traceroute)."""
        from .traceroute import Trace
        return {addr: Trace.from_dict(json.loads(data)) for addr, data in self.db.execute(
            "SELECT addr, data FROM details WHERE scan_id=? AND kind='trace'", (scan_id,))}

    def details(self, scan_id: int) -> tuple:
        """(services, os_guesses) recorded for a scan, as add_details() took them."""
        from .osguess import OsGuess
        from .service import ServiceInfo
        services, guesses = {}, {}
        for addr, proto, port, kind, data in self.db.execute(
                "SELECT addr, proto, port, kind, data FROM details WHERE scan_id=?", (scan_id,)):
            if kind == "service":
                services[(addr, proto, port)] = ServiceInfo.from_dict(json.loads(data))
            elif kind == "os":
                guesses[addr] = OsGuess.from_dict(json.loads(data))
        return services, guesses

    def discard(self, scan_id: int) -> None:
        with self.lock, self.db:
            self.db.execute("DELETE FROM details WHERE scan_id=?", (scan_id,))
            self.db.execute("DELETE FROM results WHERE scan_id=?", (scan_id,))
            self.db.execute("DELETE FROM scans WHERE id=?", (scan_id,))

    # -------------------------------------------------------------- reading

    def scans(self, limit: Optional[int] = None) -> list:
        q = "SELECT id, started, ended, command, config, counters, interrupted FROM scans ORDER BY id DESC"
        rows = self.db.execute(q + (" LIMIT ?" if limit else ""), (limit,) if limit else ()).fetchall()
        return [self._record(r) for r in rows]

    def scan(self, ref) -> ScanRecord:
        """A scan by id; 'last' (or -1) for the latest, -2 for the one before..."""
        text = str(ref).strip()
        try:
            n = -1 if text == "last" else int(text)
            if not -(1 << 62) < n < 1 << 62:        # SQLite's integers are 64-bit
                raise ValueError
        except ValueError:
            raise InputError(f"bad scan id '{ref}': expected a number from `scanner history`, or 'last'") from None
        if n < 0:
            r = self.db.execute("SELECT id, started, ended, command, config, counters, interrupted FROM scans "
                                "ORDER BY id DESC LIMIT 1 OFFSET ?", (-n - 1,)).fetchone()
        else:
            r = self.db.execute("SELECT id, started, ended, command, config, counters, interrupted FROM scans "
                                "WHERE id=?", (n,)).fetchone()
        if r is None:
            raise InputError(f"no scan {ref} in '{self.path}' (see scanner history)")
        return self._record(r)

    @staticmethod
    def _record(r) -> ScanRecord:
        return ScanRecord(r[0], r[1], r[2], r[3], json.loads(r[4] or "{}"), json.loads(r[5] or "{}"), bool(r[6]))

    def rows(self, scan_id: int) -> np.ndarray:
        """The results of a scan as RESULT_DTYPE rows, sorted by address, protocol and port."""
        data = self.db.execute("SELECT ip, port, proto, state, reason, ttl FROM results WHERE scan_id=?",
                               (scan_id,)).fetchall()
        return _as_rows(data)

    def row_batches(self, scan_id: int, size: int = 1 << 16):
        """The results of a scan a batch at a time (memory: one batch, whatever the scan's size)."""
        cur = self.db.execute("SELECT ip, port, proto, state, reason, ttl FROM results WHERE scan_id=?", (scan_id,))
        while True:
            data = cur.fetchmany(size)
            if not data:
                return
            yield _as_rows(data)

    def host_rows(self, scan_id: int):
        """The results of a scan host by host, in address order (memory: the list of addresses
        and one host's rows)."""
        hosts = [a for (a,) in self.db.execute("SELECT DISTINCT ip FROM results WHERE scan_id=?", (scan_id,))]
        for ip in sorted(hosts, key=_address_order):
            yield _as_rows(self.db.execute("SELECT ip, port, proto, state, reason, ttl FROM results "
                                           "WHERE scan_id=? AND ip=?", (scan_id, ip)).fetchall())

    def host_counts(self, scan_id: int) -> tuple:
        """(hosts that answered, open ports)."""
        up = self.db.execute("SELECT COUNT(DISTINCT ip) FROM results WHERE scan_id=? AND reason!='no-response'",
                             (scan_id,)).fetchone()[0]
        n_open = self.db.execute("SELECT COUNT(*) FROM results WHERE scan_id=? AND state='open'",
                                 (scan_id,)).fetchone()[0]
        return up, n_open


def _as_rows(data: list) -> np.ndarray:
    """SELECT ip, port, proto, state, reason, ttl rows as RESULT_DTYPE, sorted by address, protocol, port."""
    rows = np.zeros(len(data), dtype=RESULT_DTYPE)
    if data:
        ip, port, proto, state, reason, ttl = zip(*data)
        rows["index"] = np.arange(len(data))
        addrs = [ipaddress.ip_address(a) for a in ip]
        rows["ip"] = [int(a) if a.version == 4 else 0 for a in addrs]
        rows["ip6"] = [list(a.packed) if a.version == 6 else [0] * 16 for a in addrs]
        rows["port"] = port
        rows["proto"] = [PROTO_NUMBERS.get(p, 6) for p in proto]
        rows["state"] = [STATES.get(s, 0) for s in state]
        rows["reason"] = [REASONS.get(r, 0) for r in reason]
        rows["ttl"] = [t or 0 for t in ttl]
        rows = rows[np.lexsort((rows["port"], rows["proto"], host_keys(rows)))]
    return rows


class Recorder:
    """The store as one more output of a scan: write(rows) per batch, close(summary) at the end.
    A store failure (e.g. disk full) stops recording and is reported, never raised mid-scan."""
    error = None
    grouped = False

    def __init__(self, store: Store, info, config: dict, unanswered: bool = True,
                 scan_id: Optional[int] = None):
        """scan_id: go on recording an earlier (interrupted) scan rather than begin a new one."""
        self.store = store
        self.unanswered = unanswered     # False: probes without a reply are only counted
        try:
            self.scan_id = scan_id if scan_id is not None else store.begin(info, config)
        except sqlite3.Error as e:
            raise EnvironmentFault(f"cannot record the scan in '{store.path}': {e}") from None

    def write(self, rows: np.ndarray) -> None:
        if self.error:
            return
        if not self.unanswered:
            rows = rows[rows["reason"] != REASONS["no-response"]]
        try:
            self.store.add(self.scan_id, rows)
        except sqlite3.Error as e:
            self.error = f"recording scan {self.scan_id} in '{self.store.path}' failed: {e}"

    def set_details(self, services: dict, os_guesses: dict) -> None:
        """-sV / -O results, recorded with the scan (scanner show prints them)."""
        if self.error:
            return
        try:
            self.store.add_details(self.scan_id, services, os_guesses)
        except sqlite3.Error as e:
            self.error = f"recording scan {self.scan_id} in '{self.store.path}' failed: {e}"

    def set_traces(self, traces: dict) -> None:
        """--traceroute's hops, recorded with the scan (scanner show prints them)."""
        if self.error or not traces:
            return
        try:
            self.store.add_traces(self.scan_id, traces)
        except sqlite3.Error as e:
            self.error = f"recording scan {self.scan_id} in '{self.store.path}' failed: {e}"

    def close(self, summary) -> None:
        if self.error:          # rows are missing: never recorded as a scan that finished normally
            summary = dataclasses.replace(summary, interrupted=True, error=summary.error or self.error)
        try:
            self.store.finish(self.scan_id, summary)
        except sqlite3.Error as e:
            self.error = self.error or f"recording scan {self.scan_id} in '{self.store.path}' failed: {e}"


# ---------------------------------------------------------------- show, history, diff

def scan_info(record: ScanRecord):
    from .output import ScanInfo
    c = record.config
    return ScanInfo(start=record.started, command=record.command, scan_type=c.get("scan_type", "syn"),
                    protocol=c.get("protocol", "tcp"), ports=tuple(expand_ranges(c.get("ports", ""))),
                    n_hosts=int(c.get("n_hosts", 0)))


def summary_of(record: ScanRecord):
    from .engine import ScanSummary
    fields = {f.name for f in dataclasses.fields(ScanSummary)}
    s = ScanSummary(**{k: v for k, v in record.counters.items() if k in fields})
    if not record.counters:          # never finished (crashed): elapsed from what was recorded
        s.elapsed, s.interrupted = record.elapsed, True
    return s


def expand_ranges(text: str) -> list:
    out: list = []
    for part in filter(None, str(text).split(",")):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def _address_order(text: str) -> tuple:
    """IPv4 before IPv6, each in numeric order (addresses of both families cannot be compared)."""
    a = ipaddress.ip_address(text)
    return a.version, int(a)


def history_lines(store: Store, limit: Optional[int] = None) -> list:
    lines = [f"{'ID':>4}  {'STARTED':<19}  {'TIME':>8}  {'UP':>5}  {'OPEN':>6}  COMMAND"]
    for r in store.scans(limit):
        up, n_open = store.host_counts(r.id)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started))
        note = (" (failed)" if (r.counters or {}).get("error") else " (interrupted)" if r.interrupted
                else " (unfinished)" if r.ended is None else "")
        lines.append(f"{r.id:>4}  {when:<19}  {r.elapsed:>7.1f}s  {up:>5}  {n_open:>6}  {r.command}{note}")
    return lines


@dataclass
class ScanDiff:
    new_hosts: list        # addresses up in B only
    gone_hosts: list       # addresses up in A only
    new_ports: list        # (ip, port, proto, state) in B only
    gone_ports: list       # (ip, port, proto, state) in A only
    changed: list          # (ip, port, proto, state in A, state in B)

    @property
    def empty(self) -> bool:
        return not (self.new_hosts or self.gone_hosts or self.new_ports or self.gone_ports or self.changed)


def _ports(rows: np.ndarray) -> tuple:
    """({(ip, port, proto): state} of ports that answered or are open, {hosts up})."""
    answered = rows[rows["reason"] != REASONS["no-response"]]
    ports = {(ip, port, PROTO_NAMES.get(pr, "tcp")): STATE_NAMES[st] for ip, port, pr, st in zip(
        addresses(rows), rows["port"].tolist(), rows["proto"].tolist(), rows["state"].tolist())
        if st != STATES["up"]}
    return ports, set(addresses(answered))


def diff_rows(a: np.ndarray, b: np.ndarray) -> ScanDiff:
    """What changed from scan A to scan B, like nmap's ndiff: hosts that came up or went away,
    ports that appeared or disappeared, ports whose state changed. A port counts as present when
    it is reported in that scan's results."""
    pa, ha = _ports(a)
    pb, hb = _ports(b)
    by_addr = lambda k: (ipaddress.ip_address(k[0]),) + tuple(k[1:])  # noqa: E731
    by_host = lambda h: ipaddress.ip_address(h)  # noqa: E731
    return ScanDiff(
        new_hosts=sorted(hb - ha, key=by_host), gone_hosts=sorted(ha - hb, key=by_host),
        new_ports=[k + (pb[k],) for k in sorted(pb.keys() - pa.keys(), key=by_addr)],
        gone_ports=[k + (pa[k],) for k in sorted(pa.keys() - pb.keys(), key=by_addr)],
        changed=[k + (pa[k], pb[k]) for k in sorted(pa.keys() & pb.keys(), key=by_addr) if pa[k] != pb[k]])


def diff_lines(ra: ScanRecord, rb: ScanRecord, d: ScanDiff) -> list:
    """ndiff-like text: '-' for what A had, '+' for what B has, per host."""
    fmt = lambda r: f"scan {r.id}, {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r.started))}: {r.command}"  # noqa: E731
    out = [f"-{fmt(ra)}", f"+{fmt(rb)}"]
    if d.empty:
        out.append("No differences.")
        return out
    per_host: dict = {}
    for ip, port, proto, state in d.gone_ports:
        per_host.setdefault(ip, []).append((port, f"-{port}/{proto} {state} {service_name(port)}"))
    for ip, port, proto, state in d.new_ports:
        per_host.setdefault(ip, []).append((port, f"+{port}/{proto} {state} {service_name(port)}"))
    for ip, port, proto, sa, sb in d.changed:
        per_host.setdefault(ip, []).append(
            (port, f"-{port}/{proto} {sa} {service_name(port)}\n+{port}/{proto} {sb} {service_name(port)}"))
    hosts = sorted(set(per_host) | set(d.new_hosts) | set(d.gone_hosts), key=_address_order)
    for host in hosts:
        out.append("")
        if host in d.new_hosts:
            out.append(f"+{host}: host up (new)")
        elif host in d.gone_hosts:
            out.append(f"-{host}: host up (gone)")
        else:
            out.append(f" {host}:")
        out += [line for _, line in sorted(per_host.get(host, []), key=lambda x: x[0])]
    out.append("")
    out.append(f"{len(d.new_hosts)} new hosts, {len(d.gone_hosts)} gone; {len(d.new_ports)} new ports, "
               f"{len(d.gone_ports)} gone, {len(d.changed)} changed state")
    return out
