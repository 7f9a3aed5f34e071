"""The TCP connect scan (-sT): a full connection to each (address, port) through the kernel's own
sockets, many at once, so it needs no raw-socket privileges. The kernel does the packet work; the
compiled ConnectLoop (ext/connect.pyx) opens, polls and closes the sockets; Python decides."""
from __future__ import annotations

import errno
import resource
import socket
import threading
import time
from collections import deque

import numpy as np

from .engine import StageCheckpoint, ScanSummary, Tracker, emit_rows
from .errors import EnvironmentFault
from .timing import Window
from .states import REASONS, STATES

# Reply-less outcomes as nmap reports them for -sT.
ERRNO_RESULT = {
    errno.ECONNREFUSED: ("closed", "conn-refused"),
    errno.EHOSTUNREACH: ("filtered", "host-unreach"),
    errno.ENETUNREACH: ("filtered", "net-unreach"),
    errno.EACCES: ("filtered", "admin-prohibited"),
    errno.EPERM: ("filtered", "admin-prohibited"),
}
OPEN = ("open", "syn-ack")
TIMEOUT = ("filtered", "no-response")


def default_concurrency() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, min(4096, soft - 64))


class ConnectScan:
    # Above a second: an IPv6 connect learns of an ICMPv6 reject only when its SYN is resent
    # (about 1 s after connect() on Linux), and nmap then reports the reject, not a timeout.
    def __init__(self, config, concurrency: int | None = None, timeout: float = 1.5, resume=None):
        self.config = config
        self.space = config.space
        self.resume = resume
        # Connections that reached a verdict; a resumed scan skips them.
        self.tracker = Tracker(config, resume.bitmap if resume else None)
        self.concurrency = concurrency or default_concurrency()
        t = config.timing
        # The connect timeout follows the round trips measured (as nmap's does), within the RTT
        # timeout options; --max-parallelism (the template's, for -T0..-T2) caps the connections
        # open at once. IPv6 keeps `timeout` as a floor (the ICMPv6 reject case, see README).
        self.rtt = self.window = Window(t) if t is not None else None
        self.floor = timeout if self.space.family == 6 or t is None else 0.0
        self.timeout = timeout
        if t is not None:
            self.concurrency = min(self.concurrency, t.max_window)
        self.max_successful_try = 0     # nmap's rule: resend more than once only if resends get answers
        self.timed_out = False
        self.summary = ScanSummary()
        self._stop = threading.Event()
        self._rows: list = []                 # (index, state, reason) not yet handed on
        self._started = 0

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def checkpoint(self):
        """Where this scan stands: what reached a verdict is skipped when resumed."""
        return StageCheckpoint(0, self.config.positions()[0], self.tracker.bitmap, b"")

    def progress(self) -> dict:
        """Same snapshot as Scan.progress()."""
        return {"sent": self._started, "total": self.summary.probes,
                "replies": self.summary.replies, "open": self.summary.states.get("open", 0)}

    def _targets(self):
        """Index arrays in the scan's permuted order, this shard's slice only, what reached a
        verdict before (a resumed scan) left out."""
        self.summary.probes = self.config.positions()[2]
        for indices in self.config.indices(4096):
            yield indices[~self.tracker.answered(indices)]

    def _sockaddrs(self, indices: np.ndarray) -> np.ndarray:
        """sockaddr_in / sockaddr_in6 of each index, as the kernel lays them out (28 bytes)."""
        rows = self.space.rows(indices)
        out = np.zeros((len(indices), 28), dtype=np.uint8)
        out[:, 0] = socket.AF_INET6 if self.space.family == 6 else socket.AF_INET    # little-endian family
        out[:, 2:4] = rows["port"].astype(">u2").view(np.uint8).reshape(-1, 2)
        if self.space.family == 6:
            out[:, 8:24] = rows["ip6"]
        else:
            out[:, 4:8] = rows["ip"].astype(">u4").view(np.uint8).reshape(-1, 4)
        return out

    def run(self, sink) -> ScanSummary:
        from ._ext.connect import TIMED_OUT, ConnectLoop
        began = time.monotonic()
        loop = ConnectLoop(self.concurrency)
        ipv6 = self.space.family == 6
        todo = self._targets()
        retry: deque = deque()         # (indices, tries) to connect again
        current = (np.zeros(0, np.uint64), 0)
        rate = self.config.rate
        started = 0
        last_flush = time.monotonic()
        exhausted = False
        t = self.config.timing
        deadline = began + t.host_timeout if t is not None and t.host_timeout else None
        errno_codes = {e: (STATES[st], REASONS[why]) for e, (st, why) in ERRNO_RESULT.items()}
        while not self._stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self.timed_out = True
                break
            allowed = loop.room
            if rate > 0:
                allowed = min(allowed, int((now - began) * rate) + 1 - started)
            while allowed > 0:
                if not len(current[0]):
                    if retry:
                        current = retry.popleft()
                    elif not exhausted:
                        nxt = next(todo, None)
                        if nxt is None:
                            exhausted = True
                            continue
                        current = (nxt, 0)
                    else:
                        break
                    continue
                indices, tries = current
                n = min(allowed, len(indices))
                tags = (indices[:n].astype(np.int64) << 8) | tries
                try:
                    used = loop.start(self._sockaddrs(indices[:n]), tags, ipv6)
                except OSError as e:
                    raise EnvironmentFault(f"the connect scan cannot open sockets: {e.strerror}") from None
                current = (indices[used:], tries)
                started += used
                allowed -= used
                if used < n:
                    break
            self._started = started
            # Wait for the kernel only with connections in flight (many verdicts are in at once).
            busy = loop.in_flight and (loop.room == 0 or (exhausted and not retry and not len(current[0])))
            tags, errs, rtts = loop.poll(0.005 if busy else 0.0, self.connect_timeout())
            if len(tags):
                self._verdicts(tags, errs, rtts, retry, errno_codes, TIMED_OUT)
            if now - last_flush > 0.1:
                self._flush(sink)
                last_flush = now
            if exhausted and not retry and not len(current[0]) and not loop.in_flight:
                break
        self.summary.interrupted = self._stop.is_set()
        del loop                        # closes what is still in flight
        self._flush(sink)
        self.summary.sent = started
        self.summary.elapsed = self.summary.sending = time.monotonic() - began
        return self.summary

    def _verdicts(self, tags, errs, rtts, retry, errno_codes, timed_out_code) -> None:
        """A batch of verdicts: RTT samples of first tries, resends of the timed out, rows."""
        indices, tries = (tags >> 8).astype(np.uint64), (tags & 255).astype(np.int64)
        timed = errs == timed_out_code
        if self.rtt is not None and (~timed).any():
            self.rtt.replies(time.monotonic(), rtts[~timed & (tries == 0)], 0, 0, 0)
        if (~timed).any():
            self.max_successful_try = max(self.max_successful_try, int(tries[~timed].max()))
        again = timed & (tries < min(self.config.retries, self.max_successful_try + 1))
        for n in sorted(set(tries[again].tolist())):     # (np.unique would import numpy.ma: ~15 ms)
            retry.append((indices[again & (tries == n)], n + 1))
        final = ~again
        if not final.any():
            return
        errs, indices = errs[final], indices[final]
        state = np.full(len(errs), STATES[TIMEOUT[0]], dtype=np.uint8)
        reason = np.full(len(errs), REASONS[TIMEOUT[1]], dtype=np.uint8)
        state[errs == 0], reason[errs == 0] = STATES[OPEN[0]], REASONS[OPEN[1]]
        for code, (st, why) in errno_codes.items():
            mine = errs == code
            state[mine], reason[mine] = st, why
        self._rows.append((indices, state, reason))

    def connect_timeout(self) -> float:
        """How long a connection may take before it is tried again (or called filtered)."""
        return self.timeout if self.rtt is None else max(self.rtt.timeout, self.floor)

    def _flush(self, sink):
        if self._rows:
            indices = np.concatenate([i for i, _, _ in self._rows])
            state = np.concatenate([s for _, s, _ in self._rows])
            reason = np.concatenate([r for _, _, r in self._rows])
            self._rows = []
            self.tracker.mark_all(indices)        # reached a verdict: skipped on resume
            rows = self.space.rows(indices)
            rows["state"], rows["reason"] = state, reason
            silent = rows["reason"] == REASONS["no-response"]
            self.summary.replies += int(np.count_nonzero(~silent))
            if not self.config.list_unanswered:
                self.summary.states["filtered"] = self.summary.states.get("filtered", 0) + int(silent.sum())
                rows = rows[~silent]
            emit_rows(self.summary, sink, rows)

