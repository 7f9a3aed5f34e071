"""An SCTP responder for the lab's target namespace (test infrastructure): this kernel has no SCTP
module, so raw sockets (IPPROTO_SCTP) answer as an SCTP stack with listeners on `open_ports`
would (RFC 9260), from the probed address:

- INIT to a listening port: INIT-ACK (verification tag: the INIT's initiate tag), with a state
  cookie; to any other port: ABORT (verification tag: the initiate tag, T bit clear).
- COOKIE-ECHO (no association exists): to a listening port, silently discarded (its cookie does
  not verify); to any other port, an out-of-the-blue packet: ABORT reflecting its verification
  tag (T bit set).
- anything else: no answer.

While a raw socket for a protocol is open, Linux sends no ICMP protocol-unreachable for it, so
the target answers SCTP as a host with SCTP does. Used by scanner.lab_services (--sctp)."""
from __future__ import annotations

import os
import socket
import struct

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
IPPROTO_SCTP = 132
INIT, INIT_ACK, ABORT, COOKIE_ECHO = 1, 2, 6, 10


def _table() -> list:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC = _table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return ~crc & 0xFFFFFFFF


def packet(sport: int, dport: int, vtag: int, chunk: bytes) -> bytes:
    """An SCTP packet with its checksum (CRC32c, least significant byte first on the wire)."""
    body = struct.pack("!HHII", sport, dport, vtag, 0) + chunk
    return body[:8] + struct.pack("<I", crc32c(body)) + body[12:]


def answer(sctp: bytes, open_ports) -> bytes | None:
    """The SCTP packet a stack listening on open_ports sends back for `sctp`, or None."""
    if len(sctp) < 16:
        return None
    sport, dport, vtag = struct.unpack("!HHI", sctp[:8])
    kind = sctp[12]
    if kind == INIT and vtag == 0 and len(sctp) >= 32:
        tag = struct.unpack("!I", sctp[16:20])[0]
        if dport in open_ports:
            cookie = struct.pack("!HH", 7, 4 + 16) + os.urandom(16)      # State Cookie parameter
            mine = int.from_bytes(os.urandom(4), "big") or 1
            init_ack = struct.pack("!BBHIIHHI", INIT_ACK, 0, 20 + len(cookie), mine, 65536, 10, 10, mine) + cookie
            return packet(dport, sport, tag, init_ack)
        return packet(dport, sport, tag, struct.pack("!BBH", ABORT, 0, 4))
    if kind == COOKIE_ECHO and dport not in open_ports:
        return packet(dport, sport, vtag, struct.pack("!BBH", ABORT, 1, 4))   # T bit: tag reflected
    return None


def sockets(ipv6: bool) -> list:
    """Raw SCTP sockets (IPv4, and IPv6 with ipv6) that receive what the target gets."""
    s4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_SCTP)
    s4.setblocking(False)
    out = [s4]
    if ipv6:
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_SCTP)
        s6.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        s6.setblocking(False)
        out.append(s6)
    return out


def answer_all(s: socket.socket, open_ports) -> None:
    """Answers every SCTP packet queued on s, from the address each was sent to."""
    while True:
        try:
            data, anc, _, peer = s.recvmsg(4096, socket.CMSG_SPACE(20))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            continue
        if s.family == socket.AF_INET:          # IPv4 raw sockets see the IP header
            if len(data) < 20:
                continue
            dst, sctp = data[16:20], data[(data[0] & 0x0F) * 4:]
            cmsg = [(socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=i4s4s", 0, dst, b"\0" * 4))]
        else:
            sctp, cmsg = data, []
            for level, typ, info in anc:
                if level == socket.IPPROTO_IPV6 and typ == IPV6_PKTINFO and len(info) >= 20:
                    cmsg = [(socket.IPPROTO_IPV6, IPV6_PKTINFO, struct.pack("=16si", info[:16], 0))]
        reply = answer(sctp, open_ports)
        if reply is not None:
            try:
                s.sendmsg([reply], cmsg, 0, (peer[0], 0) if s.family == socket.AF_INET else (peer[0], 0, 0, 0))
            except OSError:
                pass
