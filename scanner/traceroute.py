"""--traceroute: after the port scan, one trace per host toward a probe known to answer (an open
TCP port, else a closed one, else a closed UDP port, else ICMP echo), as nmap does.

The probes are sent statelessly like every other probe: the compiled sender writes each one's hop
limit into the frame and adds it to the field that comes back (TCP sequence number, UDP source
port, ICMP id: ext/probes.pxd limit_hops), so a router's time-exceeded quote or the target's own
reply says which hop limit it answers, and the keyed cookie says that it answers us
(ReplyParser.parse_trace). Python only picks, round by round, which (host, hop limit) pairs to
send, as nmap does: each host's hop limits count down from the distance its reply TTL suggests
(and up past it while the target is not reached), silent hops are resent once, and a host whose
router at some hop limit another trace already holds stops there and shares that trace's hops
below (nmap's hop cache): the routers near us get one probe per hop, not one per host."""
from __future__ import annotations

import ipaddress
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .states import PROTO_NAMES, REASONS, addresses, host_keys

PROTO_NUMBERS = {"icmp": 1, "ipv6-icmp": 58}

MAX_TTL = 30                # hops tried at most (nmap: 50; the compiled limit is 64)
EXTEND = 4                  # hops added per round for a host not reached yet
ROUND_TIMEOUT = 1.0         # at most this long (and 4x the slowest answer, at least 0.25 s) a round
                            # waits for the answers still missing
RETRIES = 1                 # resends of a silent hop
DEFAULT_DISTANCE = 8        # first guess when the port scan saw no reply TTL
CHUNK_HOSTS = 8192          # hosts traced at once (about 1.2 KiB of state each)


@dataclass
class Hop:
    ttl: int
    addr: Optional[str]         # None: no answer at this hop limit
    rtt: Optional[float]        # milliseconds

    def to_dict(self) -> dict:
        return {"ttl": self.ttl, "ip": self.addr, "rtt": None if self.rtt is None else round(self.rtt, 3)}


@dataclass
class Trace:
    """One host's route: the probe used (nmap's "using port 80/tcp") and the hops in order, the
    last one the target itself when it was reached."""
    proto: str                  # tcp, udp or icmp
    port: Optional[int]         # None for ICMP
    hops: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"proto": self.proto, "port": self.port, "hops": [h.to_dict() for h in self.hops]}

    @classmethod
    def from_dict(cls, d: dict) -> "Trace":
        return cls(d["proto"], d.get("port"), [Hop(h["ttl"], h.get("ip"), h.get("rtt")) for h in d["hops"]])


def distance_guess(reply_ttl: int) -> int:
    """Hops to a host whose reply arrived with this TTL (it started at 32, 64, 128 or 255)."""
    if not reply_ttl:
        return DEFAULT_DISTANCE
    start = next(t for t in (32, 64, 128, 255) if t >= reply_ttl)
    return max(1, min(start - reply_ttl + 1, MAX_TTL))


class TraceCollector:
    """A sink consumer: per host, the best probe for its trace (open TCP > closed TCP > closed
    UDP > ICMP echo) and the TTL of a reply, from the scan's rows as they go by (a batch at a
    time: Python works per host of the batch, not per row)."""
    grouped = False
    error = None

    def __init__(self) -> None:
        self.best: dict = {}        # addr -> (rank, proto, port, ttl)
        self.lock = threading.Lock()
        rank = np.full(256, 3, dtype=np.uint8)          # reason -> rank, for TCP and UDP rows
        self._tcp, self._udp = rank.copy(), rank.copy()
        self._tcp[[REASONS["syn-ack"]]] = 0
        self._tcp[[REASONS["reset"], REASONS["conn-refused"]]] = 1
        self._udp[[REASONS["port-unreach"]]] = 2

    def write(self, rows) -> None:
        rows = rows[rows["reason"] != REASONS["no-response"]]
        if not len(rows):
            return
        rank = np.where(rows["proto"] == 6, self._tcp[rows["reason"]],
                        np.where(rows["proto"] == 17, self._udp[rows["reason"]], 3))
        keys = host_keys(rows)
        order = np.lexsort((rank, keys))                 # per host, its best row first
        first = order[np.unique(keys[order], return_index=True)[1]]
        rows, rank = rows[first], rank[first]
        with self.lock:
            for addr, r, proto, port, ttl in zip(addresses(rows), rank.tolist(), rows["proto"].tolist(),
                                                 rows["port"].tolist(), rows["ttl"].tolist()):
                name = PROTO_NAMES.get(proto, "") if r < 3 else "icmp"
                old = self.best.get(addr)
                if old is None or r < old[0]:
                    self.best[addr] = (r, name, port if r < 3 else 0, ttl or (old[3] if old else 0))

    def close(self, summary=None) -> None:
        pass

    def plan(self) -> dict:
        """addr -> (proto, port, distance guess)."""
        with self.lock:
            return {a: (proto, port, distance_guess(ttl)) for a, (_, proto, port, ttl) in self.best.items()}


def _technique(proto: str):
    from .techniques import DISCOVERY, SYN_SCAN, UDP_SCAN
    return {"tcp": SYN_SCAN, "udp": UDP_SCAN, "icmp": DISCOVERY["PE"]}[proto]


class Traceroute:
    """Traces every host of plan ({addr: (proto, port, distance guess)}, one address family)."""

    def __init__(self, plan: dict, family: int, interface: Optional[str] = None, rate: float = 0.0,
                 max_ttl: int = MAX_TTL, round_timeout: float = ROUND_TIMEOUT, retries: int = RETRIES,
                 packet_trace: Optional[Callable] = None):
        """packet_trace: --packet-trace's trace(direction, seconds, text), per probe and answer."""
        from .space import ScanSpace
        from .targets import TargetSet
        from .techniques import Probes
        self.family, self.interface, self.rate = family, interface, rate
        self.packet_trace = packet_trace
        self.max_ttl, self.round_timeout, self.retries = max_ttl, round_timeout, retries
        self.addrs = sorted(plan, key=lambda a: int(ipaddress.ip_address(a)))   # host number = rank
        slots = sorted({(plan[a][0], plan[a][1]) for a in self.addrs}, key=lambda s: (s[0], s[1]))
        self.slot_of = {s: i for i, s in enumerate(slots)}
        self.probes = Probes([(_technique(proto), port) for proto, port in slots])
        values = [int(ipaddress.ip_address(a)) for a in self.addrs]
        self.space = ScanSpace(TargetSet([(v, v) for v in values], family), self.probes)
        self.plan = plan
        self.slots = np.array([self.slot_of[(plan[a][0], plan[a][1])] for a in self.addrs], dtype=np.uint64)
        self.guess = np.array([min(plan[a][2], max_ttl) for a in self.addrs], dtype=np.int64)
        self._stop = threading.Event()
        self.sent = 0

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> dict:
        """{addr: Trace} of the hosts that answered at any hop."""
        from ._ext.cookie import split_key
        from ._ext.parser import ReplyParser
        from .capture import Capture
        from .engine import Scan, ScanConfig, open_sender
        n, top = len(self.addrs), self.max_ttl + 1
        if not n:
            return {}
        scan = Scan(ScanConfig(space=self.space, interface=self.interface, rate=self.rate))
        route, saddr, src_mac, dst_mac, l3 = scan._endpoints()
        templates, kinds, l2_len = self.probes.compile(self.family, src_mac, dst_mac, saddr)
        k0, k1 = split_key(os.urandom(16))
        sender = open_sender("packet", route.ifname, l3, l2_len, templates, kinds, k0, k1, saddr,
                             self.space.arrays(), 0, self.rate)
        try:
            capture = Capture.open(route.ifname, self.probes.bpf(self.family, route.src), buffer_bytes=4 << 20,
                                   timeout_ms=1)
        except BaseException:
            sender.close()
            raise
        parser = ReplyParser(k0, k1, saddr, capture.link_header_len, kinds, self.space.arrays(), templates, l2_len)
        n_slots = np.uint64(self.space.n_slots)
        sent_at = np.zeros((n, top))                       # wall clock, as pcap's timestamps
        tries = np.zeros((n, top), dtype=np.uint8)
        answered = np.zeros((n, top), dtype=bool)
        rtt = np.zeros((n, top))
        hop4 = np.zeros((n, top), dtype=np.uint32)
        hop6 = np.zeros((n, top, 16), dtype=np.uint8)
        final = np.full(n, 255, dtype=np.int64)            # the least hop limit the target answered
        lock, arrived = threading.Lock(), threading.Event()
        began = time.monotonic()

        def on_batch(data, meta):
            rows = parser.parse_trace(data, meta)
            if not len(rows):
                return
            if self.packet_trace is not None:
                for line in self._rcvd_lines(rows, route.src):
                    self.packet_trace("RCVD", time.monotonic() - began, line)
            host = (rows["index"] // n_slots).astype(np.int64)
            ttl = rows["ttl"].astype(np.int64)
            ok = (ttl < top) & (rows["index"] - host.astype(np.uint64) * n_slots == self.slots[host])
            rows, host, ttl = rows[ok], host[ok], ttl[ok]
            with lock:
                fin = rows["final"] == 1
                np.minimum.at(final, host[fin], ttl[fin])
                _, first = np.unique(host * top + ttl, return_index=True)
                first = first[~answered[host[first], ttl[first]]]
                h, t = host[first], ttl[first]
                answered[h, t] = True
                rtt[h, t] = (rows["time"][first] - sent_at[h, t]) * 1000.0
                hop4[h, t] = rows["hop"][first]
                hop6[h, t] = rows["hop6"][first]
            arrived.set()

        # nmap's way, in rounds: each host's hop limits count down from its distance guess, one
        # a round (and up past it while the target is not reached); a host whose hop at some hop
        # limit is a router another host's trace already holds at that hop limit stops counting
        # down: its hops below are that trace's (nmap's hop cache, "Hops 1-k are the same").
        low = np.zeros(n, dtype=np.int64)               # the least hop limit sent (0: none yet)
        high = np.zeros(n, dtype=np.int64)              # the highest
        self.owner = np.full(n, -1, dtype=np.int64)     # merged: hops below merged_at are owner's
        self.merged_at = np.zeros(n, dtype=np.int64)
        seen = np.zeros((n, top), dtype=bool)           # answers already looked at for merging
        cache: dict = {}                                # (hop limit, router) -> the trace that has it
        ttls = np.arange(top)
        capture.start(on_batch)
        try:
            while not self._stop.is_set():
                with lock:
                    ans, fin = answered.copy(), final.copy()
                    hops = hop4.copy() if self.family == 4 else hop6.copy()
                    slowest = float(rtt[ans].max()) / 1000.0 if ans.any() else 0.0
                self._merge(ans & ~seen, fin, hops, cache)
                seen |= ans
                resolved = ans | (tries > self.retries)
                idx = np.arange(n)
                mine = self.owner < 0
                want = np.zeros((n, top), dtype=bool)
                start = (low == 0) & mine
                want[idx[start], self.guess[start]] = True
                down = mine & (low > 1) & resolved[idx, low]
                want[idx[down], low[down] - 1] = True
                # Silent hops (not past the target, not below a merge), resent while tries remain.
                top_hop = np.where(fin < 255, fin, high)
                bottom = np.where(mine, low, self.merged_at)
                want |= (~ans & (tries > 0) & (tries <= self.retries) & (ttls[None, :] >= bottom[:, None])
                         & (ttls[None, :] <= top_hop[:, None]))
                up = (low > 0) & (fin == 255) & (high < self.max_ttl) & resolved[idx, high]
                new_high = np.where(up, np.minimum(high + EXTEND, self.max_ttl), high)
                want |= (ttls[None, :] > high[:, None]) & (ttls[None, :] <= new_high[:, None])
                low = np.where(start, self.guess, np.where(down, low - 1, low))
                high = np.maximum(np.where(start, self.guess, high), new_high)
                h, t = np.nonzero(want)
                if not len(h):
                    break
                indices = h.astype(np.uint64) * n_slots + self.slots[h]
                arrived.clear()
                with lock:
                    sent_at[h, t] = time.time()
                    tries[h, t] += 1
                sender.send_hop_limited(indices, t.astype(np.uint8))
                self.sent += len(h)
                if self.packet_trace is not None:
                    from .trace import describe_frame
                    for i, ttl in zip(indices.tolist(), t.tolist()):
                        self.packet_trace("SENT", time.monotonic() - began,
                                          describe_frame(sender.build_hop_limited(i, ttl)))
                deadline = time.monotonic() + min(self.round_timeout, max(0.25, 4 * slowest))
                while time.monotonic() < deadline and not self._stop.is_set():
                    with lock:
                        missing = ~answered[h, t] & (t <= np.where(final[h] < 255, final[h], top))
                    if not missing.any():
                        break
                    arrived.wait(0.01)
                    arrived.clear()
        finally:
            capture.stop()
            sender.close()
            capture.release()
        return self._traces(answered, rtt, hop4, hop6, final)

    def _rcvd_lines(self, rows, us: str) -> list:
        """--packet-trace's RCVD lines for answers (TRACE_DTYPE rows)."""
        out = []
        for row in rows:
            hop = (str(ipaddress.IPv4Address(int(row["hop"]))) if self.family == 4
                   else str(ipaddress.IPv6Address(bytes(row["hop6"]))))
            what = "the target's answer" if row["final"] else "TTL exceeded in transit"
            out.append(f"{hop} > {us} {what} to the probe with hop limit {int(row['ttl'])} "
                       f"for {self.addrs[int(row['index']) // self.space.n_slots]}")
        return out

    def _merge(self, fresh, final, hops, cache: dict) -> None:
        """Hosts whose newly answered router hop (below the target) another trace has at the same
        hop limit stop counting down there; the first trace to see a router keeps it."""
        for h, t in np.argwhere(fresh).tolist():        # host order: the lower host keeps a router
            if t >= final[h]:
                continue
            key = (t, hops[h, t].tobytes())
            other = cache.setdefault(key, h)
            if other != h and self.owner[h] < 0 and self._root(other) != h:
                self.owner[h], self.merged_at[h] = other, t

    def _root(self, h: int) -> int:
        while self.owner[h] >= 0:
            h = int(self.owner[h])
        return h

    def _source(self, h: int, t: int) -> int:
        """The trace whose hop t host h shows (its own, or the one it merged with below merged_at)."""
        while self.owner[h] >= 0 and t < self.merged_at[h]:
            h = int(self.owner[h])
        return h

    def _traces(self, answered, rtt, hop4, hop6, final) -> dict:
        out = {}
        for i, addr in enumerate(self.addrs):
            got = np.flatnonzero(answered[i])
            if not len(got):
                continue
            last = int(final[i]) if final[i] < 255 else int(got.max())
            proto, port, _ = self.plan[addr]
            hops = []
            for t in range(1, last + 1):
                j = self._source(i, t)
                if not answered[j, t]:
                    hops.append(Hop(t, None, None))
                    continue
                a = (str(ipaddress.IPv4Address(int(hop4[j, t]))) if self.family == 4
                     else str(ipaddress.IPv6Address(bytes(hop6[j, t]))))
                hops.append(Hop(t, a, float(max(rtt[j, t], 0.0))))
            if proto == "icmp":             # nmap names the protocol as nmap-protocols does
                out[addr] = Trace("icmp" if self.family == 4 else "ipv6-icmp", None, hops)
            else:
                out[addr] = Trace(proto, port, hops)
        return out


# ---------------------------------------------------------------- nmap's layouts

def trace_lines(addr: str, trace: Trace, earlier: dict) -> list:
    """nmap's TRACEROUTE section of a host (normal output); earlier: {addr: Trace} of the hosts
    printed before it, whose shared first hops nmap abbreviates ("Hops 1-2 are the same as for X")."""
    using = (f"proto {PROTO_NUMBERS.get(trace.proto, 1)}/{trace.proto}" if trace.port is None
             else f"port {trace.port}/{trace.proto}")
    out = ["", f"TRACEROUTE (using {using})"]
    hops = trace.hops
    shared, same_as = 0, ""
    for other, t in earlier.items():
        # The first k hops, up to one that answered, are the other trace's (silent where it was
        # silent): nmap then merges the two traces below that hop.
        k = j = 0
        while j < len(hops) - 1 and j < len(t.hops) and hops[j].addr == t.hops[j].addr and hops[j].addr != addr:
            j += 1
            if hops[j - 1].addr is not None:
                k = j
        if k > shared:
            shared, same_as = k, other
    rtts = [f"{h.rtt:.2f} ms" if h.addr is not None and h.rtt is not None else "..." for h in hops[shared:]]
    width = max([3] + [len(r) for r in rtts])
    out.append(f"{'HOP':<3} {'RTT':<{width}} ADDRESS")
    if shared:
        out.append("-   " + (f"Hop 1 is the same as for {same_as}" if shared == 1
                             else f"Hops 1-{shared} are the same as for {same_as}"))
    i = shared
    while i < len(hops):
        h = hops[i]
        if h.addr is None:                  # a run of silent hops: "3   ... 5"
            j = i
            while j + 1 < len(hops) and hops[j + 1].addr is None:
                j += 1
            out.append(f"{h.ttl:<3} ..." + (f" {hops[j].ttl}" if j > i else ""))
            i = j + 1
            continue
        out.append(f"{h.ttl:<3} {rtts[i - shared]:<{width}} {h.addr}")
        i += 1
    return out


def trace_xml(trace: Trace, names: Optional[dict] = None) -> str:
    """nmap's <trace> element of a host (answered hops only, as nmap writes them)."""
    from .output.nmap import quoteattr
    if trace.port is not None:
        head = f'<trace port="{trace.port}" proto="{trace.proto}">'
    else:                       # nmap 7.93 names ICMP, but writes no proto for ICMPv6
        head = f'<trace proto="{trace.proto}">' if trace.proto == "icmp" else "<trace>"
    hops = "".join(f'<hop ttl="{h.ttl}" ipaddr="{h.addr}" rtt="{h.rtt or 0:.2f}"'
                   + (f" host={quoteattr(names[h.addr])}" if names and h.addr in names else "") + "/>\n"
                   for h in trace.hops if h.addr is not None)
    return f"{head}\n{hops}</trace>\n"


def run_traceroute(session, collector: TraceCollector, family: int) -> dict:
    """The session's --traceroute stage: {addr: Trace}."""
    from . import events as ev
    from .privileges import can_raw_scan
    plan = collector.plan()
    if not plan or session.stopping:
        return {}
    if not can_raw_scan():
        session.emit(ev.Warning("--traceroute sends raw packets and needs root (or CAP_NET_RAW): skipped"))
        return {}
    r = session.request
    addrs, traces, sent, began = list(plan), {}, 0, time.monotonic()
    session.emit(ev.StageStarted("traceroute", len(plan), len(plan)))
    for first in range(0, len(addrs), CHUNK_HOSTS):        # memory: per chunk, not per scan
        if session.stopping:
            break
        tracer = Traceroute({a: plan[a] for a in addrs[first:first + CHUNK_HOSTS]}, family,
                            interface=r.interface, rate=session.timing.rate or 0.0,
                            packet_trace=session._trace if r.packet_trace else None)
        session._current = tracer
        try:
            traces.update(tracer.run())
        finally:
            session._current = None
        sent += tracer.sent
    session.emit(ev.Note(f"traceroute: {len(traces)} of {len(plan)} hosts traced ({sent} probes, "
                         f"{time.monotonic() - began:.2f}s)"))
    return traces


__all__ = ["Hop", "Trace", "TraceCollector", "Traceroute", "trace_lines", "trace_xml", "run_traceroute",
           "distance_guess"]
