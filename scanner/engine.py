"""One scan: sender and capture wired together, with the tracker of answered probes.

The main thread runs the compiled send loop (GIL released) one chunk at a time; the capture
thread parses reply batches in compiled code and hands genuine, first-seen replies to the sink
as they arrive. At the end, probes never answered get their technique's no-response state."""
from __future__ import annotations

import ipaddress
import os
import threading
import time
from typing import Any
from dataclasses import dataclass, field

import numpy as np

from . import netinfo
from ._ext.cookie import split_key
from ._ext.parser import ReplyParser
from ._ext.permutation import Permutation
from ._ext.sender import ProbeSender
from .capture import Capture
from .errors import EnvironmentFault, InputError
from .space import ScanSpace
from .states import REASONS, STATE_NAMES, STATES
from .targets import TargetSet

# Past this many probes the bitmap of answered probes (one bit each) would not fit comfortably.
MAX_SPACE = 1 << 34
# The extra UDP rounds reason host by host over the whole index space: only for spaces this big.
UDP_SLOW_UP_TO = 1 << 22
# Linux answers about one ICMP error per second per destination after a short burst: the pace
# of the extra rounds that collect UDP port-unreachables from hosts that rate-limit them.
UDP_SLOW_RATE_PER_HOST = 1.0


@dataclass
class ScanConfig:
    space: ScanSpace
    rate: float = 10000.0          # packets per second; 0: as fast as possible
    retries: int = 1               # resends of the probes still unanswered
    wait: float = 2.0              # seconds to wait for late replies after the last probe
    seed: int = None               # type: ignore[assignment]  # None: drawn at random here
    shard: tuple = (1, 1)          # (k, n): this machine's slice of the permutation
    interface: str | None = None
    list_unanswered: bool = False  # hand unanswered probes to the outputs one by one (else count them)
    list_silent: bool = True       # ... those of hosts that never answered too (else silent_rows() makes them)
    udp_rounds: int = 30           # at most this many slower rounds for ICMP-rate-limiting hosts

    def __post_init__(self):
        if self.seed is None:
            self.seed = int.from_bytes(os.urandom(8), "little")
        if self.space.size > MAX_SPACE:
            raise InputError(f"{self.space.size} probes in one scan is too many (at most {MAX_SPACE}); "
                             "split the targets into several scans")

    def positions(self):
        """(first position, step, count) of this shard's slice of the permutation."""
        k, n = self.shard
        return k - 1, n, max(0, (self.space.size - (k - 1) + n - 1) // n)

    def indices(self, chunk: int = 1 << 16):
        """This shard's probe indices in sending order, chunk by chunk (uint64 arrays)."""
        start, step, count = self.positions()
        perm = Permutation(self.space.size, self.seed)
        for offset in range(0, count, chunk):
            yield perm.fill(start + offset * step, min(chunk, count - offset), step)


@dataclass
class ScanSummary:
    probes: int = 0                 # probes in this shard's pass
    sent: int = 0                   # packets sent, retries included
    replies: int = 0                # genuine first replies
    duplicates: int = 0
    bad_cookie: int = 0
    suspected_forgeries: int = 0    # replies with the right port cookie but not the rest (UDP)
    pcap_received: int | None = None   # None: no capture (connect scan)
    pcap_dropped: int | None = None
    elapsed: float = 0.0
    sending: float = 0.0            # seconds spent in send passes (the rate is sent / sending)
    interrupted: bool = False
    states: dict = field(default_factory=dict)   # state name -> count, unanswered included
    error: str | None = None        # why the scan ended early when it failed (a fault, not Ctrl-C)


@dataclass
class StageCheckpoint:
    """Where an interrupted scan stood: enough to go on without re-probing what answered."""
    attempt: int                    # the pass being sent (retries + 1: all sent)
    position: int                   # the next permutation position of that pass
    bitmap: np.ndarray              # answered probes (the Tracker's)
    key: bytes                      # the cookie key, so that late replies still validate


class Tracker:
    """A bitmap over [0, N) of answered probes: first replies pass, duplicates are dropped."""

    def __init__(self, size: int, bitmap: np.ndarray | None = None):
        self.bitmap = np.zeros((size + 7) // 8, dtype=np.uint8) if bitmap is None else bitmap.copy()

    @property
    def count(self) -> int:
        return int(np.unpackbits(self.bitmap).sum())

    def first_seen(self, rows: np.ndarray) -> np.ndarray:
        index = rows["index"]
        _, first = np.unique(index, return_index=True)
        rows = rows[np.sort(first)]
        index = rows["index"]
        byte, bit = index >> 3, (np.uint8(1) << (index & 7).astype(np.uint8))
        fresh = (self.bitmap[byte] & bit) == 0      # one writer: the capture thread (or the connect loop)
        np.bitwise_or.at(self.bitmap, byte[fresh], bit[fresh])
        return rows[fresh]

    def answered(self, indices: np.ndarray) -> np.ndarray:
        return (self.bitmap[indices >> 3] >> (indices & 7).astype(np.uint8)) & 1 == 1

    def mark(self, index: int) -> None:
        self.bitmap[index >> 3] |= np.uint8(1 << (index & 7))


def emit_rows(summary: ScanSummary, sink, rows: np.ndarray) -> None:
    """Hands rows to the sink, counting them by state in the summary."""
    for code, n in zip(*np.unique(rows["state"], return_counts=True)):
        name = STATE_NAMES[int(code)]
        summary.states[name] = summary.states.get(name, 0) + int(n)
    sink(rows)


class Scan:
    """A raw-socket scan of config.space: every technique whose probes are in the space's
    Probes (e.g. SYN and UDP together), in one pass over a random permutation."""

    def __init__(self, config: ScanConfig, resume: StageCheckpoint | None = None):
        self.config = config
        self.space = config.space
        self.resume = resume
        if resume and len(resume.bitmap) != (self.space.size + 7) // 8:
            raise InputError("the resume file does not match this scan (its targets or ports differ)")
        self.tracker = Tracker(self.space.size, resume.bitmap if resume else None)
        self.summary = ScanSummary()
        self.answered_before = self.tracker.count if resume else 0   # by the interrupted run
        self._stop = threading.Event()
        self.key = resume.key if resume else os.urandom(16)
        self.sender: Any = None
        start, _, _ = config.positions()
        self.cursor = (resume.attempt, resume.position) if resume else (0, start)
        # Whether every answer worth waiting for is in (no retry, no wait then); the default:
        # every probe answered. Host discovery replaces it with "every host answered".
        self.complete = lambda: self.answered_before + self.summary.replies >= self.summary.probes

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

    def _endpoints(self):
        """(route, our address as bytes, source MAC, destination MAC, whether to send through a
        raw IP socket) toward the targets."""
        space = self.space
        if space.family == 4:
            first = str(ipaddress.IPv4Address(int(space.starts[0])))
        else:
            first = str(ipaddress.IPv6Address(bytes(space.hosts6[0])))
        route = netinfo.route_to(first, self.config.interface)
        if not route.src:
            raise EnvironmentFault(f"no source address on {route.ifname} to reach {first}")
        saddr = ipaddress.ip_address(route.src).packed
        if "arp" in space.probes.protos:
            if not route.on_link:
                raise InputError(f"-PR (ARP ping) needs targets on a local Ethernet link; {first} is not")
            return route, saddr, netinfo.interface_mac(route.ifname), b"\xff" * 6, False
        if route.loopback or route.on_link:
            # No link layer, or neighbours that each have their own MAC: the kernel resolves them.
            return route, saddr, bytes(6), bytes(6), True
        return route, saddr, netinfo.interface_mac(route.ifname), netinfo.next_hop_mac(route), False

    def run(self, sink) -> ScanSummary:
        """Runs the scan; sink(rows) receives RESULT_DTYPE arrays, from the capture thread while
        scanning and from this thread at the end. Returns the summary."""
        cfg, space = self.config, self.space
        route, saddr, src_mac, dst_mac, l3 = self._endpoints()
        templates, kinds, l2_len = space.probes.compile(space.family, src_mac, dst_mac, saddr)
        k0, k1 = split_key(self.key)
        try:
            self.sender = ProbeSender(route.ifname, l3, l2_len, templates, kinds, k0, k1,
                                      saddr, space.arrays(), cfg.seed, cfg.rate)
        except PermissionError:
            raise InputError("raw sockets need root (or CAP_NET_RAW): run as root, or use -sT") from None
        # The kernel's capture ring is allocated at start (about 20 ms per 8 MiB): sized to the scan.
        ring = (8 << 20) if space.size <= (1 << 20) else (64 << 20)
        capture = Capture(route.ifname, space.probes.bpf(space.family, route.src), buffer_bytes=ring)
        parser = ReplyParser(k0, k1, saddr, capture.link_header_len, kinds, space.arrays(), templates, l2_len)

        def on_batch(data, meta):
            rows = parser.parse(data, meta)
            if len(rows):
                fresh = self.tracker.first_seen(rows)
                self.summary.duplicates += len(rows) - len(fresh)
                if len(fresh):
                    self.summary.replies += len(fresh)
                    emit_rows(self.summary, sink, fresh)

        start, step, count = cfg.positions()
        self.summary.probes = count
        began = time.monotonic()
        capture.start(on_batch)
        try:
            first_attempt, position = self.cursor
            for attempt in range(first_attempt, cfg.retries + 1):
                if attempt > first_attempt:
                    self._wait(min(cfg.wait, 0.5))       # let replies to the last pass arrive
                if self._stop.is_set() or (attempt and self.complete()):
                    break
                skip = self.tracker.bitmap if attempt or self.resume else None
                self._send_pass(cfg.rate, position if attempt == first_attempt else start, step, skip, attempt)
            if not self._stop.is_set():
                self.cursor = (cfg.retries + 1, start)
            if not self._stop.is_set() and "udp" in space.probes.protos and cfg.udp_rounds:
                self._slow_udp_rounds(start, step)
            self._wait(cfg.wait)
        finally:
            self.summary.interrupted = self._stop.is_set()
            capture.stop()
            self.summary.sent = self.sender.sent if self.sender is not None else 0
            # Replies that match no probe of ours: a wrong cookie, or a port/address never probed.
            self.summary.bad_cookie = parser.bad_cookie + parser.not_in_scan
            self.summary.suspected_forgeries = parser.forged
            received, dropped, _ = capture.stats()
            self.summary.pcap_received, self.summary.pcap_dropped = received, dropped
        if not self.summary.interrupted:
            self._emit_unanswered(sink, count)
        self.summary.elapsed = time.monotonic() - began
        return self.summary

    def _send_pass(self, rate, start, step, skip, attempt=None):
        """Sends this shard's probes from position start on whose bit is not set in skip (None:
        all of them); keeps the cursor of pass `attempt` up to date for a checkpoint."""
        self.sender.set_rate(rate)
        chunk = 1 << 16 if rate <= 0 else max(256, int(rate / 20))   # Python wakes ~20 times/s
        position, stop = start, self.space.size
        began = time.monotonic()
        while position < stop and not self._stop.is_set():
            position = self.sender.send(position, stop, step, chunk, skip)
            if attempt is not None:
                self.cursor = (attempt, position)
        self.summary.sending += time.monotonic() - began

    def checkpoint(self) -> StageCheckpoint:
        """Where this scan stands (after run() returned), for a resume file."""
        return StageCheckpoint(self.cursor[0], self.cursor[1], self.tracker.bitmap, self.key)

    def _wait(self, seconds):
        """Collects late replies until all are in or time is up; a second Ctrl-C
        (KeyboardInterrupt) cuts it short."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.complete():
            time.sleep(0.01)

    def _slow_udp_rounds(self, start, step):
        """Hosts that answered some UDP probes with port-unreachable but not others are likely
        rate-limiting ICMP (Linux: about one a second): resend their unanswered UDP probes at a
        pace they can answer, round after round while rounds still bring answers."""
        space = self.space
        udp_slot = np.array([t.proto == "udp" for t, _ in space.probes.slots])
        n_slots = space.n_slots
        if space.size > UDP_SLOW_UP_TO:
            return          # too big to reason about host by host; plain retries only
        indices = np.arange(space.size, dtype=np.uint64)
        hosts, slots = indices // np.uint64(n_slots), (indices % np.uint64(n_slots)).astype(np.int64)
        for _ in range(self.config.udp_rounds):
            answered = self.tracker.answered(indices)
            pending = udp_slot[slots] & ~answered
            limited = np.zeros(space.n_hosts, dtype=bool)
            limited[hosts[udp_slot[slots] & answered].astype(np.int64)] = True
            pending &= limited[hosts.astype(np.int64)]
            if not pending.any() or self._stop.is_set():
                return
            skip = np.packbits(~pending, bitorder="little")
            n_hosts = len(np.unique(hosts[pending]))
            before = self.summary.replies
            rate = UDP_SLOW_RATE_PER_HOST * n_hosts
            self._send_pass(min(rate, self.config.rate) if self.config.rate else rate, start, step, skip)
            time.sleep(1.0 / UDP_SLOW_RATE_PER_HOST)
            if self.summary.replies == before:
                return

    def _emit_unanswered(self, sink, count):
        """The no-response state for every probe of this shard that got no reply."""
        if not self.config.list_unanswered:
            # Counted, not listed: attributed to the first technique's no-response state.
            state = self.space.probes.slots[0][0].no_response
            unanswered = count - self.summary.replies - self.answered_before
            self.summary.states[state] = self.summary.states.get(state, 0) + unanswered
            return
        answered = None if self.config.list_silent else self.answered_hosts()
        for indices in self.config.indices(1 << 20):
            indices = indices[~self.tracker.answered(indices)]
            if answered is not None:       # hosts that said nothing: counted here, listed by silent_rows()
                silent = ~np.isin(self.space.locate(indices)[0], answered)
                self._count_unanswered(indices[silent])
                indices = indices[~silent]
            if len(indices):
                emit_rows(self.summary, sink, self._no_response_rows(indices))

    def _no_response_rows(self, indices: np.ndarray) -> np.ndarray:
        rows = self.space.rows(indices)
        rows["state"] = self._no_response_states()[self.space.locate(indices)[1]]
        rows["reason"] = REASONS["no-response"]
        return rows

    def _no_response_states(self) -> np.ndarray:
        return np.array([STATES[t.no_response] for t, _ in self.space.probes.slots], dtype=np.uint8)

    def _count_unanswered(self, indices: np.ndarray) -> None:
        for code, n in zip(*np.unique(self._no_response_states()[self.space.locate(indices)[1]],
                                      return_counts=True)):
            name = STATE_NAMES[int(code)]
            self.summary.states[name] = self.summary.states.get(name, 0) + int(n)

    def answered_hosts(self) -> np.ndarray:
        """Sorted numbers of the hosts that answered any probe; memory grows with the answers,
        not with the space (the bitmap is read a slice at a time)."""
        found, n_slots, step = [], np.uint64(self.space.n_slots), 1 << 20
        bitmap = self.tracker.bitmap
        for offset in range(0, len(bitmap), step):
            bits = np.flatnonzero(np.unpackbits(bitmap[offset:offset + step], bitorder="little"))
            if len(bits):
                found.append(np.unique((bits.astype(np.uint64) + np.uint64(offset * 8)) // n_slots))
        return np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.uint64)

    def silent_rows(self, answered: np.ndarray, chunk: int = 4096):
        """The no-response rows of every host that never answered, one host at a time, in address
        order (a whole scan of this one shard: -Pn output without a row per silent probe)."""
        n_slots = np.uint64(self.space.n_slots)
        slots = np.arange(self.space.n_slots, dtype=np.uint64)
        for first in range(0, self.space.n_hosts, chunk):
            hosts = np.arange(first, min(first + chunk, self.space.n_hosts), dtype=np.uint64)
            for host in hosts[~np.isin(hosts, answered)].tolist():
                yield self._no_response_rows(np.uint64(host) * n_slots + slots)


def discover_hosts(config: ScanConfig, probes, sink=None, runner=None, resume: StageCheckpoint | None = None,
                   engine=None):
    """nmap-style host discovery over config.space's targets with the given probes; returns
    (TargetSet of the hosts that answered or None if none did, the discovery summary).
    sink, if given, receives the first reply of each host (state "up"); runner(scan, sink),
    if given, runs the scan (e.g. with a progress line) instead of scan.run(sink); engine, if
    given, replaces Scan (e.g. the cluster's)."""
    from dataclasses import replace
    space = ScanSpace(config.space.targets, probes)
    scan = (engine or Scan)(replace(config, space=space, list_unanswered=False), resume)
    # Hosts that answered any probe (a resumed scan's bitmap already knows some).
    answered = np.unpackbits(scan.tracker.bitmap, bitorder="little")[:space.size]
    seen = answered.reshape(space.n_hosts, space.n_slots).any(axis=1)

    def collect(rows):
        """Keeps the first answer from each host."""
        rows = rows[rows["state"] == STATES["up"]]
        hosts, first = np.unique(space.locate(rows["index"])[0].astype(np.int64), return_index=True)
        fresh = ~seen[hosts]
        seen[hosts[fresh]] = True
        if sink and fresh.any():
            sink(rows[first[fresh]])
    scan.complete = lambda: bool(seen.all())
    summary = runner(scan, collect) if runner else scan.run(collect)
    up = np.flatnonzero(seen).astype(np.uint64)
    if not len(up):
        return None, summary
    rows = space.rows(up * np.uint64(space.n_slots))
    if space.family == 4:
        values = rows["ip"].tolist()
    else:
        values = [int.from_bytes(bytes(a), "big") for a in rows["ip6"]]
    return TargetSet([(v, v) for v in values], space.family), summary
