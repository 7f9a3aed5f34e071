"""-O with nmap's database: nmap's OS detection probes (the six SEQ SYNs 100 ms apart, ECN, T1-T7,
U1, the two IE echoes; nmap.org/book/osdetect-methods.html), sent over a raw socket to one open and
one closed TCP port and a closed UDP port of every host at once, the replies read from raw sockets
behind a kernel BPF filter, and nmap's tests computed from them (osscan2.cc's makeTSeqFP,
processT1_7Resp, ...). IPv4 only: nmap's IPv6 OS detection is a trained classifier, not this.
Matching against the database is scanner/osdb.py."""
from __future__ import annotations

import ctypes
import ipaddress
import math
import random
import select
import socket
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

NUM_SEQ = 6
SEQ_GAP = 0.100                  # nmap sends the SEQ probes 100 ms apart
MAX_TRIES = 5                    # nmap's --max-os-tries default; a perfect match ends earlier
UNSUITABLE_TRIES = 2             # nmap's STANDARD_OS2_TRIES, when the print is not ideal
TUI_TRIES = 3                    # each of the other probes is sent at most three times
ECHO_SEQ = 295
UDP_IPID = 0x1042
UDP_PATTERN = 0x43               # 'C'
UDP_DATA_LEN = 300

# nmap's option sets (osscan2.cc prbOpts) and windows (prbWindowSz): 0-5 the SEQ/OPS probes,
# 6 ECN, 7-12 T2-T7.
PRB_OPTS = [bytes.fromhex(h) for h in (
    "03030a01020405b4080affffffff000000000402",
    "02040578030300040208" "0affffffff0000000000",
    "080affffffff0000000001010303050102040280",
    "0402080affffffff0000000003030a00",
    "020402180402080affffffff0000000003030a00",
    "020401090402080affffffff00000000",
    "03030a01020405b404020101",
    *["03030a0102040109080affffffff000000000402"] * 5,
    "03030f0102040109080affffffff000000000402",
)]
PRB_WIN = (1, 63, 4, 4, 16, 512, 3, 128, 256, 1024, 31337, 32768, 65535)
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 1, 2, 4, 8, 16, 32, 64, 128
# Probe numbers (offsets from the source port base, as nmap numbers them): 0-5 SEQ, 6-11 OPS,
# 12 ECN, 13-19 T1-T7.
P_OPS, P_ECN, P_T1 = 6, 12, 13
# T1-T7: (flags, DF, option/window index, port: open or closed)
T_PROBES = ((SYN, False, 0, "open"), (0, True, 7, "open"), (SYN | FIN | URG | PSH, False, 8, "open"),
            (ACK, True, 9, "open"), (SYN, False, 10, "closed"), (ACK, True, 11, "closed"),
            (FIN | PSH | URG, False, 12, "closed"))
IPID_CONSTANT, IPID_INCR, IPID_INCR2, IPID_BROKEN, IPID_RPI, IPID_RD, IPID_ZERO, IPID_UNKNOWN = range(8)


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(np.frombuffer(data, dtype=">u2").tolist())
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _ip(src: bytes, dst: bytes, proto: int, payload: bytes, ipid: int, ttl: int, df: bool, tos: int = 0) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(payload), ipid, 0x4000 if df else 0, ttl, proto, 0,
                      src, dst)
    return hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:] + payload


def tcp_packet(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int, window: int,
               opts: bytes, df: bool = False, reserved: int = 0, urp: int = 0) -> bytes:
    off = (20 + len(opts)) // 4
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (off << 4) | reserved, flags, window, 0, urp) + opts
    ck = _csum(src + dst + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)
    tcp = tcp[:16] + struct.pack("!H", ck) + tcp[18:]
    return _ip(src, dst, 6, tcp, random.getrandbits(16), random.randrange(37, 60), df)


def echo_packet(src: bytes, dst: bytes, ident: int, seq: int, code: int, datalen: int, df: bool, tos: int) -> bytes:
    icmp = struct.pack("!BBHHH", 8, code, 0, ident, seq) + bytes(datalen)
    icmp = icmp[:2] + struct.pack("!H", _csum(icmp)) + icmp[4:]
    return _ip(src, dst, 1, icmp, random.getrandbits(16), random.randrange(37, 60), df, tos)


def udp_packet(src: bytes, dst: bytes, sport: int, dport: int, ttl: int) -> tuple:
    """(packet, udp checksum) of nmap's U1 probe: 300 bytes of 'C', IP ID 0x1042."""
    data = bytes([UDP_PATTERN]) * UDP_DATA_LEN
    udp = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    ck = _csum(src + dst + struct.pack("!BBH", 0, 17, len(udp)) + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", ck) + udp[8:]
    return _ip(src, dst, 17, udp, UDP_IPID, ttl, False), ck


def tcp_options_text(opts: bytes) -> Optional[str]:
    """nmap's O string of TCP options (M5B4ST11NW7), None when an option is malformed."""
    out = []
    i = 0
    while i < len(opts):
        kind = opts[i]
        if kind == 0:
            out.append("L")
            break
        if kind == 1:
            out.append("N")
            i += 1
            continue
        if i + 1 >= len(opts):
            return None
        ln = opts[i + 1]
        if ln < 2 or i + ln > len(opts):
            return None
        q = opts[i + 2:i + ln]
        if kind == 2:
            if ln < 4:
                return None
            out.append(f"M{(q[0] << 8) + q[1]:X}")
        elif kind == 3:
            if ln < 3:
                return None
            out.append(f"W{q[0]:X}")
        elif kind == 4:
            out.append("S")
        elif kind == 8:
            if ln < 10:
                return None
            out.append("T" + ("1" if any(q[0:4]) else "0") + ("1" if any(q[4:8]) else "0"))
        i += ln
    return "".join(out)


def _tsval(opts: bytes) -> Optional[int]:
    i = 0
    while i < len(opts):
        kind = opts[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(opts) or opts[i + 1] < 2:
            break
        if kind == 8 and opts[i + 1] >= 10 and i + 6 <= len(opts):
            return int(struct.unpack("!I", opts[i + 2:i + 6])[0])
        i += opts[i + 1]
    return None


@dataclass
class Reply:
    """One reply packet, parsed once."""
    t: float
    ttl: int
    ipid: int
    df: bool
    total_len: int
    l4: bytes            # the IP payload
    ip_header: bytes


@dataclass
class HostState:
    """One host's OS scan in one try."""
    addr: str
    open_port: int              # -1: none
    closed_port: int
    closed_udp: int
    closed_known: bool = True       # the closed port came from the scan (not picked at random)
    seq_base: int = 0
    ack: int = 0
    icmp_id: int = 0
    udp_ttl: int = 0
    udp_ck: int = 0
    seq_sent: list = field(default_factory=lambda: [0.0] * NUM_SEQ)
    tcp: dict = field(default_factory=dict)          # probe number -> Reply (first)
    echo: dict = field(default_factory=dict)         # 0/1 -> Reply
    udp: Optional[Reply] = None
    retransmitted: set = field(default_factory=set)  # probe keys resent
    arrival: list = field(default_factory=list)      # SEQ probe numbers in order of arrival


def _mod_diff(a: int, b: int) -> int:
    return min((a - b) & 0xFFFFFFFF, (b - a) & 0xFFFFFFFF)


def _f32(x: float) -> float:
    return float(np.float32(x))


def _ipid_diffs(ipids: list) -> tuple:
    """nmap's get_diffs + 16-bit masking: (class or -1, diffs)."""
    diffs = []
    allzero = True
    for i in range(1, len(ipids)):
        if ipids[i - 1] != 0 or ipids[i] != 0:
            allzero = False
        d = (ipids[i] - ipids[i - 1]) & 0xFFFFFFFF
        diffs.append(d)
        if len(ipids) > 2 and d > 20000:
            return IPID_RD, diffs
    return (IPID_ZERO if allzero else -1), [d & 0xFFFF for d in diffs]


def ipid_class(ipids: list, localhost: bool = False) -> int:
    if len(ipids) < 2:
        return IPID_UNKNOWN
    cls, diffs = _ipid_diffs(ipids)
    if cls >= 0:
        return cls
    if localhost and all(d >= 2 for d in diffs):
        diffs = [d - 256 if d % 256 == 0 else d - 1 for d in diffs]
    if all(d == 0 for d in diffs):
        return IPID_CONSTANT
    if any(d > 1000 and (d % 256 != 0 or d >= 25600) for d in diffs):
        return IPID_RPI
    if all(d <= 5120 and d % 256 == 0 for d in diffs):
        return IPID_BROKEN
    if all(d % 2 == 0 for d in diffs):
        return IPID_INCR2
    if all(d <= 9 for d in diffs):
        return IPID_INCR
    return IPID_UNKNOWN


def _ipid_value(cls: int, ipids: list) -> Optional[str]:
    return {IPID_CONSTANT: f"{ipids[0]:X}" if ipids else None, IPID_INCR: "I", IPID_INCR2: "I", IPID_BROKEN: "BI",
            IPID_RPI: "RI", IPID_RD: "RD", IPID_ZERO: "Z"}.get(cls)


def initial_ttl(ttl: int) -> int:
    return 32 if ttl <= 32 else 64 if ttl <= 64 else 128 if ttl <= 128 else 255


def seq_test(h: HostState, localhost: bool = False) -> dict:
    """nmap's SEQ test (makeTSeqFP) from the SEQ replies."""
    test: dict = {}
    seqs, times, tss, ipids = [], [], [], []
    ts_class = "unknown"
    for i in h.arrival:                      # the TS class follows the order replies came in
        r = h.tcp[i]
        if not _is_synack(r):
            continue
        opts = r.l4[20:(r.l4[12] >> 4) * 4]
        tsv = _tsval(opts)
        if tsv is None:
            ts_class = "unsupported"
        elif tsv == 0:
            ts_class = "zero"
    for i in range(NUM_SEQ):
        r = h.tcp.get(i)
        if r is None or not _is_synack(r) or _seq(r) == 0:
            continue
        seqs.append(_seq(r))
        times.append(h.seq_sent[i])
        tss.append(_tsval(r.l4[20:(r.l4[12] >> 4) * 4]) or 0)
        ipids.append(r.ipid)
    n = len(seqs)
    seq_diffs = [_mod_diff(seqs[j], seqs[j - 1]) for j in range(1, n)]
    ts_diffs = [_mod_diff(tss[j], tss[j - 1]) for j in range(1, n)]
    usec = [max(1, int(round((times[j] - times[j - 1]) * 1e6))) for j in range(1, n)]
    rates = [_f32(d * 1000000.0 / u) for d, u in zip(seq_diffs, usec)]
    if n >= 4:
        avg = sum(rates) / (n - 1)
        gcd = 0
        for d in seq_diffs:
            gcd = math.gcd(gcd, d)
        if gcd == 0:
            seq_rate, index = 0, 0
        else:
            seq_rate = int(math.log(avg) / math.log(2.0) * 8 + 0.5) if avg > 0 else 0
            div = gcd if gcd > 9 else 1
            sd = sum((r / div - avg / div) ** 2 for r in rates) / (n - 2)
            sd = math.sqrt(sd)
            index = 0 if sd <= 1 else int(math.log(sd) / math.log(2.0) * 8 + 0.5)
        test.update(SP=f"{index:X}", GCD=f"{gcd:X}", ISR=f"{seq_rate:X}")
    tcp_ipids = ipids if n >= 3 else []
    closed = [h.tcp[P_T1 + k].ipid for k in (4, 5, 6) if P_T1 + k in h.tcp]
    icmp = [h.echo[k].ipid for k in (0, 1) if k in h.echo and ("ie", k) not in h.retransmitted]
    ti = ipid_class(tcp_ipids, localhost) if len(tcp_ipids) >= 3 else IPID_UNKNOWN
    ci = ipid_class(closed, localhost) if len(closed) >= 2 else IPID_UNKNOWN
    ii = ipid_class(icmp, localhost) if len(icmp) >= 2 else IPID_UNKNOWN
    for name, cls, ids in (("TI", ti, tcp_ipids), ("CI", ci, closed), ("II", ii, icmp)):
        v = _ipid_value(cls, ids)
        if v is not None:
            test[name] = v
    incr = (IPID_INCR, IPID_BROKEN, IPID_RPI)
    if ti in incr and ii in incr:
        avg_id = ((tcp_ipids[-1] - tcp_ipids[0]) & 0xFFFFFFFF) // (len(tcp_ipids) - 1)
        test["SS"] = "S" if icmp[0] < ((tcp_ipids[-1] + 3 * avg_id) & 0xFFFFFFFF) else "O"
    hz = 0.0
    if ts_class == "unknown" and n >= 2:
        for d, u in zip(ts_diffs, usec):
            hz += (d / (u / 1000000.0)) / (n - 1)
        if hz > 0:
            ts_class = "num"
    if ts_class == "zero":
        test["TS"] = "0"
    elif ts_class == "unsupported":
        test["TS"] = "U"
    elif ts_class == "num":
        if hz <= 5.66:
            tsv = 1
        elif 70 < hz <= 150:
            tsv = 7
        elif 150 < hz <= 350:
            tsv = 8
        else:
            tsv = int(0.5 + math.log(hz) / math.log(2.0))
        test["TS"] = f"{tsv:X}"
    return test


def _seq(r: Reply) -> int:
    return int(struct.unpack("!I", r.l4[4:8])[0])


def _ackn(r: Reply) -> int:
    return int(struct.unpack("!I", r.l4[8:12])[0])


def _flags(r: Reply) -> int:
    return r.l4[13]


def _is_synack(r: Reply) -> bool:
    return _flags(r) & (SYN | ACK) == SYN | ACK


def _opts(r: Reply) -> str:
    text = tcp_options_text(r.l4[20:(r.l4[12] >> 4) * 4])
    return "" if text is None else text


def _quirks(r: Reply) -> str:
    q = ""
    if r.l4[12] & 0x0F:
        q += "R"
    urp = int(struct.unpack("!H", r.l4[18:20])[0])
    if not _flags(r) & URG and urp:
        q += "U"
    return q


def t_test(h: HostState, k: int) -> dict:
    """nmap's T1-T7 (processT1_7Resp) for T(k+1); T1 from the first SEQ reply when there is one."""
    r = h.tcp.get(0) if k == 0 and 0 in h.tcp else h.tcp.get(P_T1 + k)
    if r is None:
        return {"R": "N"}
    t = {"R": "Y", "DF": "Y" if r.df else "N", "T": f"{r.ttl:X}"}
    if k:
        t["W"] = f"{int(struct.unpack('!H', r.l4[14:16])[0]):X}"
    seq, ack = _seq(r), _ackn(r)
    t["S"] = "Z" if seq == 0 else "A" if seq == h.ack else "A+" if seq == (h.ack + 1) & 0xFFFFFFFF else "O"
    t["A"] = "Z" if ack == 0 else "S" if ack == h.seq_base else "S+" if ack == (h.seq_base + 1) & 0xFFFFFFFF else "O"
    fl = _flags(r)
    t["F"] = "".join(c for bit, c in ((ECE, "E"), (URG, "U"), (ACK, "A"), (PSH, "P"), (RST, "R"), (SYN, "S"),
                                      (FIN, "F")) if fl & bit)
    if k:
        t["O"] = _opts(r)
    data = r.l4[(r.l4[12] >> 4) * 4:]
    t["RD"] = f"{zlib.crc32(data):X}" if fl & RST and data else "0"
    t["Q"] = _quirks(r)
    return t


def ecn_test(h: HostState) -> dict:
    r = h.tcp.get(P_ECN)
    if r is None:
        return {"R": "N"}
    fl = _flags(r)
    cc = "S" if fl & ECE and fl & CWR else "Y" if fl & ECE else "N" if not fl & CWR else "O"
    return {"R": "Y", "DF": "Y" if r.df else "N", "T": f"{r.ttl:X}",
            "W": f"{int(struct.unpack('!H', r.l4[14:16])[0]):X}", "O": _opts(r), "CC": cc, "Q": _quirks(r)}


def u1_test(h: HostState) -> tuple:
    """(U1 test, hop distance or -1) from the ICMP port unreachable quoting the U1 probe."""
    r = h.udp
    if r is None:
        return {"R": "N"}, -1
    icmp = r.l4
    q = icmp[8:]
    qhl = (q[0] & 0x0F) * 4
    qip_len, qid, qttl = int(struct.unpack("!H", q[2:4])[0]), int(struct.unpack("!H", q[4:6])[0]), q[8]
    qck = int(struct.unpack("!H", q[10:12])[0])
    udp = q[qhl:]
    t = {"R": "Y", "DF": "Y" if r.df else "N", "T": f"{r.ttl:X}", "IPL": f"{r.total_len:X}",
         "UN": f"{int(struct.unpack('!I', icmp[4:8])[0]):X}",
         "RIPL": "G" if qip_len == 20 + 8 + UDP_DATA_LEN else f"{qip_len:X}",
         "RID": "G" if qid == UDP_IPID else f"{qid:X}"}
    if qck == 0:
        t["RIPCK"] = "Z"
    else:
        t["RIPCK"] = "G" if _csum(q[:10] + b"\0\0" + q[12:20]) == qck else "I"
    uck = int(struct.unpack("!H", udp[6:8])[0]) if len(udp) >= 8 else 0
    t["RUCK"] = "G" if uck == h.udp_ck else f"{uck:X}"
    data = udp[8:]
    t["RUD"] = "G" if all(b == UDP_PATTERN for b in data) else "I"
    return t, h.udp_ttl - qttl + 1


def ie_test(h: HostState) -> dict:
    if 0 not in h.echo or 1 not in h.echo:
        return {"R": "N"}
    a, b = h.echo[0], h.echo[1]
    dfi = "Y" if a.df and b.df else "S" if a.df and not b.df else "N" if not a.df and not b.df else "O"
    ca, cb = a.l4[1], b.l4[1]
    cd = ("Z" if ca == 0 else f"{ca:X}") if ca == cb else "S" if (ca, cb) == (9, 0) else "O"
    last = max((a, b), key=lambda r: r.t)
    return {"R": "Y", "DFI": dfi, "T": f"{last.ttl:X}", "CD": cd}


def make_fingerprint(h: HostState, localhost: bool = False) -> tuple:
    """({test: {attr: value}}, distance) of one host, as nmap's makeFP leaves it."""
    fp: dict = {"SEQ": seq_test(h, localhost)}
    if h.open_port >= 0:
        ops, win = {}, {}
        for i in range(NUM_SEQ):
            r = h.tcp.get(i) or h.tcp.get(P_OPS + i)
            if r is not None:
                ops[f"O{i + 1}"] = _opts(r)
                win[f"W{i + 1}"] = f"{int(struct.unpack('!H', r.l4[14:16])[0]):X}"
        if len(ops) == NUM_SEQ:
            fp["OPS"], fp["WIN"] = ops, win
        fp["ECN"] = ecn_test(h)
    for k in range(7):
        if k < 4 and h.open_port < 0:
            continue
        t = t_test(h, k)
        if k >= 4 and t["R"] == "N" and not h.closed_known:
            continue                # nmap leaves T5-T7 out then, rather than R=N
        fp[f"T{k + 1}"] = t
    fp["U1"], distance = u1_test(h)
    fp["IE"] = ie_test(h)
    for name in ("ECN", "T1", "T2", "T3", "T4", "T5", "T6", "T7", "U1", "IE"):
        t = fp.get(name) or {}
        if t.get("T") is None:
            continue
        ttl = int(t["T"], 16)
        if distance != -1:
            t["T"] = f"{ttl + distance - 1:X}"
        else:
            t["TG"] = f"{initial_ttl(ttl):X}"
            del t["T"]
    return fp, distance


# ---------------------------------------------------------------- sending and receiving

SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
HOST_GROUP = 256                 # hosts probed at once (6 SYNs each per 100 ms SEQ round)


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def _attach_filter(sock: socket.socket, expr: str) -> None:
    """A kernel BPF filter on a raw IPv4 socket (the packet starts at the IP header: DLT_RAW)."""
    import pcapy
    prog = pcapy.compile(pcapy.DLT_RAW, 65535, expr, 1, 0).get_bpf()
    arr = (_SockFilter * len(prog))(*[_SockFilter(*ins) for ins in prog])
    fprog = _SockFprog(len(prog), ctypes.cast(arr, ctypes.POINTER(_SockFilter)))
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.setsockopt(sock.fileno(), socket.SOL_SOCKET, SO_ATTACH_FILTER, ctypes.byref(fprog),
                         ctypes.sizeof(fprog))
    if rc != 0:
        raise OSError(ctypes.get_errno(), "SO_ATTACH_FILTER")


def _source_for(addr: str) -> str:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((addr, 9))            # a route lookup; nothing is sent
        return str(s.getsockname()[0])
    finally:
        s.close()


def _is_local(addr: str, src: str) -> bool:
    return ipaddress.ip_address(addr).is_loopback or addr == src


class OsScan:
    """nmap's OS probes to many hosts at once; run() -> {addr: (fingerprint, distance, tries)}."""

    def __init__(self, hosts: list, matcher=None, max_tries: int = MAX_TRIES):
        """hosts: [(addr, open_port or -1, closed_port, closed_known, closed_udp_port)];
        matcher(addr, fp, distance, tries) -> True when no further try is needed."""
        self.hosts = hosts
        self.matcher = matcher
        self.max_tries = max_tries
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def run(self) -> dict:
        results: dict = {}               # addr -> list of (fp, distance)
        pending = list(self.hosts)
        for attempt in range(self.max_tries):
            if not pending or self._stop.is_set():
                break
            if attempt:
                time.sleep(0.5)
            done = self._try(pending)
            still = []
            for spec in pending:
                fp, dist = done[spec[0]]
                results.setdefault(spec[0], []).append((fp, dist))
                if self.matcher is None or not self.matcher(spec[0], fp, dist, len(results[spec[0]])):
                    still.append(spec)
            pending = still
        return results

    def _try(self, hosts: list) -> dict:
        tcp_base = 33000 + random.randrange(32261 - 32)
        udp_sport = 33000 + random.randrange(32261)
        states = {}
        for addr, op, cp, known, cu in hosts:
            h = HostState(addr, op, cp, cu, known, seq_base=random.getrandbits(32), ack=random.getrandbits(32),
                          icmp_id=random.randrange(0, 0xFFFE), udp_ttl=int(time.time()) % 14 + 51)
            states[addr] = h
        send = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        rtcp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
        ricmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        try:
            _attach_filter(rtcp, f"tcp and dst portrange {tcp_base}-{tcp_base + 19}")
            _attach_filter(ricmp, "icmp and (icmp[0] = 0 or (icmp[0] = 3 and icmp[1] = 3))")
            for s in (rtcp, ricmp):
                try:                    # past net.core.rmem_max: the SEQ replies come in bursts
                    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
                except OSError:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            srcs = {a: socket.inet_aton(_source_for(a)) for a in states}
            stop = threading.Event()
            rx = threading.Thread(target=self._receive, args=(rtcp, ricmp, states, tcp_base, udp_sport, stop),
                                  name="os-probe-rx", daemon=True)
            rx.start()
            try:
                self._send_all(send, states, srcs, tcp_base, udp_sport)
            finally:
                stop.set()
                rx.join()
        finally:
            for s in (send, rtcp, ricmp):
                s.close()
        out = {}
        for addr, h in states.items():
            src = socket.inet_ntoa(srcs[addr])
            out[addr] = make_fingerprint(h, _is_local(addr, src))
        return out

    def _send_all(self, send, states: dict, srcs: dict, tcp_base: int, udp_sport: int) -> None:
        def tcp(h, n, dport, seq, ack, flags, win_idx, df=False, reserved=0, urp=0):
            pkt = tcp_packet(srcs[h.addr], socket.inet_aton(h.addr), tcp_base + n, dport, seq & 0xFFFFFFFF,
                             ack, flags, PRB_WIN[win_idx], PRB_OPTS[win_idx], df, reserved, urp)
            send.sendto(pkt, (h.addr, 0))

        hosts = list(states.values())
        opened = [h for h in hosts if h.open_port >= 0]
        t0 = time.monotonic()
        for i in range(NUM_SEQ):                       # SEQ: 100 ms apart, every host each time
            for h in opened:
                tcp(h, i, h.open_port, h.seq_base + i, h.ack, SYN, i)
                h.seq_sent[i] = time.time()
            self._sleep_until(t0 + SEQ_GAP * (i + 1))
        rtt = 0.05
        for h in opened:
            got = [h.tcp[i].t - h.seq_sent[i] for i in range(NUM_SEQ) if i in h.tcp]
            rtt = max([rtt] + got)
        wait = min(1.0, max(0.2, 4 * rtt))

        def missing(h) -> list:
            out = []
            if not {0, 1} <= set(h.echo):
                out += [("ie", 0), ("ie", 1)]
            if h.udp is None:
                out.append(("u1", 0))
            if h.open_port >= 0:
                out += [("ops", i) for i in range(NUM_SEQ) if i not in h.tcp and P_OPS + i not in h.tcp]
                if P_ECN not in h.tcp:
                    out.append(("ecn", 0))
                out += [("t", k) for k in range(4) if P_T1 + k not in h.tcp and not (k == 0 and 0 in h.tcp)]
            out += [("t", k) for k in range(4, 7) if P_T1 + k not in h.tcp]
            return out

        sent_count: dict = {}
        for _round in range(TUI_TRIES):
            if self._stop.is_set():
                break
            any_sent = False
            for h in hosts:
                for key in missing(h):
                    c = sent_count.get((h.addr, key), 0)
                    if c >= TUI_TRIES:
                        continue
                    if c:
                        h.retransmitted.add(key)
                    sent_count[(h.addr, key)] = c + 1
                    any_sent = True
                    kind, n = key
                    if kind == "ie":
                        pkt = echo_packet(srcs[h.addr], socket.inet_aton(h.addr), (h.icmp_id + n) & 0xFFFF,
                                          ECHO_SEQ + n, 9 if n == 0 else 0, 120 if n == 0 else 150, n == 0,
                                          0 if n == 0 else 0x04)
                        send.sendto(pkt, (h.addr, 0))
                    elif kind == "u1":
                        pkt, h.udp_ck = udp_packet(srcs[h.addr], socket.inet_aton(h.addr), udp_sport,
                                                   h.closed_udp, h.udp_ttl)
                        send.sendto(pkt, (h.addr, 0))
                    elif kind == "ops":
                        tcp(h, P_OPS + n, h.open_port, h.seq_base, h.ack, SYN, n)
                    elif kind == "ecn":
                        tcp(h, P_ECN, h.open_port, h.seq_base, 0, CWR | ECE | SYN, 6, reserved=8, urp=63477)
                    else:
                        flags, df, idx, which = T_PROBES[n]
                        port = h.open_port if which == "open" else h.closed_port
                        tcp(h, P_T1 + n, port, h.seq_base, h.ack, flags, idx, df)
            if not any_sent:
                break
            end = time.monotonic() + wait
            while time.monotonic() < end and not self._stop.is_set():
                if not any(missing(h) for h in hosts):
                    break
                time.sleep(0.02)

    def _sleep_until(self, t: float) -> None:
        d = t - time.monotonic()
        if d > 0:
            self._stop.wait(d)

    @staticmethod
    def _receive(rtcp, ricmp, states: dict, tcp_base: int, udp_sport: int, stop) -> None:
        """Reads replies (only ours pass the kernel filters) until stop, then drains."""
        socks = [rtcp, ricmp]
        while True:
            ready, _, _ = select.select(socks, [], [], 0.05)
            if not ready and stop.is_set():
                return
            for s in ready:
                try:
                    pkt = s.recv(65535, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                _dispatch(pkt, time.time(), states, tcp_base, udp_sport)


def _dispatch(pkt: bytes, t: float, states: dict, tcp_base: int, udp_sport: int) -> None:
    if len(pkt) < 28:
        return
    hl = (pkt[0] & 0x0F) * 4
    src = socket.inet_ntoa(pkt[12:16])
    proto = pkt[9]
    h = states.get(src)
    r = Reply(t, pkt[8], int(struct.unpack("!H", pkt[4:6])[0]), bool(pkt[6] & 0x40),
              int(struct.unpack("!H", pkt[2:4])[0]), pkt[hl:], pkt[:hl])
    if proto == 6 and h is not None and len(r.l4) >= 20:
        n = int(struct.unpack("!H", r.l4[2:4])[0]) - tcp_base
        if 0 <= n < NUM_SEQ:
            if n in h.tcp or (r.ipid and any(h.tcp[i].ipid == r.ipid for i in h.arrival)):
                return          # a duplicate
            h.tcp[n] = r
            h.arrival.append(n)
        elif NUM_SEQ <= n < P_T1 + 7 and n not in h.tcp:
            h.tcp[n] = r
    elif proto == 1 and len(r.l4) >= 8:
        typ, code = r.l4[0], r.l4[1]
        if typ == 0 and h is not None:
            k = (int(struct.unpack("!H", r.l4[4:6])[0]) - h.icmp_id) & 0xFFFF
            if k in (0, 1) and k not in h.echo:
                h.echo[k] = r
        elif typ == 3 and code == 3 and len(r.l4) >= 8 + 20 + 8:
            q = r.l4[8:]
            qhl = (q[0] & 0x0F) * 4
            dst = socket.inet_ntoa(q[16:20])
            h = states.get(dst)
            if h is None or h.udp is not None or len(q) < qhl + 8:
                return
            sport, dport = struct.unpack("!HH", q[qhl:qhl + 4])
            if sport == udp_sport and dport == h.closed_udp:
                h.udp = r


# ---------------------------------------------------------------- from the scan's rows to nmap's report

UNRELIABLE = "Warning: OSScan results may be unreliable because we could not find at least 1 open and 1 closed port"
SUBMIT = "(If you know what OS is running on it, see https://nmap.org/submit/ )."
MAX_CLASS_MEMBERS = 8


def ports_of(rows, wrapped: frozenset = frozenset()) -> dict:
    """{addr: {"open": port, "closed": port, "unfiltered": port, "udp": port}} (the lowest of
    each, as nmap picks them) from RESULT_DTYPE rows; IPv4 hosts only. wrapped: (addr, port) that
    -sV found tcpwrapped, which nmap passes over for an open port when it can."""
    from .states import STATES, addresses
    out: dict = {}
    names = {(6, STATES["open"]): "open", (6, STATES["closed"]): "closed", (6, STATES["unfiltered"]): "unfiltered",
             (17, STATES["closed"]): "udp"}
    for addr, proto, state, port in zip(addresses(rows), rows["proto"].tolist(), rows["state"].tolist(),
                                        rows["port"].tolist()):
        key = names.get((proto, state))
        if key is None or ":" in addr:
            continue
        d = out.setdefault(addr, {})
        if key == "open" and (addr, port) in wrapped:
            key = "wrapped"
        if port and (key not in d or port < d[key]):
            d[key] = port
    for d in out.values():
        w = d.pop("wrapped", None)
        if w is not None and "open" not in d:
            d["open"] = w
    return out


def omit_reason(open_port: int, closed_known: bool, distance: int, udp_known: bool, got_u1: bool,
                udp_scanned: bool) -> Optional[str]:
    """nmap's OmitSubmissionFP: why the fingerprint is not ideal (None: it is)."""
    if open_port <= 0:
        return "Missing an open TCP port so results incomplete"
    if not closed_known:
        return "Missing a closed TCP port so results incomplete"
    if distance < -1:
        return f"Host distance ({distance} network hops) appears to be negative"
    if distance > 5:
        return f"Host distance ({distance} network hops) is greater than five"
    if not (udp_known or got_u1) and not udp_scanned:
        return "Didn't receive UDP response. Please try again with -sSU"
    return None


def classification(ranked: list) -> tuple:
    """nmap's populateClassification: ([(OsClass, accuracy)], number from perfect matches)."""
    out: list = []
    perfect = 0
    n_perfect_prints = sum(1 for acc, _ in ranked if acc == 1.0)
    for i, (acc, ref) in enumerate(ranked):
        for c in ref.classes:
            if any((c.vendor, c.family, c.gen, c.type) == (o.vendor, o.family, o.gen, o.type) for o, _ in out):
                continue
            if len(out) == 36 or (perfect and i >= n_perfect_prints):
                return out, perfect
            out.append((c, acc))
            if i < n_perfect_prints:
                perfect += 1
    return out, perfect


def class_lines(classes: list, n_perfect: int, guess: bool) -> list:
    """nmap's printosclassificationoutput: Device type, Running, OS CPE."""
    types: list = []
    cpes: list = []
    families: list = []          # [name, generations, accuracy]
    overflow = False
    for i, (c, acc) in enumerate(classes):
        if (not guess and i >= n_perfect) or acc <= classes[0][1] - 0.1 or (acc < 1.0 and i > 9):
            break
        if c.type not in types:
            if len(types) >= MAX_CLASS_MEMBERS:
                overflow = True
            else:
                types.append(c.type)
        for cpe in c.cpes:
            if cpe not in cpes:
                if len(cpes) >= MAX_CLASS_MEMBERS:
                    overflow = True
                else:
                    cpes.append(cpe)
        name = c.family if c.vendor == c.family else f"{c.vendor} {c.family}"
        fam = next((f for f in families if f[0] == name), None)
        if fam is not None:
            if c.gen and c.gen not in fam[1]:
                fam[1] = f"{fam[1]}|{c.gen}" if fam[1] else c.gen
            continue
        if len(families) >= MAX_CLASS_MEMBERS:
            overflow = True
            break
        families.append([name, c.gen, acc])
    if overflow or not families:
        return []
    running = ", ".join(f"{n}{' ' + g if g else ''}" + (f" ({math.floor(a * 100):.0f}%)" if i >= n_perfect else "")
                        for i, (n, g, a) in enumerate(families))
    out = ["Device type: " + "|".join(types), f"Running{' (JUST GUESSING)' if n_perfect == 0 else ''}: {running}"]
    if cpes:
        out.append("OS CPE: " + " ".join(cpes))
    return out


def wrapped_fingerprint(scan_line: str, fp: dict) -> list:
    from .osdb import fingerprint_text
    text = scan_line + fingerprint_text(fp).replace("\n", "")
    return ["OS:" + text[i:i + 71] for i in range(0, len(text), 71)]


def report(addr: str, fp: dict, distance: int, ranked: list, ports: dict, closed_port: int, udp_port: int,
           udp_scanned: bool, aggressive: bool, local: bool = False):
    """The OsGuess of one host from its matches ([(accuracy, Reference)]), with nmap's lines."""
    from .osguess import OsGuess
    open_port = ports.get("open", -1)
    closed_known = "closed" in ports
    reason = omit_reason(open_port, closed_known, distance, "udp" in ports, fp["U1"].get("R") == "Y",
                         udp_scanned)
    guess = aggressive or reason is not None
    perfect = [(a, r) for a, r in ranked if a == 1.0]
    unreliable = "open" not in ports or not ("closed" in ports or "unfiltered" in ports)
    lines: list = []
    if unreliable and len(perfect) <= 8:
        lines.append(UNRELIABLE)
    classes, n_perfect = classification(ranked)
    if len(perfect) <= 8:
        lines += class_lines(classes, n_perfect, guess)
    shown: list = []
    scan = (f"SCAN(V=scanner%E=4%OT={open_port if open_port > 0 else ''}%CT={closed_port if closed_known else ''}"
            f"%CU={udp_port if fp['U1'].get('R') == 'Y' else ''}%PV={'Y' if ipaddress.ip_address(addr).is_private else 'N'}"
            + (f"%DS={distance}" if distance != -1 else "") + f"%G={'N' if reason else 'Y'})")
    if perfect and len(perfect) <= 8:
        shown = perfect
        lines.append("OS details: " + ", ".join(r.name for _, r in perfect))
    elif len(perfect) > 8:
        lines.append("Too many fingerprints match this host to give specific OS details")
    elif ranked:
        shown = [(a, r) for i, (a, r) in enumerate(ranked) if i < 10 and a > ranked[0][0] - 0.10]
        if guess:
            lines.append("Aggressive OS guesses: " + ", ".join(f"{r.name} ({math.floor(a * 100):.0f}%)"
                                                             for a, r in shown))
        if reason is None:
            lines += [f"No exact OS matches for host {SUBMIT}", "TCP/IP fingerprint:"] + wrapped_fingerprint(scan, fp)
        else:
            lines.append("No exact OS matches for host (test conditions non-ideal).")
    elif reason is None:
        lines += [f"No OS matches for host {SUBMIT}", "TCP/IP fingerprint:"] + wrapped_fingerprint(scan, fp)
    else:
        lines += [f"OS fingerprint not ideal because: {reason}", "No OS matches for host"]
    shown_distance = 0 if local else distance          # nmap: a local address is 0 hops away
    if shown_distance != -1:
        lines.append(f"Network Distance: {shown_distance} hop{'' if shown_distance == 1 else 's'}")
    matches = [{"name": r.name, "accuracy": int(a * 100), "line": r.line,
                "classes": [{"type": c.type, "vendor": c.vendor, "osfamily": c.family, "osgen": c.gen,
                             "accuracy": int(a * 100), "cpe": list(c.cpes)} for c in r.classes]}
               for a, r in shown]
    used = ([("open", "tcp", open_port)] if open_port > 0 else []) + \
        ([("closed", "tcp", closed_port)] if closed_known else []) + \
        ([("closed", "udp", udp_port)] if fp["U1"].get("R") == "Y" or "udp" in ports else [])
    best = shown[0] if shown else (ranked[0] if ranked else None)
    c0 = best[1].classes[0] if best and best[1].classes else None
    from .osdb import fingerprint_text
    return OsGuess(best[1].name if best else "", int(best[0] * 100) if best else 0, c0.family if c0 else "",
                   c0.vendor if c0 else "", c0.gen if c0 else "", c0.type if c0 else "",
                   [cpe for c, _ in classes[:MAX_CLASS_MEMBERS] for cpe in c.cpes][:MAX_CLASS_MEMBERS],
                   None, [(m["name"], m["accuracy"], "", "", "", "", "") for m in matches[1:]],
                   matches=matches, ports_used=used, lines=lines, nmap_fingerprint=fingerprint_text(fp),
                   distance=shown_distance)


def detect(rows, db, limit: bool = False, aggressive: bool = False, udp_scanned: bool = False,
           on_scan=None, wrapped: frozenset = frozenset()) -> dict:
    """{addr: OsGuess} for the IPv4 hosts among the rows that have an open or closed TCP port:
    nmap's probes, tries until a perfect match (at most MAX_TRIES), the best try matched.
    on_scan(OsScan): called once the scan object exists (to stop it)."""
    from .osdb import GUESS_THRESHOLD, match
    per_host = ports_of(rows, wrapped)
    specs = []
    for addr, p in sorted(per_host.items()):
        if "open" not in p and "closed" not in p:
            continue
        if limit and not ("open" in p and ("closed" in p or "unfiltered" in p)):
            continue
        closed = p.get("closed", p.get("unfiltered", random.randrange(14781) + 30000))
        specs.append((addr, p.get("open", -1), closed, "closed" in p,
                      p.get("udp", random.randrange(14781) + 30000)))
    if not specs:
        return {}
    spec_of = {s[0]: s for s in specs}
    cache: dict = {}

    def ranked_of(fp) -> list:
        key = repr(sorted((k, sorted(v.items())) for k, v in fp.items()))
        if key not in cache:
            cache[key] = match(fp, db, GUESS_THRESHOLD)
        return cache[key]

    def finished(addr, fp, distance, tries) -> bool:
        ranked = ranked_of(fp)
        if ranked and ranked[0][0] == 1.0:
            return True
        p = per_host[addr]
        reason = omit_reason(p.get("open", -1), "closed" in p, distance, "udp" in p, fp["U1"].get("R") == "Y",
                             udp_scanned)
        return reason is not None and tries >= UNSUITABLE_TRIES

    tries: dict = {}
    for first in range(0, len(specs), HOST_GROUP):      # bounded bursts, as nmap's OS scan groups hosts
        scan = OsScan(specs[first:first + HOST_GROUP], finished)
        if on_scan is not None:
            on_scan(scan)
        tries.update(scan.run())
        if scan.stopped:
            break
    out = {}
    for addr, attempts in tries.items():
        # nmap's findBestFPs: the try whose best match is the most accurate (a perfect one first)
        best_fp, best_dist, best_ranked = attempts[0][0], attempts[0][1], ranked_of(attempts[0][0])
        for fp, dist in attempts:
            r = ranked_of(fp)
            if r and (not best_ranked or r[0][0] > best_ranked[0][0]):
                best_fp, best_dist, best_ranked = fp, dist, r
            if r and r[0][0] == 1.0:
                break
        s = spec_of[addr]
        out[addr] = report(addr, best_fp, best_dist, best_ranked, per_host[addr], s[2], s[4], udp_scanned,
                           aggressive, _is_local(addr, _source_for(addr)))
    return out
