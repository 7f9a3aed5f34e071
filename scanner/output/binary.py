"""masscan's binary format (-oB) and reading it back (--readscan FILE): a compact record per
open or closed port, 15 bytes for IPv4 (28 for IPv6), written and read a whole batch at a time
with numpy. The layout is masscan's (src/out-binary.c, src/in-binary.c): a 99-byte header
"masscan/1.1\\ns:START\\n" zero-padded, then records [type][length][fields, big-endian], then a
99-byte "masscan/1.1" trailer (which masscan reads as a record of type 'm'). masscan's format
knows only open and closed ports (and ARP): other states are not written."""
from __future__ import annotations

import time
from typing import Iterator, Tuple

import numpy as np

from ..errors import InputError
from ..states import PROTO_NUMBERS, REASONS, RESULT_DTYPE, STATES, host_keys
from .base import Writer, register

HEADER_SIZE = ord("a") + 2            # masscan's pseudo-record: 'm', 'a' (97 bytes follow)
OPEN4, CLOSED4, ARP4, BANNER9, OPEN6, CLOSED6 = 6, 7, 8, 9, 10, 11
# The reason byte is the reply's TCP flags in masscan's records.
SYN_ACK, RST_ACK, RST = 0x12, 0x14, 0x04

REC4 = np.dtype([("type", "u1"), ("length", "u1"), ("time", ">u4"), ("ip", ">u4"), ("proto", "u1"),
                 ("port", ">u2"), ("reason", "u1"), ("ttl", "u1")])
REC6 = np.dtype([("type", "u1"), ("length", "u1"), ("time", ">u4"), ("proto", "u1"), ("port", ">u2"),
                 ("reason", "u1"), ("ttl", "u1"), ("version", "u1"), ("ip6", "u1", (16,))])
assert REC4.itemsize == 15 and REC6.itemsize == 28


def header(start: float) -> bytes:
    return f"masscan/1.1\ns:{int(start)}\n".encode().ljust(HEADER_SIZE, b"\0")


TRAILER = b"masscan/1.1".ljust(HEADER_SIZE, b"\0")


def _flags(rows: np.ndarray) -> np.ndarray:
    reason = rows["reason"]
    out = np.zeros(len(rows), dtype=np.uint8)
    out[reason == REASONS["syn-ack"]] = SYN_ACK
    out[reason == REASONS["reset"]] = RST_ACK
    return out


def encode(rows: np.ndarray, when: int) -> bytes:
    """The records of the open and closed rows (and hosts up, as masscan's open icmp 0)."""
    state = rows["state"]
    up_icmp = (state == STATES["up"]) & np.isin(rows["proto"], [PROTO_NUMBERS["icmp"], PROTO_NUMBERS["icmpv6"]])
    rows = rows[(state == STATES["open"]) | (state == STATES["closed"]) | up_icmp]
    if not len(rows):
        return b""
    closed = rows["state"] == STATES["closed"]
    v6 = rows["ip6"].any(axis=1)
    out = []
    r4 = rows[~v6]
    if len(r4):
        rec = np.empty(len(r4), dtype=REC4)
        rec["type"] = np.where(closed[~v6], CLOSED4, OPEN4)
        rec["length"] = REC4.itemsize - 2
        rec["time"], rec["ip"], rec["proto"], rec["port"] = when, r4["ip"], r4["proto"], r4["port"]
        rec["reason"], rec["ttl"] = _flags(r4), r4["ttl"]
        out.append(rec.tobytes())
    r6 = rows[v6]
    if len(r6):
        rec = np.empty(len(r6), dtype=REC6)
        rec["type"] = np.where(closed[v6], CLOSED6, OPEN6)
        rec["length"] = REC6.itemsize - 2
        rec["time"], rec["proto"], rec["port"] = when, r6["proto"], r6["port"]
        rec["reason"], rec["ttl"], rec["version"], rec["ip6"] = _flags(r6), r6["ttl"], 6, r6["ip6"]
        out.append(rec.tobytes())
    return b"".join(out)


@register
class BinaryWriter(Writer):
    """-oB: masscan's binary format, a batch of records per write."""
    name, option = "binary", "-oB"

    def _raw(self, data: bytes) -> None:
        self.file.flush()
        self.file.buffer.write(data)

    def header(self):
        self._raw(header(self.info.start))

    def write_rows(self, rows):
        self._raw(encode(rows, int(time.time())))

    def footer(self, summary):
        self._raw(TRAILER)


def _rows_of(rec: np.ndarray, family: int) -> np.ndarray:
    rows = np.zeros(len(rec), dtype=RESULT_DTYPE)
    if family == 4:
        rows["ip"] = rec["ip"]
    else:
        rows["ip6"] = rec["ip6"]
    rows["proto"], rows["port"], rows["ttl"] = rec["proto"], rec["port"], rec["ttl"]
    closed = np.isin(rec["type"], [CLOSED4, CLOSED6])
    rows["state"] = np.where(closed, STATES["closed"], STATES["open"])
    icmp = np.isin(rec["proto"], [PROTO_NUMBERS["icmp"], PROTO_NUMBERS["icmpv6"]])
    udp = rec["proto"] == PROTO_NUMBERS["udp"]
    flags = rec["reason"]
    reason = np.where(flags & RST, REASONS["reset"], REASONS["syn-ack"])
    reason = np.where(udp, np.where(closed, REASONS["port-unreach"], REASONS["udp-response"]), reason)
    rows["reason"] = np.where(icmp, REASONS["echo-reply"], reason)
    rows["state"][icmp] = STATES["up"]
    return rows


def read_binary(path: str, batch: int = 1 << 16) -> Tuple[float, Iterator[np.ndarray]]:
    """(the scan's start time, RESULT_DTYPE batches) of a masscan binary file. A file of status
    records only (as scanner and masscan without banners write them) is decoded by numpy a batch
    at a time; banners and other records are stepped over one by one."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise InputError(f"cannot read --readscan file '{path}': {e.strerror or e}") from None
    head = f.read(HEADER_SIZE)
    if len(head) < HEADER_SIZE or not head.startswith(b"masscan/1.1"):
        f.close()
        raise InputError(f"--readscan file '{path}' is not a masscan binary file (no masscan/1.1 header)")
    start = 0.0
    text = head.split(b"\0", 1)[0].decode("ascii", "replace").split("\n")
    if len(text) > 1 and text[1].startswith("s:") and text[1][2:].isdigit():
        start = float(text[1][2:])
    return start, _records(f, path, batch)


def _records(f, path: str, batch: int) -> Iterator[np.ndarray]:
    with f:
        tail = b""
        while True:
            data = f.read(batch * REC4.itemsize)
            buf = tail + data
            if not buf:
                return
            out4, out6, at = [], [], 0
            n = len(buf)
            while at + 2 <= n:
                kind, length = buf[at], buf[at + 1]
                if kind & 0x80 or length & 0x80:        # multi-byte type or length (long banners)
                    at = _skip_varint_record(buf, at, path, final=not data)
                    if at < 0:
                        at = -at - 1
                        break
                    continue
                if at + 2 + length > n:
                    break
                if kind in (OPEN4, CLOSED4) and length == REC4.itemsize - 2:
                    # the fast path: a run of IPv4 status records, found and decoded by numpy
                    cand = np.frombuffer(buf, dtype=REC4, count=(n - at) // 15, offset=at)
                    bad = ~(((cand["type"] == OPEN4) | (cand["type"] == CLOSED4)) & (cand["length"] == 13))
                    count = int(np.argmax(bad)) if bad.any() else len(cand)
                    out4.append(cand[:count])
                    at += 15 * count
                    continue
                if kind in (OPEN6, CLOSED6) and length == REC6.itemsize - 2:
                    out6.append(np.frombuffer(buf, dtype=REC6, count=1, offset=at))
                elif kind not in (OPEN4, CLOSED4, OPEN6, CLOSED6, ARP4, ord("m"), 1, 2, 3, 4, 5, BANNER9, 12, 13):
                    raise InputError(f"--readscan file '{path}' is corrupt: unknown record type {kind}")
                at += 2 + length
            tail = buf[at:]
            if out4:
                yield _rows_of(np.concatenate(out4), 4)
            if out6:
                yield _rows_of(np.concatenate(out6), 6)
            if not data:
                if tail:
                    raise InputError(f"--readscan file '{path}' ends in the middle of a record")
                return


def _skip_varint_record(buf: bytes, at: int, path: str, final: bool) -> int:
    """The offset after a record whose type or length takes several bytes; -(at + 1) when the
    buffer ends before it does."""
    i = at
    while i < len(buf) and buf[i] & 0x80:
        i += 1
    i += 1
    length = 0
    while i < len(buf):
        length = (length << 7) | (buf[i] & 0x7F)
        if not buf[i] & 0x80:
            break
        i += 1
    i += 1
    if i + length > len(buf):
        if final:
            raise InputError(f"--readscan file '{path}' ends in the middle of a record")
        return -(at + 1)
    return i + length


def readscan(request) -> int:
    """scanner --readscan FILE -oX/-oJ/...: a masscan binary file (masscan's own or -oB's) into
    the request's outputs, a batch at a time (nmap's grouped formats hold the rows, as in a scan).
    Returns the exit code."""
    import sys

    from ..engine import ScanSummary
    from .base import ScanInfo
    from .outputs import Outputs, plan_outputs
    plan = plan_outputs(request.outputs, request.all_out)
    if not plan:
        raise InputError("--readscan needs an output: -oJ, -oX, -oN, -oG, --csv, -oL or -oB FILE (- for stdout)")
    # A first pass for what the headers say (the ports, how many hosts), then the rows.
    start, batches = read_binary(request.readscan)
    ports: set = set()
    hosts = 0
    for rows in batches:
        ports.update(np.unique(rows["port"]).tolist())
        keys = host_keys(rows)
        hosts += len(np.unique(keys))          # (a host in two batches counts twice: a header figure)
    info = ScanInfo(start=start or time.time(), command=request.command_line(), assume_up=True,
                    ports=tuple(sorted(ports)), n_hosts=hosts)
    outs = Outputs(plan, info, show_all=request.show_all, reason=request.reason)
    count = 0
    try:
        for rows in read_binary(request.readscan)[1]:
            outs.write(rows)
            count += len(rows)
    finally:
        outs.close(ScanSummary(replies=count))
    for problem in outs.errors():
        print(f"scanner: error: {problem}", file=sys.stderr)
    return 1 if outs.errors() else 0
