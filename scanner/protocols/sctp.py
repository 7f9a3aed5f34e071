"""SCTP (nmap's -sY INIT scan and -sZ COOKIE-ECHO scan) as one protocol unit: the techniques with
nmap's state tables, the probe template, the capture filter clause. The compiled half (cookie
tag, CRC32c checksum, reply classifier) is ext/sctp.pxd.

nmap's tables: -sY: INIT-ACK -> open, ABORT -> closed, ICMP unreachable (type 3, codes 0, 1, 2,
3, 9, 10, 13) or no response -> filtered. -sZ: ABORT -> closed, ICMP unreachable -> filtered, no
response -> open|filtered (an open port drops a COOKIE-ECHO it has no association for)."""
from __future__ import annotations

import struct

from ..techniques import ICMP_ERRORS, Technique

INIT, COOKIE_ECHO = 1, 10

INIT_SCAN = Technique("sctpinit", "SCTP INIT Scan", "-sY", "sctp", 0,
                      {**ICMP_ERRORS, "init-ack": "open", "abort": "closed"}, "filtered")
COOKIE_ECHO_SCAN = Technique("sctpcookieecho", "SCTP COOKIE-ECHO Scan", "-sZ", "sctp", 0,
                             {**ICMP_ERRORS, "abort": "closed"}, "open|filtered")
TECHNIQUES = {t.flag: t for t in (INIT_SCAN, COOKIE_ECHO_SCAN)}


def template_l4(technique: Technique, sport: int = 0) -> bytes:
    """The SCTP packet of a probe with the per-probe fields zero (source port unless -g gives it,
    destination port, the cookie tag, the checksum: ext/sctp.pxd sctp_write). The chunks are
    nmap's: an INIT (a_rwnd 32768, 10 outbound and 2048 inbound streams), or a COOKIE-ECHO with
    4 bytes of cookie."""
    if technique is INIT_SCAN:
        chunk = struct.pack("!BBHIIHHI", INIT, 0, 20, 0, 32768, 10, 2048, 0x5ca77e12)
    else:
        chunk = struct.pack("!BBH4s", COOKIE_ECHO, 0, 8, b"scnr")
    return struct.pack("!HHII", sport, 0, 0, 0) + chunk


def bpf_clause(low: int, high: int) -> str:
    """Replies to our probes: SCTP packets to a cookie source port."""
    return f"(sctp dst portrange {low}-{high})"
