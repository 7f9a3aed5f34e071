"""The TCP connect scan (-sT): a full connection to each (address, port) through the kernel's own
sockets, many at once, so it needs no raw-socket privileges. Not the compiled path: the kernel
does the packet work, Python only multiplexes non-blocking sockets."""
from __future__ import annotations

import errno
import resource
import select
import socket
import struct
import threading
import time
from collections import deque

import numpy as np

from .engine import StageCheckpoint, ScanSummary, Tracker, emit_rows
from .timing import Window
from .states import REASONS, STATES, addresses

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
LINGER_RESET = struct.pack("ii", 1, 0)    # close with a RST: no TIME_WAIT pile-up on big scans


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
        self.tracker = Tracker(self.space.size, resume.bitmap if resume else None)
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
        """(index, address, port) in the scan's permuted order, this shard's slice only."""
        self.summary.probes = self.config.positions()[2]
        for indices in self.config.indices(4096):
            rows = self.space.rows(indices[~self.tracker.answered(indices)])
            yield from zip(rows["index"].tolist(), addresses(rows), rows["port"].tolist())

    def run(self, sink) -> ScanSummary:
        began = time.monotonic()
        poller = select.epoll()
        todo = self._targets()
        retry: deque = deque()         # (index, addr, port, tries) to connect again
        pending: dict = {}             # fd -> [socket, index, addr, port, tries, deadline]
        order: deque = deque()         # fds in start order: all share one timeout
        rate = self.config.rate
        started = 0
        last_flush = time.monotonic()
        exhausted = False
        t = self.config.timing
        deadline = began + t.host_timeout if t is not None and t.host_timeout else None
        # Plain epoll on descriptors, no selectors, one flag-set socket call, a linger only for
        # connections that opened: the Python work per port is what bounds -sT.
        family: dict = {}
        stream = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
        watch = select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP
        while not self._stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self.timed_out = True
                break
            allowed = self.concurrency - len(pending)
            if rate > 0:
                allowed = min(allowed, int((now - began) * rate) + 1 - started)
            while allowed > 0:
                if retry:
                    index, addr, port, tries = retry.popleft()
                elif not exhausted:
                    item = next(todo, None)
                    if item is None:
                        exhausted = True
                        continue
                    (index, addr, port), tries = item, 0
                else:
                    break
                fam = family.get(addr)
                if fam is None:
                    fam = family[addr] = socket.AF_INET6 if ":" in addr else socket.AF_INET
                sock = socket.socket(fam, stream)
                err = sock.connect_ex((addr, port))
                if err in (errno.EINPROGRESS, errno.EAGAIN):
                    fd = sock.fileno()
                    pending[fd] = [sock, index, addr, port, tries, now]
                    poller.register(fd, watch)
                    order.append(fd)
                else:
                    self._result(sock, index, tries, OPEN if err == 0 else ERRNO_RESULT.get(err, TIMEOUT))
                started += 1
                self._started = started
                allowed -= 1
            if exhausted and not retry and not pending:
                break
            while order and order[0] not in pending:
                order.popleft()
            limit = self.connect_timeout()
            timeout = min(0.05, max(0.0, pending[order[0]][5] + limit - now)) if order else 0.05
            events = poller.poll(timeout)
            now = time.monotonic()
            rtts = []
            for fd, _ in events:
                entry = pending.pop(fd)
                poller.unregister(fd)
                sock = entry[0]
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if entry[4] == 0:
                    rtts.append(now - entry[5])
                self._result(sock, entry[1], entry[4], OPEN if err == 0 else ERRNO_RESULT.get(err, TIMEOUT))
            if self.rtt is not None and events:
                self.rtt.replies(now, np.array(rtts), 0, 0, 0)
            limit = self.connect_timeout()
            while order and (order[0] not in pending or pending[order[0]][5] + limit <= now):
                fd = order.popleft()
                entry = pending.pop(fd, None)
                if entry is None:
                    continue
                poller.unregister(fd)           # timed out: try again, or call it filtered
                sock, index, addr, port, tries, _ = entry
                again = tries < min(self.config.retries, self.max_successful_try + 1)
                self._result(sock, index, tries, None if again else TIMEOUT)
                if again:
                    retry.append((index, addr, port, tries + 1))
            if now - last_flush > 0.1:
                self._flush(sink)
                last_flush = now
        self.summary.interrupted = self._stop.is_set()
        for entry in pending.values():
            entry[0].close()
        pending.clear()
        self._flush(sink)
        poller.close()
        self.summary.sent = started
        self.summary.elapsed = self.summary.sending = time.monotonic() - began
        return self.summary

    def connect_timeout(self) -> float:
        """How long a connection may take before it is tried again (or called filtered)."""
        return self.timeout if self.rtt is None else max(self.rtt.timeout, self.floor)

    def _result(self, sock, index, tries, result):
        """A connection's verdict (None: none yet, it is retried); the socket is closed."""
        if result is OPEN:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)   # no TIME_WAIT pile-up
        sock.close()
        if result is not None:
            if tries > self.max_successful_try and result is not TIMEOUT:
                self.max_successful_try = tries
            self._rows.append((index, STATES[result[0]], REASONS[result[1]]))

    def _flush(self, sink):
        if self._rows:
            index, state, reason = zip(*self._rows)
            self._rows = []
            indices = np.array(index, dtype=np.uint64)
            self.tracker.mark_all(indices)        # reached a verdict: skipped on resume
            rows = self.space.rows(indices)
            rows["state"], rows["reason"] = state, reason
            silent = rows["reason"] == REASONS["no-response"]
            self.summary.replies += int(np.count_nonzero(~silent))
            if not self.config.list_unanswered:
                self.summary.states["filtered"] = self.summary.states.get("filtered", 0) + int(silent.sum())
                rows = rows[~silent]
            emit_rows(self.summary, sink, rows)

