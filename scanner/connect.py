"""The TCP connect scan (-sT): a full connection to each (address, port) through the kernel's own
sockets, many at once, so it needs no raw-socket privileges. Not the compiled path: the kernel
does the packet work, Python only multiplexes non-blocking sockets."""
from __future__ import annotations

import errno
import resource
import selectors
import socket
import struct
import threading
import time
from typing import Any
from collections import deque

import numpy as np

from .engine import StageCheckpoint, ScanSummary, Tracker, emit_rows
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
        self.tracker = Tracker(config, resume.bitmap if resume else None)
        self.concurrency = concurrency or default_concurrency()
        self.timeout = timeout
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
        sel = selectors.DefaultSelector()
        todo = self._targets()
        retry: deque = deque()         # (index, addr, port, tries) to connect again
        pending: dict = {}             # socket -> (index, addr, port, tries, deadline)
        order: deque = deque()         # sockets in start order: all share one timeout
        rate = self.config.rate
        started = 0
        last_flush = time.monotonic()
        exhausted = False
        while not self._stop.is_set():
            now = time.monotonic()
            allowed = self.concurrency - len(pending)
            if rate > 0:
                allowed = min(allowed, int((now - began) * rate) + 1 - started)
            while allowed > 0:
                if retry:
                    item = retry.popleft()
                elif not exhausted:
                    item = next(todo, None)
                    if item is None:
                        exhausted = True
                        continue
                    item = item + (0,)
                else:
                    break
                self._start(sel, pending, order, item, now)
                started += 1
                self._started = started
                allowed -= 1
            if exhausted and not retry and not pending:
                break
            while order and order[0] not in pending:
                order.popleft()
            timeout = min(0.05, max(0.0, pending[order[0]][4] - now)) if order else 0.05
            for key, _ in sel.select(timeout):
                sock: Any = key.fileobj
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                self._finish(sel, pending, sock, OPEN if err == 0 else ERRNO_RESULT.get(err, TIMEOUT))
            now = time.monotonic()
            while order and (order[0] not in pending or pending[order[0]][4] <= now):
                sock = order.popleft()
                if sock in pending:             # timed out: try again, or call it filtered
                    index, addr, port, tries, _ = pending[sock]
                    again = tries < self.config.retries
                    self._finish(sel, pending, sock, None if again else TIMEOUT)
                    if again:
                        retry.append((index, addr, port, tries + 1))
            if now - last_flush > 0.1:
                self._flush(sink)
                last_flush = now
        self.summary.interrupted = self._stop.is_set()
        for sock in list(pending):
            self._finish(sel, pending, sock, None)
        self._flush(sink)
        sel.close()
        self.summary.sent = started
        self.summary.elapsed = self.summary.sending = time.monotonic() - began
        return self.summary

    def _start(self, sel, pending, order, item, now):
        index, addr, port, tries = item
        sock = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        err = sock.connect_ex((addr, port))
        pending[sock] = (index, addr, port, tries, now + self.timeout)
        if err in (errno.EINPROGRESS, errno.EAGAIN):
            sel.register(sock, selectors.EVENT_WRITE)
            order.append(sock)
        else:
            self._finish(None, pending, sock, OPEN if err == 0 else ERRNO_RESULT.get(err, TIMEOUT))

    def _finish(self, sel, pending, sock, result):
        index, _, _, _, _ = pending.pop(sock)
        if sel is not None:
            try:
                sel.unregister(sock)
            except KeyError:
                pass
        sock.close()
        if result is not None:
            self.tracker.mark(index)
            self._rows.append((index, STATES[result[0]], REASONS[result[1]]))

    def _flush(self, sink):
        if self._rows:
            index, state, reason = zip(*self._rows)
            self._rows = []
            rows = self.space.rows(np.array(index, dtype=np.uint64))
            rows["state"], rows["reason"] = state, reason
            silent = rows["reason"] == REASONS["no-response"]
            self.summary.replies += int(np.count_nonzero(~silent))
            if not self.config.list_unanswered:
                self.summary.states["filtered"] = self.summary.states.get("filtered", 0) + int(silent.sum())
                rows = rows[~silent]
            emit_rows(self.summary, sink, rows)

