"""Where probes leave from: the kernel's route to a target, our address on that route, and the
next hop's MAC (from the neighbour table, or asked for with ARP when it is missing)."""
from __future__ import annotations

import ipaddress
import json
import socket
import struct
import subprocess
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


def route_to(addr: str, interface: str | None = None) -> Route:
    args = ["route", "get", addr] + (["oif", interface] if interface else [])
    try:
        entry = _ip_json(*args)[0]
    except EnvironmentFault as e:
        raise EnvironmentFault(f"no route to {addr}: {e}") from None
    ifname = entry["dev"]
    flags = Path(f"/sys/class/net/{ifname}/type")
    arphrd = int(flags.read_text()) if flags.exists() else 1
    loopback = ifname == "lo" or arphrd != 1     # 1: ARPHRD_ETHER
    return Route(ifname=ifname, src=entry.get("prefsrc", ""), next_hop=entry.get("gateway", addr),
                 loopback=loopback, on_link=not loopback and "gateway" not in entry)


def interface_mac(ifname: str) -> bytes:
    return bytes.fromhex(Path(f"/sys/class/net/{ifname}/address").read_text().strip().replace(":", ""))


def _neighbour(ifname: str, addr: str) -> bytes | None:
    for entry in _ip_json("neigh", "show", "to", addr, "dev", ifname):
        if entry.get("lladdr") and "FAILED" not in entry.get("state", []):
            return bytes.fromhex(entry["lladdr"].replace(":", ""))
    return None


def _arp(ifname: str, src: str, addr: str, timeout: float) -> bytes | None:
    """One ARP request for addr on ifname; the MAC from the reply, or None."""
    mac = interface_mac(ifname)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806)) as s:
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
