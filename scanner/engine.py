"""One scan: sender and capture wired together, with the tracker of answered probes.

The main thread runs the compiled send loop (GIL released) one chunk at a time; the capture
thread parses reply batches in compiled code and hands genuine, first-seen replies to the sink
as they arrive. At the end, probes never answered get the technique's no-response state."""
from __future__ import annotations

import ipaddress
import os
import signal
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from . import netinfo
from ._ext.cookie import split_key
from ._ext.parser import ReplyParser
from ._ext.permutation import Permutation
from ._ext.sender import ProbeSender
from .capture import Capture
from .errors import InputError
from .space import ScanSpace
from .states import REASONS, RESULT_DTYPE, STATE_NAMES, STATES
from .techniques import SYN_SCAN, TcpTechnique

# Past this many probes the bitmap of answered probes (one bit each) would not fit comfortably.
MAX_SPACE = 1 << 34
# Up to this many probes the unanswered ones are reported one by one (as nmap lists them).
LIST_UNANSWERED_UP_TO = 1 << 22


@dataclass
class ScanConfig:
    space: ScanSpace
    technique: TcpTechnique = SYN_SCAN
    rate: float = 10000.0          # packets per second; 0: as fast as possible
    retries: int = 1               # resends of the probes still unanswered
    wait: float = 2.0              # seconds to wait for late replies after the last probe
    seed: int | None = None
    shard: tuple = (1, 1)          # (k, n): this machine's slice of the permutation
    interface: str | None = None
    list_unanswered: bool | None = None   # None: only for scans small enough to list

    def __post_init__(self):
        if self.seed is None:
            self.seed = int.from_bytes(os.urandom(8), "little")
        if self.space.size > MAX_SPACE:
            raise InputError(f"{self.space.size} probes in one scan is too many (at most {MAX_SPACE}); "
                             "split the targets into several scans")

    def lists_unanswered(self, probes: int) -> bool:
        """Whether probes without a reply are reported one by one, or only counted."""
        return probes <= LIST_UNANSWERED_UP_TO if self.list_unanswered is None else self.list_unanswered


@dataclass
class ScanSummary:
    probes: int = 0                 # probes in this shard's pass
    sent: int = 0                   # packets sent, retries included
    replies: int = 0                # genuine first replies
    duplicates: int = 0
    bad_cookie: int = 0
    pcap_received: int | None = None   # None: no capture (connect scan)
    pcap_dropped: int | None = None
    elapsed: float = 0.0
    interrupted: bool = False
    states: dict = field(default_factory=dict)   # state name -> count, unanswered included


class Tracker:
    """A bitmap over [0, N) of answered probes: first replies pass, duplicates are dropped."""

    def __init__(self, size: int):
        self.bitmap = np.zeros((size + 7) // 8, dtype=np.uint8)
        self.lock = threading.Lock()

    def first_seen(self, rows: np.ndarray) -> np.ndarray:
        index = rows["index"]
        _, first = np.unique(index, return_index=True)
        rows = rows[np.sort(first)]
        index = rows["index"]
        byte, bit = index >> 3, (np.uint8(1) << (index & 7).astype(np.uint8))
        with self.lock:
            fresh = (self.bitmap[byte] & bit) == 0
            np.bitwise_or.at(self.bitmap, byte[fresh], bit[fresh])
        return rows[fresh]

    def answered(self, indices: np.ndarray) -> np.ndarray:
        return (self.bitmap[indices >> 3] >> (indices & 7).astype(np.uint8)) & 1 == 1


class Scan:
    def __init__(self, config: ScanConfig):
        self.config = config
        self.space = config.space
        self.tracker = Tracker(self.space.size)
        self.summary = ScanSummary()
        self._stop = threading.Event()
        self.key = os.urandom(16)
        self.sender = None

    def stop(self) -> None:
        """Stop sending (e.g. on Ctrl-C); replies already on their way are still collected."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def progress(self) -> dict:
        """A snapshot for status lines: probes sent (retries included), probes in one pass,
        genuine replies and open ports so far. Safe to call from another thread."""
        return {"sent": self.sender.sent if self.sender else 0, "total": self.summary.probes,
                "replies": self.summary.replies, "open": self.summary.states.get("open", 0)}

    def _positions(self):
        k, n = self.config.shard
        start = k - 1
        count = max(0, (self.space.size - start + n - 1) // n)
        return start, n, count

    def run(self, sink) -> ScanSummary:
        """Runs the scan; sink(rows) receives RESULT_DTYPE arrays, from the capture thread while
        scanning and from this thread at the end. Returns the summary."""
        cfg, space = self.config, self.space
        first_target = str(ipaddress.IPv4Address(int(space.starts[0])))
        route = netinfo.route_to(first_target, cfg.interface)
        saddr = int(ipaddress.IPv4Address(route.src))
        if route.loopback:
            src_mac = dst_mac = bytes(6)
        else:
            src_mac, dst_mac = netinfo.interface_mac(route.ifname), netinfo.next_hop_mac(route)
        technique = cfg.technique
        template, l2_len, ts_offset = technique.template(src_mac, dst_mac, saddr)
        k0, k1 = split_key(self.key)
        try:
            sender = self.sender = ProbeSender(route.ifname, route.loopback, template, l2_len, ts_offset, k0, k1, saddr,
                                 *space.arrays(), cfg.seed, cfg.rate)
        except PermissionError:
            raise InputError("raw sockets need root (or CAP_NET_RAW): run as root") from None
        capture = Capture(route.ifname, technique.bpf(route.src))
        parser = ReplyParser(k0, k1, saddr, capture.link_header_len, technique.tcp_flags,
                             technique.state_table(), *space.arrays())

        def on_batch(data, meta):
            rows = parser.parse(data, meta)
            if len(rows):
                fresh = self.tracker.first_seen(rows)
                self.summary.duplicates += len(rows) - len(fresh)
                if len(fresh):
                    self.summary.replies += len(fresh)
                    emit_rows(self.summary, sink, fresh)

        start, step, count = self._positions()
        self.summary.probes = count
        began = time.monotonic()
        capture.start(on_batch)
        try:
            for attempt in range(cfg.retries + 1):
                if attempt:
                    time.sleep(min(cfg.wait, 0.5))       # let replies to the last pass arrive
                sender.set_rate(cfg.rate)
                self._send_pass(sender, start, step, answered=self.tracker.bitmap if attempt else None)
                if self._stop.is_set():
                    self.summary.interrupted = True
                    break
            self._wait(cfg.wait)
        finally:
            capture.stop()
            self.summary.sent = sender.sent
            self.summary.bad_cookie = parser.bad_cookie
            received, dropped, _ = capture.stats()
            self.summary.pcap_received, self.summary.pcap_dropped = received, dropped
        if not self.summary.interrupted:
            self._emit_unanswered(sink, start, step, count)
        self.summary.elapsed = time.monotonic() - began
        return self.summary

    def _send_pass(self, sender, start, step, answered):
        rate = self.config.rate
        chunk = 1 << 16 if rate <= 0 else max(256, int(rate / 20))   # Python wakes ~20 times/s
        position, stop = start, self.space.size
        while position < stop and not self._stop.is_set():
            position = sender.send(position, stop, step, chunk, answered)

    def _wait(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.05)

    def _emit_unanswered(self, sink, start, step, count):
        """The no-response state for every probe of this shard that got no reply."""
        state = self.config.technique.no_response
        if not self.config.lists_unanswered(count):
            self.summary.states[state] = self.summary.states.get(state, 0) + count - self.summary.replies
            return
        perm = Permutation(self.space.size, self.config.seed)
        for offset in range(0, count, 1 << 20):
            indices = perm.fill(start + offset * step, min(1 << 20, count - offset), step)
            indices = indices[~self.tracker.answered(indices)]
            if not len(indices):
                continue
            rows = np.zeros(len(indices), dtype=RESULT_DTYPE)
            rows["index"] = indices
            rows["ip"], rows["port"] = self.space.locate(indices)
            rows["proto"] = 6
            rows["state"] = STATES[state]
            rows["reason"] = REASONS["no-response"]
            emit_rows(self.summary, sink, rows)


def emit_rows(summary: ScanSummary, sink, rows: np.ndarray) -> None:
    """Hands rows to the sink, counting them by state in the summary."""
    for code, n in zip(*np.unique(rows["state"], return_counts=True)):
        name = STATE_NAMES[int(code)]
        summary.states[name] = summary.states.get(name, 0) + int(n)
    sink(rows)


def install_interrupt_handler(scan) -> None:
    """First Ctrl-C/SIGTERM: stop sending, keep collecting and writing; the second: exit now."""
    def handler(signum, frame):
        if scan.stopping:
            raise KeyboardInterrupt
        scan.stop()
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
