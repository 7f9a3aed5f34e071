"""Target-side services for the lab (run inside the target namespace by scanner.lab).

    python -m scanner.lab_services --tcp 22,80,443 --udp 53

TCP: listen on the wildcard address, accept and close.  UDP: answer every
datagram with b"scanner-lab\\n" *from the address it was sent to* (IP_PKTINFO),
because the target answers for a whole prefix via a local route and the
scanner must see the reply come from the probed host.
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

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux value; missing from Python's socket module
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
    ap.add_argument("--backlog", type=int, default=4096)
    args = ap.parse_args(argv)

    parent = os.getppid()
    _die_with_parent()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    sel = selectors.DefaultSelector()
    for port in _ports(args.tcp):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(args.backlog)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, "tcp")
    for port in _ports(args.udp):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        s.bind(("0.0.0.0", port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, "udp")

    print("ready", flush=True)
    while True:
        if os.getppid() != parent:  # parent died before PDEATHSIG was armed
            return 0
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            if key.data == "tcp":
                _accept_all(s)
            else:
                _answer_all(s)


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
            _, anc, _, peer = s.recvmsg(2048, socket.CMSG_SPACE(12))
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
        try:
            s.sendmsg([REPLY], cmsg, 0, peer)
        except OSError:
            pass


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
