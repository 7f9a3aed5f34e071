"""Target-side services for the lab (run inside the target namespace by scanner.lab).

    python -m scanner.lab_services --tcp 22,80,443 --udp 53 [--sctp 2905] [--ipv6]

TCP: listen on the wildcard address, accept and close.  UDP: answer every
datagram with b"scanner-lab\\n" (with the request's id where the port's protocol
echoes one, as a real DNS/NTP/SNMP server would: see udp_answer) *from the address
it was sent to* (IP_PKTINFO, IPV6_PKTINFO), because the target answers for a
whole prefix via a local route (IPv6: many addresses on lo) and the scanner must
see the reply come from the probed host.  --ipv6 adds IPv6-only sockets on the same ports.
Prints "ready" once every socket is bound; exits on SIGTERM or parent death.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import selectors
import signal
import socket
import struct
import sys
from typing import Any, cast

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux value; missing from Python's socket module
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)  # Linux values
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
PR_SET_PDEATHSIG = 1
REPLY = b"scanner-lab\n"


def _ports(s: str) -> list[int]:
    return [int(p) for p in s.split(",") if p.strip()]


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:
        pass  # the getppid() poll in the loop still covers it


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scanner.lab_services")
    ap.add_argument("--tcp", default="", help="comma-separated TCP ports to listen on")
    ap.add_argument("--udp", default="", help="comma-separated UDP ports to answer on")
    ap.add_argument("--sctp", default=None, help="answer SCTP (scanner.lab_sctp), listening on these ports")
    ap.add_argument("--backlog", type=int, default=4096)
    ap.add_argument("--ipv6", action="store_true", help="listen/answer on IPv6 too")
    args = ap.parse_args(argv)

    parent = os.getppid()
    _die_with_parent()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    sel = selectors.DefaultSelector()
    families = [(socket.AF_INET, "0.0.0.0")] + [(socket.AF_INET6, "::")] * args.ipv6
    for family, wildcard in families:
        for port in _ports(args.tcp):
            s = _socket(family, socket.SOCK_STREAM)
            s.bind((wildcard, port))
            s.listen(args.backlog)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, "tcp")
        for port in _ports(args.udp):
            s = _socket(family, socket.SOCK_DGRAM)
            if family == socket.AF_INET:
                s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            else:
                s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            s.bind((wildcard, port))
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, "udp")

    if args.sctp is not None:
        from . import lab_sctp
        for s in lab_sctp.sockets(args.ipv6):
            sel.register(s, selectors.EVENT_READ, "sctp")
    sctp_open = set(_ports(args.sctp or ""))

    print("ready", flush=True)
    while True:
        if os.getppid() != parent:  # parent died before PDEATHSIG was armed
            return 0
        for key, _ in sel.select(timeout=1.0):
            s = cast(Any, key.fileobj)
            if key.data == "tcp":
                _accept_all(s)
            elif key.data == "sctp":
                lab_sctp.answer_all(s, sctp_open)
            else:
                _answer_all(s)


def udp_answer(port: int, request: bytes) -> bytes:
    """REPLY, carrying the request's cookie bytes where the port's protocol echoes them
    (scanner/data/udp-payloads.txt): a DNS/NetBIOS/memcached id or RPC XID in front, the NTP
    transmit timestamp as the origin timestamp, the SNMP request-id in a GetResponse. Requests
    shorter than scanner's own payload for the port get REPLY alone."""
    from .states import ECHO_SNMP
    from .techniques import udp_payload_cookie, udp_payloads
    where = udp_payload_cookie(port)
    if where is None or len(request) < len(udp_payloads()[port]):
        return REPLY
    echoed = request[where.at:where.at + where.length]
    if where.echo == ECHO_SNMP:
        pdu = bytes([2, len(echoed)]) + echoed + bytes.fromhex("020100020100" "3000")   # no error, no vars
        body = bytes.fromhex("020100" "0406") + b"public" + bytes([0xA2, len(pdu)]) + pdu
        return bytes([0x30, len(body)]) + body
    return bytes(where.echo) + echoed + REPLY


def _socket(family: int, kind: int) -> socket.socket:
    s = socket.socket(family, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # the AF_INET socket has IPv4
    return s


def _accept_all(s: socket.socket) -> None:
    while True:
        try:
            c, _ = s.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # e.g. ECONNABORTED: the peer reset before accept
        c.close()


def _answer_all(s: socket.socket) -> None:
    while True:
        try:
            request, anc, _, peer = s.recvmsg(2048, socket.CMSG_SPACE(20))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            continue  # e.g. a queued ICMP error for an earlier reply
        cmsg = []
        for level, typ, data in anc:
            if level == socket.IPPROTO_IP and typ == IP_PKTINFO and len(data) >= 12:
                # struct in_pktinfo {int ifindex; in_addr spec_dst; in_addr addr;}:
                # reply with spec_dst := the address the datagram was sent to.
                dst = data[8:12]
                cmsg = [(socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=i4s4s", 0, dst, b"\0" * 4))]
            elif level == socket.IPPROTO_IPV6 and typ == IPV6_PKTINFO and len(data) >= 20:
                # struct in6_pktinfo {in6_addr addr; int ifindex;}: the same, source := addr.
                cmsg = [(socket.IPPROTO_IPV6, IPV6_PKTINFO, struct.pack("=16si", data[:16], 0))]
        try:
            s.sendmsg([udp_answer(s.getsockname()[1], request)], cmsg, 0, peer)
        except OSError:
            pass


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
