"""One scan: sender and capture wired together, with the tracker of answered probes.

The main thread runs the compiled send loop (GIL released) one chunk at a time; the capture
thread parses reply batches in compiled code and hands genuine, first-seen replies to the sink
as they arrive. At the end, probes never answered get their technique's no-response state."""
from __future__ import annotations

import ipaddress
import os
import threading
import time
from collections import deque
from typing import Any, Callable, Optional
from dataclasses import dataclass, field

import numpy as np

from . import netinfo
from ._ext.cookie import split_key
from ._ext.parser import ReplyParser
from ._ext.permutation import Permutation
from ._ext.sender import ProbeSender
from ._ext.xdp import XdpSender
from .capture import Capture
from .errors import EnvironmentFault, InputError
from .request import SEND_PATHS
from .space import ScanSpace
from .states import REASONS, STATE_NAMES, STATES
from .targets import TargetSet
from .timing import Window
from .trace import describe_frame, reply_lines

# The bitmap of answered probes has one bit per probe of this shard: at most 512 MiB. (The space
# itself may be as large as the whole IPv4 space x every port, 2^48: a shard of it fits.) A larger
# shard of a fixed-rate raw scan is swept in windows of this many probes, each one finished
# (retries, --wait) before the next: deduplication and retries are then per window.
MAX_SHARD_PROBES = 1 << 32


def dedup_window() -> int:
    """The bitmap's cap in probes: MAX_SHARD_PROBES, or SCANNER_DEDUP_WINDOW (tests force small
    windows with it)."""
    forced = os.environ.get("SCANNER_DEDUP_WINDOW", "")
    return int(forced) if forced.isdigit() and int(forced) > 0 else MAX_SHARD_PROBES
# The extra UDP rounds reason host by host over the shard's probes: only for shards this big.
UDP_SLOW_UP_TO = 1 << 22
# Linux answers about one ICMP error per second per destination after a short burst: the pace
# of the extra rounds that collect UDP port-unreachables from hosts that rate-limit them.
UDP_SLOW_RATE_PER_HOST = 1.0
# The window keeps per-probe send times and tries (5 bytes a probe) up to this many probes.
PER_PROBE_UP_TO = 1 << 22
# --send-path auto takes AF_XDP from this many probes of a stage on: below, its setup and teardown
# (~15-20 ms each, a socket bound to the queue and a registered UMEM) cost more than its faster
# sending saves; sendmmsg's socket opens in well under a millisecond.
XDP_FROM_PROBES = 1 << 17
# A window at most this large waits on every few replies: its capture hands them over at once.
SMALL_WINDOW = 256


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
    timing: Any = None             # timing.Timing; None: the fixed rate, retries and wait above
    sequential: bool = False       # -r: indices in order (hosts in order, each host's ports in order)
    trace: Optional[Callable] = None   # --packet-trace: trace(direction, seconds, text) per packet
    send_path: str = "auto"        # "packet" (sendmmsg), "xdp" (AF_XDP) or "auto" (xdp where it works)

    def __post_init__(self):
        if self.seed is None:
            self.seed = int.from_bytes(os.urandom(8), "little")
        if self.windowed:           # the adaptive window tracks every probe of the shard at once
            too_many_probes(self)

    def positions(self):
        """(first position, step, count) of this shard's slice of the permutation."""
        k, n = self.shard
        return k - 1, n, max(0, (self.space.size - (k - 1) + n - 1) // n)

    def indices(self, chunk: int = 1 << 16):
        """This shard's probe indices in sending order, chunk by chunk (uint64 arrays)."""
        start, step, count = self.positions()
        for offset in range(0, count, chunk):
            yield self.at(start + offset * step, min(chunk, count - offset))

    def at(self, position: int, count: int) -> np.ndarray:
        """The indices of count positions from position on (this shard's step apart)."""
        step = self.shard[1]
        if self.sequential:         # -r: the identity order; index = host * slots + slot, ports sorted
            return np.arange(position, position + count * step, step, dtype=np.uint64)
        if getattr(self, "_perm", None) is None:
            self._perm = Permutation(self.space.size, self.seed)
        return self._perm.fill(position, count, step)

    @property
    def windowed(self) -> bool:
        """Whether the window loop sends (adaptive pace, -r's order, a parallelism cap, the
        packet trace) rather than the compiled permutation walk at a fixed rate."""
        t = self.timing
        return t is not None and (t.adaptive or self.sequential or self.trace is not None
                                  or t.max_window < (1 << 30) or t.host_timeout is not None)


def too_many_probes(config: ScanConfig) -> None:
    """InputError when a shard has more probes than the bitmap holds (scans that cannot go window
    by window: the adaptive window, connect scans, the cluster)."""
    count, cap = config.positions()[2], dedup_window()
    if count > cap:
        need = -(-config.space.size // cap)
        raise InputError(f"{count} probes in one shard is too many (at most {cap}, {config.space.size} in all, "
                         f"without a fixed --rate): split the scan with --shard K/N, N at least {need}")


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
    send_path: str = ""             # how probes left: "packet" (sendmmsg) or "xdp" (AF_XDP)
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
    base: int = 0                   # the first probe (ordinal) the bitmap covers: its window
    answered: int = -1              # probes answered so far, earlier windows too (-1: the bitmap's count)


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


class Tracker:
    """The answered probes of this shard, one bit each: first replies pass, duplicates are dropped.
    Shard k of n sends the probes at permutation positions k-1, k-1+n, ...: bit j stands for
    position k-1 + j*n (position // n), so the bitmap holds N/n bits, not N. A reply's index is
    mapped back to its position by the inverse permutation (-r: the index is the position).
    With windowed=True a shard larger than dedup_window() probes gets a bitmap over one window
    of them (ordinals base .. base + bits - 1) that slide() moves on: replies to probes outside
    the window are not counted as this shard's (late ones are dropped, never reported twice)."""

    def __init__(self, config: ScanConfig, bitmap: np.ndarray | None = None, base: int = 0,
                 windowed: bool = False):
        self.start, self.step, self.size = config.positions()
        self.perm = None if config.sequential else Permutation(config.space.size, config.seed)
        if not windowed:
            too_many_probes(config)
        self.bits = min(self.size, dedup_window())
        self.base = base if self.bits < self.size else 0
        nbytes = (self.bits + 7) // 8
        if bitmap is not None and len(bitmap) != nbytes:
            raise InputError("the resume file does not match this scan (its targets, ports or shard differ)")
        self.bitmap = np.zeros(nbytes, dtype=np.uint8) if bitmap is None else bitmap.copy()
        self._lock = threading.Lock()     # slide() against the capture thread's first_seen()

    @property
    def windowed(self) -> bool:
        return self.bits < self.size

    def slide(self, base: int) -> None:
        """Moves the window to ordinals base .. base + bits - 1, none of them answered yet."""
        with self._lock:
            self.base = base
            self.bitmap[:] = 0

    @property
    def count(self) -> int:
        return sum(int(_POPCOUNT[self.bitmap[i:i + (1 << 24)]].sum(dtype=np.uint64))
                   for i in range(0, len(self.bitmap), 1 << 24))

    def ordinals(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(bit numbers, whether each index is one of this shard's probes) of probe indices."""
        if self.perm is None:
            positions = np.asarray(indices, dtype=np.uint64)
        else:
            positions = self.perm.positions(indices)
        if self.step == 1:
            ordinal, mine = positions, np.ones(len(positions), dtype=bool)
        else:
            ordinal, rest = np.divmod(positions, np.uint64(self.step))
            mine = rest == self.start
        if self.windowed:
            ordinal = ordinal - np.uint64(self.base)          # wraps below the window: out of it too
            mine &= ordinal < np.uint64(self.bits)
            ordinal = np.where(mine, ordinal, np.uint64(0))
        return ordinal, mine

    def first_seen(self, rows: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._first_seen(rows)

    def _first_seen(self, rows: np.ndarray) -> np.ndarray:
        ordinal, mine = self.ordinals(rows["index"])
        rows, ordinal = rows[mine], ordinal[mine]          # replies to other shards' probes: not ours
        _, first = np.unique(ordinal, return_index=True)
        first = np.sort(first)
        rows, ordinal = rows[first], ordinal[first]
        byte, bit = ordinal >> 3, (np.uint8(1) << (ordinal & 7).astype(np.uint8))
        fresh = (self.bitmap[byte] & bit) == 0      # one writer: the capture thread (or the connect loop)
        np.bitwise_or.at(self.bitmap, byte[fresh], bit[fresh])
        return rows[fresh]

    def answered(self, indices: np.ndarray) -> np.ndarray:
        ordinal, mine = self.ordinals(indices)
        ordinal = np.where(mine, ordinal, 0)
        return mine & ((self.bitmap[ordinal >> 3] >> (ordinal & 7).astype(np.uint8)) & 1 == 1)

    def answered_run(self, first: int, count: int) -> np.ndarray:
        """Whether the shard's probes first, first+1, ..., first+count-1 (in sending order) answered
        (False outside the window)."""
        out = np.zeros(count, dtype=bool)
        a, b = max(first, self.base), min(first + count, self.base + self.bits)
        if a < b:
            rel = a - self.base
            lo, hi = rel >> 3, (rel + b - a + 7) >> 3
            bits = np.unpackbits(self.bitmap[lo:hi], bitorder="little")
            out[a - first:b - first] = bits[rel - 8 * lo:rel - 8 * lo + b - a].astype(bool)
        return out

    def mark_all(self, index: np.ndarray) -> None:
        """Marks these indices answered (the connect scan's verdicts, a batch at a time); indices
        of other shards' probes are not ours and are left out."""
        ordinal, mine = self.ordinals(np.asarray(index, dtype=np.uint64))
        ordinal = ordinal[mine]
        byte, bit = ordinal >> 3, (np.uint8(1) << (ordinal & 7).astype(np.uint8))
        np.bitwise_or.at(self.bitmap, byte, bit)

    def mark(self, index: int) -> None:
        self.mark_all(np.array([index], dtype=np.uint64))


def open_sender(path: str, ifname: str, l3: bool, l2_len: int, templates: bytes, kinds: np.ndarray,
                k0: int, k1: int, saddr: bytes, space: dict, seed: int, rate: float, probes: int = 1 << 62):
    """The sender for a send path: "xdp" (AF_XDP; an error where it cannot work), "packet"
    (sendmmsg on an AF_PACKET or raw IP socket) or "auto" (AF_XDP where the kernel and the
    interface allow it and the stage has XDP_FROM_PROBES probes or more, else sendmmsg).
    AF_XDP needs frames with a link layer (not l3)."""
    if path not in SEND_PATHS:
        raise InputError(f"bad send path {path!r}: choose one of {', '.join(SEND_PATHS)}")
    if path == "auto" and probes < XDP_FROM_PROBES:
        path = "packet"
    if path != "packet" and not l3:
        try:
            return XdpSender(ifname, l2_len, templates, kinds, k0, k1, saddr, space, seed, rate)
        except PermissionError:
            raise InputError("raw sockets need root (or CAP_NET_RAW): run as root, or use -sT") from None
        except OSError as e:
            if path == "xdp":
                raise EnvironmentFault(f"--send-path xdp: {e.strerror or e} (use --send-path packet or auto)") from None
    elif path == "xdp":
        raise EnvironmentFault(f"--send-path xdp needs an Ethernet interface; {ifname} is reached through the "
                         "kernel's IP path (use --send-path packet or auto)")
    try:
        return ProbeSender(ifname, l3, l2_len, templates, kinds, k0, k1, saddr, space, seed, rate)
    except PermissionError:
        raise InputError("raw sockets need root (or CAP_NET_RAW): run as root, or use -sT") from None


def emit_rows(summary: ScanSummary, sink, rows: np.ndarray) -> None:
    """Hands rows to the sink, counting them by state in the summary."""
    counts = np.bincount(rows["state"])      # (per reply batch: np.unique hashes, slower)
    for code in np.flatnonzero(counts).tolist():
        name = STATE_NAMES[code]
        summary.states[name] = summary.states.get(name, 0) + int(counts[code])
    sink(rows)


class Scan:
    """A raw-socket scan of config.space: every technique whose probes are in the space's
    Probes (e.g. SYN and UDP together), in one pass over a random permutation."""

    def __init__(self, config: ScanConfig, resume: StageCheckpoint | None = None):
        self.config = config
        self.space = config.space
        self.resume = resume
        # A fixed-rate scan goes window by window beyond the bitmap's cap; the adaptive one cannot.
        self.tracker = Tracker(config, resume.bitmap if resume else None, resume.base if resume else 0,
                               windowed=not config.windowed)
        self.summary = ScanSummary()
        self.answered_before = (resume.answered if resume.answered >= 0 else self.tracker.count) if resume else 0
        self._stop = threading.Event()
        self.key = resume.key if resume else os.urandom(16)
        self.sender: Any = None
        self.window: Any = None
        self.timed_out = False          # --host-timeout ended the scan
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
        self.sender = open_sender(cfg.send_path, route.ifname, l3, l2_len, templates, kinds, k0, k1,
                                  saddr, space.arrays(), cfg.seed, cfg.rate, cfg.positions()[2])
        self.summary.send_path = self.sender.path
        # The kernel's capture ring is allocated at start (about 20 ms per 8 MiB): sized to the scan.
        ring = (8 << 20) if space.size <= (1 << 20) else (64 << 20)
        # The kernel hands replies over in blocks, when one fills or after timeout_ms. The window
        # wants them soon (its round trips include the wait), but each block costs the capture
        # thread Python work (a -p- scan: ~600 blocks at 1 ms): 4 ms, or 1 ms when probes go a
        # few at a time (-T0..-T2, a small --max-parallelism), each waiting for its reply.
        timeout_ms = 10 if not cfg.windowed else 1 if cfg.timing.max_window < SMALL_WINDOW else 4
        try:
            capture = Capture.open(route.ifname, space.probes.bpf(space.family, route.src), buffer_bytes=ring,
                                   timeout_ms=timeout_ms)
        except BaseException:
            self.sender.close()
            raise
        parser = ReplyParser(k0, k1, saddr, capture.link_header_len, kinds, space.arrays(), templates, l2_len)
        parser.data_length = len(space.probes.padding)
        parser.source_port = space.probes.source_port

        trace, began = cfg.trace, time.monotonic()
        window = self.window = Window(cfg.timing) if cfg.windowed else None
        # Per probe, for the window: when it was first sent and how many times (small scans).
        self._sent_at: Any = np.zeros(space.size, np.float32) if window and space.size <= PER_PROBE_UP_TO else None
        self._tries: Any = np.zeros(space.size, np.uint8) if self._sent_at is not None else None
        self._replied = threading.Event()

        def on_batch(data, meta):
            rows = parser.parse(data, meta)
            if len(rows):
                fresh = self.tracker.first_seen(rows)
                self.summary.duplicates += len(rows) - len(fresh)
                if len(fresh):
                    if window is not None:
                        self._account(window, fresh["index"], time.monotonic() - began)
                    if trace is not None:
                        for text in reply_lines(fresh, route.src):
                            trace("RCVD", time.monotonic() - began, text)
                    self.summary.replies += len(fresh)
                    emit_rows(self.summary, sink, fresh)

        start, step, count = cfg.positions()
        self.summary.probes = count
        capture.start(on_batch)
        try:
            first_attempt, position = self.cursor
            if window is not None:
                self._send_windowed(window, began, start)
            elif self.tracker.windowed:
                self._send_by_windows(sink, first_attempt, position)
            for attempt in range(first_attempt, cfg.retries + 1):
                if window is not None or self.tracker.windowed:
                    break
                if attempt > first_attempt:
                    self._wait(min(cfg.wait, 0.5))       # let replies to the last pass arrive
                if self._stop.is_set() or (attempt and self.complete()):
                    break
                skip = self.tracker.bitmap if attempt or self.resume else None
                self._send_pass(cfg.rate, position if attempt == first_attempt else start, step, skip, attempt)
            if not self._stop.is_set():
                self.cursor = (cfg.retries + 1, start)
            if not self._stop.is_set() and "udp" in space.probes.protos and cfg.udp_rounds \
                    and not self.tracker.windowed:
                self._slow_udp_rounds()
            if not self.tracker.windowed or self._stop.is_set():    # (each window had its own wait)
                self._wait(cfg.wait)
        finally:
            self.summary.interrupted = self._stop.is_set()
            capture.stop()
            self.summary.sent = self.sender.sent if self.sender is not None else 0
            if self.sender is not None and self.sender.path == "xdp":
                self.sender.close()      # an AF_XDP queue takes one socket: free it for the next stage
            elif self.sender is not None:    # the kernel's release takes ~10 ms: not on this thread's way
                threading.Thread(target=self.sender.close, name="sender-close", daemon=True).start()
            # Replies that match no probe of ours: a wrong cookie, or a port/address never probed.
            self.summary.bad_cookie = parser.bad_cookie + parser.not_in_scan
            self.summary.suspected_forgeries = parser.forged
            received, dropped, _ = capture.stats()
            self.summary.pcap_received, self.summary.pcap_dropped = received, dropped
            capture.release()
        if not self.summary.interrupted and not self.timed_out:
            self._emit_unanswered(sink, count)
        self.summary.elapsed = time.monotonic() - began
        return self.summary

    def _account(self, window, index: np.ndarray, now: float) -> None:
        """Replies to the window (capture thread): RTT samples of first sends, losses seen as
        answers to resends."""
        rtts, retried, max_try = np.zeros(0), 0, 0
        if self._tries is not None:
            tries = self._tries[index]
            rtts = now - self._sent_at[index[tries == 1]]
            retried = int(np.count_nonzero(tries > 1))
            max_try = int(tries.max()) - 1 if len(tries) else 0
        window.replies(now, rtts, len(index), retried, max_try)
        self._replied.set()

    def _send_windowed(self, window, began: float, start: int) -> None:
        """Sends while the window has room: fresh probes in order, each probe resent as soon as
        its timeout passes (as often as the window allows), until every probe is answered or
        out of tries; --host-timeout ends it early, --min-rate sends past a full window."""
        cfg, t, sender = self.config, self.config.timing, self.sender
        size, step = self.space.size, cfg.shard[1]
        sender.set_rate(t.rate)
        attempt, position = self.cursor
        # After a resumed first pass: one more sweep over every position for what is unanswered.
        skip_answered = bool(self.resume)
        pending: deque = deque()        # (sent at, indices, try) in sending order
        resend: deque = deque()         # (indices, try) whose timeout passed unanswered
        deadline = began + t.host_timeout if t.host_timeout else None
        sending = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self.timed_out = True
                break
            timeout = window.timeout
            while pending and pending[0][0] + timeout <= now:
                _, idx, tries = pending.popleft()
                idx = idx[~self.tracker.answered(idx)]
                window.expired(len(idx))
                if len(idx) and tries <= window.tries_allowed():
                    resend.append((idx, tries + 1))
            if self.complete():
                break
            room = window.room()
            if t.min_rate:
                room = max(room, int(t.min_rate * (now - began)) + 1 - sender.sent)
            if room <= 0:
                self._replied.clear()
                next_due = pending[0][0] + timeout - now if pending else 0.001
                self._replied.wait(min(max(next_due, 0.0002), 0.005))
                continue
            room = min(room, 4096)
            if resend:
                idx, tries = resend.popleft()
                if len(idx) > room:
                    resend.appendleft((idx[room:], tries))
                    idx = idx[:room]
                idx = idx[~self.tracker.answered(idx)]
            elif position < size:
                n = min(room, (size - position + step - 1) // step)
                idx, tries = cfg.at(position, n), attempt + 1
                position += n * step
                self.cursor = (attempt, position)
                if skip_answered or attempt:
                    idx = idx[~self.tracker.answered(idx)]
            elif attempt < 1 and skip_answered:
                attempt, position = 1, start
                continue
            elif pending:
                # Nothing left to send: batches whose probes are all answered leave now rather
                # than at their timeout (the scan ends when the unanswered ones have had theirs).
                pending = deque((sent, idx[~answered], tries) for sent, idx, tries in pending
                                for answered in [self.tracker.answered(idx)] if not answered.all())
                if not pending:
                    break
                self._replied.clear()
                self._replied.wait(min(max(pending[0][0] + timeout - now, 0.0002), 0.005))
                continue
            else:
                break
            if not len(idx):
                continue
            if self._tries is not None:
                first = self._tries[idx] == 0
                self._sent_at[idx[first]] = now - began
                self._tries[idx] = np.minimum(self._tries[idx].astype(np.uint16) + 1, 255)
            window.sent(len(idx))
            if cfg.trace is not None:       # before sending: a reply can be in (and traced) before send returns
                for i in idx.tolist():
                    cfg.trace("SENT", time.monotonic() - began, describe_frame(sender.build(i)))
            tick = time.monotonic()
            sender.send_indices(idx)
            sending += time.monotonic() - tick
            pending.append((time.monotonic(), idx, tries))
        self.summary.sending += sending

    def _send_by_windows(self, sink, first_attempt: int, position: int) -> None:
        """A shard larger than the bitmap, window by window (tracker.bits probes each): the first
        pass, the retries of what is still unanswered, --wait, and the window's no-response rows
        (with list_unanswered), then the next window. The cursor and the window's bitmap are the
        checkpoint."""
        cfg, tracker = self.config, self.tracker
        start, step, count = cfg.positions()
        base, resumed = tracker.base, self.resume is not None
        while base < count and not self._stop.is_set():
            stop = min(self.space.size, start + (base + tracker.bits) * step)
            for attempt in range(first_attempt, cfg.retries + 1):
                if attempt > first_attempt:
                    self._wait(min(cfg.wait, 0.5))
                if self._stop.is_set():
                    break
                origin = position if attempt == first_attempt else start + base * step
                if attempt == 0 and not resumed:
                    self._send_pass(cfg.rate, origin, step, None, attempt, stop)
                else:                        # the window's unanswered probes, by index
                    self._send_unanswered(origin, stop, attempt)
            if self._stop.is_set():
                return
            self.cursor = (cfg.retries + 1, stop)
            self._wait(cfg.wait)             # late replies, while this window's bits still count them
            if self._stop.is_set():          # (the resumed run waits and lists this window)
                return
            if cfg.list_unanswered:
                self._emit_window_unanswered(sink, base)
            base += tracker.bits
            resumed = False                  # the resumed window is done; the next ones start afresh
            if base < count:                 # the checkpoint is now the next window, from its start
                tracker.slide(base)
                first_attempt, position = 0, start + base * step
                self.cursor = (0, position)

    def _window_indices(self, origin: int, stop: int, chunk: int = 1 << 16):
        """(ordinal of the first, indices) of the positions origin, origin + step, ... < stop."""
        start, step, _ = self.config.positions()
        for position in range(origin, stop, chunk * step):
            n = min(chunk, (stop - position + step - 1) // step)
            yield (position - start) // step, self.config.at(position, n)

    def _send_unanswered(self, origin: int, stop: int, attempt: int) -> None:
        """Resends the unanswered probes of positions origin, origin + step, ... < stop."""
        start, step, _ = self.config.positions()
        for ordinal, indices in self._window_indices(origin, stop):
            if self._stop.is_set():
                return
            self._send_indices(self.config.rate, indices[~self.tracker.answered_run(ordinal, len(indices))])
            if not self._stop.is_set():      # (a stop may leave part of this chunk unsent)
                self.cursor = (attempt, start + (ordinal + len(indices)) * step)

    def _emit_window_unanswered(self, sink, base: int) -> None:
        start, step, _ = self.config.positions()
        stop = min(self.space.size, start + (base + self.tracker.bits) * step)
        for ordinal, indices in self._window_indices(start + base * step, stop, 1 << 20):
            indices = indices[~self.tracker.answered_run(ordinal, len(indices))]
            if len(indices):
                emit_rows(self.summary, sink, self._no_response_rows(indices))

    def _send_pass(self, rate, start, step, skip, attempt=None, stop=None):
        """Sends this shard's probes from position start on (to stop, the space's end by default)
        whose bit is not set in skip (None: all of them); keeps the cursor of pass `attempt` up to
        date for a checkpoint."""
        self.sender.set_rate(rate)
        chunk = 1 << 16 if rate <= 0 else max(256, int(rate / 20))   # Python wakes ~20 times/s
        position, stop = start, self.space.size if stop is None else stop
        began = time.monotonic()
        while position < stop and not self._stop.is_set():
            position = self.sender.send(position, stop, step, chunk, skip)
            if attempt is not None:
                self.cursor = (attempt, position)
        self.summary.sending += time.monotonic() - began

    def _send_indices(self, rate, indices: np.ndarray) -> None:
        """Sends the probes of these indices at rate, a chunk at a time (a stop is seen between
        chunks, as in _send_pass)."""
        self.sender.set_rate(rate)
        chunk = 1 << 16 if rate <= 0 else max(256, int(rate / 20))
        began = time.monotonic()
        for i in range(0, len(indices), chunk):
            if self._stop.is_set():
                break
            self.sender.send_indices(indices[i:i + chunk])
        self.summary.sending += time.monotonic() - began

    def checkpoint(self) -> StageCheckpoint:
        """Where this scan stands (after run() returned), for a resume file."""
        return StageCheckpoint(self.cursor[0], self.cursor[1], self.tracker.bitmap, self.key, self.tracker.base,
                               self.answered_before + self.summary.replies)

    def _wait(self, seconds):
        """Collects late replies until all are in or time is up; a second Ctrl-C
        (KeyboardInterrupt) cuts it short."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.complete():
            time.sleep(0.01)

    def _slow_udp_rounds(self):
        """Hosts that answered some UDP probes with port-unreachable but not others are likely
        rate-limiting ICMP (Linux: about one a second): resend their unanswered UDP probes at a
        pace they can answer, round after round while rounds still bring answers."""
        space = self.space
        udp_slot = np.array([t.proto == "udp" for t, *_ in space.probes.kinds], dtype=bool)[space.probes.slot_kind]
        count = self.tracker.size
        if not count or count > UDP_SLOW_UP_TO:
            return          # too big to reason about host by host; plain retries only
        # This shard's probes in sending order: element j is the probe of bit j.
        indices = np.concatenate(list(self.config.indices(1 << 20)))
        hosts, slots = space.locate(indices)
        hosts = hosts.astype(np.int64)
        for _ in range(self.config.udp_rounds):
            answered = self.tracker.answered_run(0, count)
            pending = udp_slot[slots] & ~answered
            limited = np.zeros(space.n_hosts, dtype=bool)
            limited[hosts[udp_slot[slots] & answered]] = True
            pending &= limited[hosts]
            if not pending.any() or self._stop.is_set():
                return
            n_hosts = len(np.unique(hosts[pending]))
            before = self.summary.replies
            rate = UDP_SLOW_RATE_PER_HOST * n_hosts
            # By index, in sending order (the permutation's, or -r's identity order).
            self._send_indices(min(rate, self.config.rate) if self.config.rate else rate, indices[pending])
            time.sleep(1.0 / UDP_SLOW_RATE_PER_HOST)
            if self.summary.replies == before:
                return

    def _emit_unanswered(self, sink, count):
        """The no-response state for every probe of this shard that got no reply (window by window
        beyond the bitmap's cap: listed already)."""
        if self.tracker.windowed and self.config.list_unanswered:
            return
        if not self.config.list_unanswered:
            # Counted, not listed: attributed to the first technique's no-response state.
            state = self.space.probes.kinds[0][0].no_response
            unanswered = count - self.summary.replies - self.answered_before
            self.summary.states[state] = self.summary.states.get(state, 0) + unanswered
            return
        answered = None if self.config.list_silent else self.answered_hosts()   # never windowed
        done = 0
        for indices in self.config.indices(1 << 20):
            hit = self.tracker.answered_run(done, len(indices))
            done += len(indices)
            indices = indices[~hit]
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
        """The no-response state code of each slot (by probe kind: no Python loop over the slots)."""
        probes = self.space.probes
        if getattr(self, "_silent_states", None) is None:
            by_kind = np.array([STATES[t.no_response] for t, *_ in probes.kinds], dtype=np.uint8)
            self._silent_states = by_kind[probes.slot_kind]
        return self._silent_states

    def _count_unanswered(self, indices: np.ndarray) -> None:
        for code, n in zip(*np.unique(self._no_response_states()[self.space.locate(indices)[1]],
                                      return_counts=True)):
            name = STATE_NAMES[int(code)]
            self.summary.states[name] = self.summary.states.get(name, 0) + int(n)

    def answered_hosts(self) -> np.ndarray:
        """Sorted numbers of the hosts that answered any probe; memory grows with the answers,
        not with the space (the shard's probes are walked a chunk at a time). Window by window,
        every unanswered probe was listed already: no host is left for silent_rows()."""
        if self.tracker.windowed:
            return np.zeros(0, dtype=np.uint64)
        found, done = [], 0
        for indices in self.config.indices(1 << 20):
            hit = self.tracker.answered_run(done, len(indices))
            done += len(indices)
            if hit.any():
                found.append(np.unique(self.space.locate(indices[hit])[0]))
        return np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.uint64)

    def silent_rows(self, answered: np.ndarray, chunk: int = 4096):
        """The no-response rows of every host that never answered, one host at a time, in address
        order (a whole scan of this one shard: -Pn output without a row per silent probe)."""
        if self.tracker.windowed:       # window by window: listed already
            return
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
    # Hosts that answered any probe (a resumed scan's bitmap already knows some): a set of the
    # hosts up, so that memory grows with the hosts found, not with the targets.
    seen: set = set()
    if resume is not None:
        done = 0
        for indices in scan.config.indices(1 << 20):
            answered = scan.tracker.answered_run(done, len(indices))
            done += len(indices)
            seen.update(space.locate(indices[answered])[0].tolist())

    def collect(rows):
        """Keeps the first answer from each host."""
        rows = rows[rows["state"] == STATES["up"]]
        hosts, first = np.unique(space.locate(rows["index"])[0].astype(np.int64), return_index=True)
        new = set(hosts.tolist()) - seen
        if new:
            seen.update(new)
            if sink:
                sink(rows[first[np.isin(hosts, np.fromiter(new, dtype=np.int64, count=len(new)))]])
    scan.complete = lambda: len(seen) >= space.n_hosts
    summary = runner(scan, collect) if runner else scan.run(collect)
    up = np.array(sorted(seen), dtype=np.uint64)
    if not len(up):
        return None, summary
    rows = space.rows(up * np.uint64(space.n_slots))
    if space.family == 6:
        return TargetSet.of_hosts6(rows["ip6"]), summary
    return TargetSet([(v, v) for v in rows["ip"].tolist()], space.family), summary
