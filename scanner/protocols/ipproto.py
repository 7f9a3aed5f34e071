"""The IP protocol scan (nmap's -sO) as one protocol unit: its technique and nmap's state table,
the probe of each protocol, the capture filter. A slot's "port" is an IP protocol number (0-255);
the compiled half is ext/ipproto.pxd (ProbeKind.ip_scan) and ReplyParser._ipproto_reply.

nmap's table: any answer from the target in the probed protocol -> open (proto-response; ICMP:
the echo reply); ICMP protocol unreachable -> closed; ICMP port unreachable (the UDP probe) ->
open; other ICMP unreachable -> filtered; no response -> open|filtered. nmap's probes: ICMP echo,
IGMP membership query, TCP ACK to port 80, UDP to port 40125, SCTP INIT to port 80, else a bare
IP header (no payload)."""
from __future__ import annotations

import struct

import numpy as np

from ..errors import InputError
from ..states import PROTO_NUMBERS
from ..techniques import ACK, ICMP_ECHO, Technique

ICMP, IGMP, TCP, UDP, SCTP = 1, 2, 6, 17, 132
TCP_PORT, UDP_PORT = 80, 40125          # nmap's DEFAULT_TCP_PROBE_PORT / DEFAULT_UDP_PROBE_PORT (SCTP: 80)

IP_PROTO_SCAN = Technique("ipproto", "IPProto Scan", "-sO", "ip", 0,
                          {"proto-response": "open", "echo-reply": "open", "port-unreach": "open",
                           "proto-unreach": "closed", "icmp-unreach": "filtered"}, "open|filtered")
assert PROTO_NUMBERS["ip"] == 255       # the rows' proto for -sO (ext/ipproto.pxd PROTO_IP_SCAN)


def protocols(spec: "str | None") -> np.ndarray:
    """The protocol numbers of -p for -sO (nmap: -p names protocols, 0-255; all of them by default)."""
    if spec is None:
        return np.arange(256, dtype=np.uint16)
    from ..ports import port_lists
    numbers = port_lists(spec, None, tcp=True)[0]
    if len(numbers) and int(numbers.max()) > 255:
        raise InputError(f"bad protocol list '{spec}' for -sO: IP protocols are 0-255")
    return numbers


def kind_fields(number: int, family: int) -> tuple:
    """(IP protocol, TCP flags, ICMP type) of the probe kind for a protocol."""
    if family != 4:
        raise InputError("-sO (IP protocol scan) is for IPv4 targets in scanner")
    return number, ACK if number == TCP else 0, ICMP_ECHO if number == ICMP else 0


def template_l4(number: int, family: int, sport: int = 0) -> bytes:
    """What follows the IP header in the probe of a protocol, per-probe fields zero (written by
    ext/probes.pxd: source port, cookie, checksums)."""
    kind_fields(number, family)
    if number == ICMP:                     # echo request: the cookie goes in the first 4 body bytes
        return struct.pack("!BBHHH", ICMP_ECHO, 0, 0, 0, 0) + bytes(4) + b"scanner!"
    if number == TCP:
        return struct.pack("!HHIIBBHHH", sport, TCP_PORT, 0, 0, 5 << 4, ACK, 1024, 0, 0)
    if number == UDP:
        return struct.pack("!HHHH", sport, UDP_PORT, 8, 0)
    if number == SCTP:
        from .sctp import INIT_SCAN, template_l4 as sctp_l4
        sctp = sctp_l4(INIT_SCAN, sport)
        return sctp[:2] + struct.pack("!H", TCP_PORT) + sctp[4:]
    if number == IGMP:                     # membership query (0x11), group 0: fixed, checksum included
        query = struct.pack("!BBH4s", 0x11, 0, 0, bytes(4))
        total = sum(struct.unpack("!4H", query))
        total = (total & 0xFFFF) + (total >> 16)
        return query[:2] + struct.pack("!H", ~total & 0xFFFF) + query[4:]
    return b""
