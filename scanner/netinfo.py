"""Where probes leave from: the kernel's route to a target, our address on that route, and the
next hop's MAC (from the neighbour table, or asked for with ARP when it is missing)."""
from __future__ import annotations

import ipaddress
import json
import os
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import EnvironmentFault


@dataclass(frozen=True)
class Route:
    ifname: str
    src: str                    # our address on that interface
    next_hop: str               # the gateway, or the target itself when on-link
    loopback: bool              # no link layer: send through a raw IP socket
    on_link: bool = False       # the targets are neighbours (no gateway): each has its own MAC


def _ip_json(*args) -> list:
    try:
        out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout
    except FileNotFoundError:
        raise EnvironmentFault("the 'ip' command (iproute2) is needed to find routes; install iproute2") from None
    except subprocess.CalledProcessError as e:
        raise EnvironmentFault(f"ip {' '.join(args)}: {e.stderr.strip() or 'failed'}") from None
    return json.loads(out or "[]")


# rtnetlink, asked directly: `ip route get` / `ip neigh` as subprocesses cost a fork and an exec
# each (several per scan, on the path to the first probe). Numbers from linux/rtnetlink.h.
_RTM_NEWROUTE, _RTM_GETROUTE, _RTM_NEWNEIGH, _RTM_GETNEIGH = 24, 26, 28, 30
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_RTA_DST, _RTA_OIF, _RTA_GATEWAY, _RTA_PREFSRC, _RTA_VIA = 1, 4, 5, 7, 18
_NDA_DST, _NDA_LLADDR = 1, 2
_NUD_FAILED = 0x20


def _attributes(data: bytes) -> dict:
    """{type: payload} of a run of rtattrs (4-byte aligned)."""
    out, at = {}, 0
    while at + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, at)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[at + 4:at + length]
        at += (length + 3) & ~3
    return out


def _rtnetlink(kind: int, flags: int, body: bytes) -> list:
    """Sends one request; the (type, payload) of every message of the answer. An error answer
    raises OSError with the kernel's errno."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as s:
        s.sendto(struct.pack("=IHHII", 16 + len(body), kind, _NLM_F_REQUEST | flags, 1, 0) + body, (0, 0))
        messages: list = []
        while True:
            data, at = s.recv(1 << 16), 0
            while at + 16 <= len(data):
                length, mtype, _, _, _ = struct.unpack_from("=IHHII", data, at)
                payload = data[at + 16:at + length]
                if mtype == _NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return messages
                if mtype == _NLMSG_DONE:
                    return messages
                messages.append((mtype, payload))
                at += (length + 3) & ~3
            if not flags & _NLM_F_DUMP:
                return messages


def _attr(kind: int, value: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(value), kind) + value + bytes(-len(value) % 4)


def route_to(addr: str, interface: str | None = None) -> Route:
    """The kernel's route to addr (as `ip route get addr [oif interface]`): nothing is sent."""
    ip = ipaddress.ip_address(addr)
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        body = struct.pack("=BBBBBBBBI", family, ip.max_prefixlen, 0, 0, 0, 0, 0, 0, 0) + _attr(_RTA_DST, ip.packed)
        if interface:
            try:
                index = socket.if_nametoindex(interface)
            except OSError:
                raise OSError(0, f'cannot find device "{interface}"') from None
            body += _attr(_RTA_OIF, struct.pack("=i", index))
        answer = [payload for mtype, payload in _rtnetlink(_RTM_GETROUTE, 0, body) if mtype == _RTM_NEWROUTE]
        if not answer:
            raise OSError(0, "no answer from the kernel")
        attrs = _attributes(answer[0][12:])
        ifname = socket.if_indextoname(struct.unpack("=i", attrs[_RTA_OIF])[0])
    except (OSError, KeyError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "no interface"
        raise EnvironmentFault(f"no route to {addr}: {reason}") from None
    flags = Path(f"/sys/class/net/{ifname}/type")
    arphrd = int(flags.read_text()) if flags.exists() else 1
    loopback = ifname == "lo" or arphrd != 1     # 1: ARPHRD_ETHER
    src = str(ipaddress.ip_address(attrs[_RTA_PREFSRC])) if _RTA_PREFSRC in attrs else ""
    gateway = attrs.get(_RTA_GATEWAY)
    if gateway is None and _RTA_VIA in attrs:           # an IPv4 route via an IPv6 next hop
        gateway = attrs[_RTA_VIA][2:]
    next_hop = str(ipaddress.ip_address(gateway)) if gateway else addr
    return Route(ifname=ifname, src=src, next_hop=next_hop, loopback=loopback,
                 on_link=not loopback and gateway is None)


def interface_mac(ifname: str) -> bytes:
    return bytes.fromhex(Path(f"/sys/class/net/{ifname}/address").read_text().strip().replace(":", ""))


def _neighbour(ifname: str, addr: str) -> bytes | None:
    """The link-layer address the kernel's neighbour table holds for addr on ifname (not a
    failed entry), or None (as `ip neigh show to addr dev ifname`)."""
    ip = ipaddress.ip_address(addr)
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        index = socket.if_nametoindex(ifname)
        entries = _rtnetlink(_RTM_GETNEIGH, _NLM_F_DUMP, struct.pack("=BBHiHBB", family, 0, 0, index, 0, 0, 0))
    except OSError as e:
        raise EnvironmentFault(f"neighbour table of {ifname}: {e.strerror or e}") from None
    for mtype, payload in entries:
        if mtype != _RTM_NEWNEIGH or len(payload) < 12:
            continue
        _, _, _, entry_index, state, _, _ = struct.unpack_from("=BBHiHBB", payload)
        attrs = _attributes(payload[12:])
        if (entry_index == index and attrs.get(_NDA_DST) == ip.packed and attrs.get(_NDA_LLADDR)
                and not state & _NUD_FAILED):
            return attrs[_NDA_LLADDR]
    return None


def _arp(ifname: str, src: str, addr: str, timeout: float) -> bytes | None:
    """One ARP request for addr on ifname; the MAC from the reply, or None."""
    mac = interface_mac(ifname)
    # Protocol 0, then bind to ARP: no packet hook is replaced on bind, and the close (which
    # waits for the kernel's RCU grace period, ~15 ms) happens off the path to the first probe.
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        s.bind((ifname, 0x0806))
        s.settimeout(0.2)
        request = (b"\xff" * 6 + mac + b"\x08\x06" +
                   struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + socket.inet_aton(src) +
                   bytes(6) + socket.inet_aton(addr))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.send(request)
            try:
                while True:
                    frame = s.recv(128)
                    if (len(frame) >= 42 and frame[20:22] == b"\x00\x02"
                            and frame[28:32] == socket.inet_aton(addr)):
                        return frame[22:28]
            except socket.timeout:
                continue
    finally:
        threading.Thread(target=s.close, name="arp-close", daemon=True).start()
    return None


def _neighbour_solicitation(ifname: str, addr: str, timeout: float) -> bytes | None:
    """One IPv6 neighbour solicitation for addr; the MAC from the advertisement, or None.
    The kernel fills in the ICMPv6 checksum and our source address."""
    mac = interface_mac(ifname)
    target = ipaddress.IPv6Address(addr).packed
    group = b"\xff\x02" + bytes(9) + b"\x01\xff" + target[13:]          # solicited-node multicast
    solicitation = struct.pack("!BBHI", 135, 0, 0, 0) + target + b"\x01\x01" + mac
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        s.settimeout(0.2)
        scope = socket.if_nametoindex(ifname)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.sendto(solicitation, (str(ipaddress.IPv6Address(group)), 0, 0, scope))
            try:
                while True:
                    packet = s.recv(256)
                    # Advertisement for our target with a target link-layer address option.
                    if len(packet) >= 32 and packet[0] == 136 and packet[8:24] == target:
                        options = packet[24:]
                        while len(options) >= 8 and options[1]:
                            if options[0] == 2:
                                return options[2:8]
                            options = options[options[1] * 8:]
            except socket.timeout:
                continue
    return None


def next_hop_mac(route: Route, timeout: float = 3.0) -> bytes:
    v6 = ":" in route.next_hop
    mac = _neighbour(route.ifname, route.next_hop)
    if mac is None:
        ask = _neighbour_solicitation if v6 else (lambda i, a, t: _arp(i, route.src, a, t))
        mac = ask(route.ifname, route.next_hop, timeout)
    if mac is None:
        kind = "neighbour advertisement" if v6 else "ARP reply"
        raise EnvironmentFault(f"no {kind} from next hop {route.next_hop} on {route.ifname}")
    return mac


def iflist_text() -> str:
    """--iflist: interfaces and routes, laid out as nmap's are."""
    links = _ip_json("addr", "show")
    out = ["************************INTERFACES************************",
           f"{'DEV':<12} {'(SHORT)':<12} {'IP/MASK':<42} {'TYPE':<9} {'UP':<5} {'MTU':<6} MAC"]
    for link in links:
        kind = "loopback" if link.get("link_type") == "loopback" else "ethernet"
        up = "up" if "UP" in link.get("flags", ()) else "down"
        mac = link.get("address", "").upper() if kind != "loopback" else ""
        for a in link.get("addr_info", []) or [{"local": "(none)", "prefixlen": 0}]:
            out.append(f"{link['ifname']:<12} {'(' + link['ifname'] + ')':<12} "
                       f"{a['local'] + '/' + str(a['prefixlen']):<42} {kind:<9} {up:<5} {link.get('mtu', 0):<6} {mac}")
    out += ["", "**************************ROUTES**************************",
            f"{'DST/MASK':<42} {'DEV':<12} {'METRIC':<7} GATEWAY"]
    for family in ("-4", "-6"):
        for r in _ip_json(family, "route", "show", "table", "all"):
            dst = r.get("dst", "")
            if r.get("type", "unicast") not in ("unicast", "local") or dst.startswith(("ff00::", "fe80::")):
                continue
            if dst == "default":
                dst = "0.0.0.0/0" if family == "-4" else "::/0"
            elif "/" not in dst:
                dst += "/32" if family == "-4" else "/128"
            out.append(f"{dst:<42} {r.get('dev', ''):<12} {r.get('metric', 0):<7} {r.get('gateway', '')}")
    return "\n".join(out) + "\n"
