"""--packet-trace lines as nmap prints them: "SENT (0.0412s) TCP 198.18.0.1:40123 > 198.18.0.5:22 S
ttl=64 id=1234 iplen=60 seq=... win=64240" for each probe (decoded from the frame actually sent)
and "RCVD (0.0413s) TCP 198.18.0.5:22 > 198.18.0.1 SA ttl=64" for each reply (from the parsed
result: the parser keeps the reply's kind and TTL, not its every field)."""
from __future__ import annotations

import ipaddress
import struct

from .states import PROTO_NAMES, REASON_NAMES, addresses

_FLAG_LETTERS = "FSRPAUEC"       # nmap's order of TCP flag letters, bit 0 first
_ICMP = {0: "Echo reply", 8: "Echo request", 13: "Timestamp request", 128: "Echo request"}
_REPLY_FLAGS = {"syn-ack": "SA", "reset": "RA"}


def tcp_flags(bits: int) -> str:
    order = "SFRPAUEC"          # as nmap lists them: S, F, R, P, A, U, E, C
    return "".join(letter for letter in order if bits & (1 << _FLAG_LETTERS.index(letter)))


def describe_frame(frame: bytes, l2_len: int = 14) -> str:
    """One probe frame (link header, IP, transport) as nmap's SENT line describes it."""
    ip = frame[l2_len:]
    if not ip:
        return "?"
    if ip[0] >> 4 == 4:
        hl = (ip[0] & 15) * 4
        iplen, ident, ttl, proto = struct.unpack("!H H 2x B B", ip[2:10])
        src, dst = ipaddress.ip_address(ip[12:16]), ipaddress.ip_address(ip[16:20])
        extra = f"ttl={ttl} id={ident} iplen={iplen}"
    elif ip[0] >> 4 == 6:
        hl = 40
        plen, proto, ttl = struct.unpack("!H B B", ip[4:8])
        src, dst = ipaddress.ip_address(ip[8:24]), ipaddress.ip_address(ip[24:40])
        extra = f"hlim={ttl} tclass=0 flowlabel=0 payloadlen={plen}"
    else:       # ARP
        return f"ARP who-has {ipaddress.IPv4Address(frame[38:42])} tell {ipaddress.IPv4Address(frame[28:32])}"
    l4 = ip[hl:]
    if proto == 6:
        sport, dport, seq, _, _, flags, win = struct.unpack("!HHIIBBH", l4[:16])
        return f"TCP {src}:{sport} > {dst}:{dport} {tcp_flags(flags)} {extra} seq={seq} win={win}"
    if proto == 17:
        sport, dport, ulen = struct.unpack("!HHH", l4[:6])
        return f"UDP {src}:{sport} > {dst}:{dport} {extra}"
    kind, code, _, ident, seq = struct.unpack("!BBHHH", l4[:8])
    name = _ICMP.get(kind, f"type={kind}")
    return f"ICMP{'v6' if proto == 58 else ''} [{src} > {dst} {name} (type={kind}/code={code}) id={ident} seq={seq}] {extra}"


def reply_lines(rows, our_address: str) -> list:
    """RCVD lines for parsed replies (RESULT_DTYPE rows)."""
    out = []
    for addr, port, proto, reason, ttl in zip(addresses(rows), rows["port"].tolist(), rows["proto"].tolist(),
                                              rows["reason"].tolist(), rows["ttl"].tolist()):
        why = REASON_NAMES.get(reason, "?")
        name = PROTO_NAMES.get(proto, str(proto)).upper()
        if why in _REPLY_FLAGS:
            out.append(f"TCP {addr}:{port} > {our_address} {_REPLY_FLAGS[why]} ttl={ttl}")
        elif why == "udp-response":
            out.append(f"UDP {addr}:{port} > {our_address} ttl={ttl}")
        elif why == "arp-response":
            out.append(f"ARP reply {addr} is-at ?")
        else:
            out.append(f"ICMP [{addr} > {our_address} {why} for {name} port {port}] ttl={ttl}")
    return out
