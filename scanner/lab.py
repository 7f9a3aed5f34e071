"""Disposable test network built from Linux network namespaces.

    scanner ns (198.19.255.1/30) <-veth-> target ns (198.19.255.2/30)
               (2001:2:0:ffff::1/64)          (2001:2:0:ffff::2/64)   with LabSpec.prefix6

With ``LabSpec(routers=N)``, a chain of N router namespaces ``<name>-r1`` .. ``-rN`` (forwarding
on, no ICMP rate limit) sits between them, so that traceroute has hops to see: r1 takes the
target side of the scanner link (198.19.255.2), link k behind router k is 198.19.253.4(k-1)/30
(IPv6: 2001:2:0:fe0k::/64), its far end (.2 / ::2) belongs to the next router or the target.

The target namespace answers for the whole ``LabSpec.prefix`` (a local route on
lo), runs real TCP/UDP services (scanner.lab_services) and shapes the other
answers with one nftables table ``inet lab``: dead hosts, dropped and rejected
ports, random loss.  Nothing is attached to the root namespace and the scanner
namespace has no default route, so probes cannot leave the lab.

IPv6 (optional, ``LabSpec.prefix6`` inside 2001:2::/48, the RFC 5180 benchmarking
prefix): every address of the (small) prefix is a /128 on the target's lo -- a
``local`` route is not enough for IPv6, ICMPv6 errors would then come from the
link address -- and the nftables rules are mirrored for ip6.  Without prefix6,
IPv6 stays disabled in every namespace.

Needs root.  Always use as a context manager (or .up()/.down() in try/finally).
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

LAB_SPACE = ipaddress.ip_network("198.18.0.0/15")
LAB_SPACE6 = ipaddress.ip_network("2001:2::/48")  # RFC 5180 benchmarking prefix
SCANNER_LINK6 = ("2001:2:0:ffff::1", "2001:2:0:ffff::2", 64)  # scanner side, target side
MAX_HOSTS6 = 256  # each IPv6 lab address is a /128 on the target's lo
SCANNER_LINK = ("198.19.255.1", "198.19.255.2", 30)  # scanner side, target side
THIRD_LINK = ("198.19.254.1", "198.19.254.2", 30)  # x side, scanner side
ROUTER_LINKS = ipaddress.ip_network("198.19.253.0/24")  # the links behind routers (LabSpec.routers)
ROUTER_LINKS6 = ipaddress.ip_network("2001:2:0:fe00::/56")
MAX_ROUTERS = 16
# Router namespaces: forward, and answer every expiring probe with time-exceeded (no rate limit).
ROUTER_SYSCTLS = {
    "net.ipv4.ip_forward": 1,
    "net.ipv4.icmp_ratelimit": 0,
    "net.ipv4.icmp_msgs_per_sec": 100_000_000,
    "net.ipv4.icmp_msgs_burst": 100_000_000,
}
ROUTER_SYSCTLS6 = {"net.ipv6.conf.all.forwarding": 1, "net.ipv6.icmp.ratelimit": 0}
OWNER_DIR = Path("/run/scanner-lab")  # name -> owner pid, so cleanup_stale spares live labs

REJECTS = {  # LabSpec.reject_tcp value -> (nft reject clause, nmap reason)
    "tcp-reset": ("reject with tcp reset", "reset"),
    "port-unreachable": ("reject with icmp type port-unreachable", "port-unreach"),
    "admin-prohibited": ("reject with icmp type admin-prohibited", "admin-prohibited"),
    "host-unreachable": ("reject with icmp type host-unreachable", "host-unreach"),
    "net-unreachable": ("reject with icmp type net-unreachable", "net-unreach"),
}
# The same kinds of rejection for IPv6 (nft clause, nmap reason).  ICMPv6 has no
# host/net unreachable: the nearest codes are address unreachable (3), which
# nmap 7.93 reports as host-unreach, and no route to destination (0), no-route.
REJECTS6 = {
    "tcp-reset": ("reject with tcp reset", "reset"),
    "port-unreachable": ("reject with icmpv6 type port-unreachable", "port-unreach"),
    "admin-prohibited": ("reject with icmpv6 type admin-prohibited", "admin-prohibited"),
    "host-unreachable": ("reject with icmpv6 type addr-unreachable", "host-unreach"),
    "net-unreachable": ("reject with icmpv6 type no-route", "no-route"),
}

# Target-namespace sysctls so that a SYN/UDP sweep of a /16 is answered in full.
# tcp_syncookies stays at its default (1): when the SYN queue overflows the
# kernel still answers, with a cookie SYN-ACK; disabling it would make the
# kernel silently drop SYNs instead.
TARGET_SYSCTLS = {
    "net.ipv4.tcp_max_syn_backlog": 65536,
    "net.core.somaxconn": 65535,
    "net.ipv4.icmp_ratelimit": 0,  # rejects / port-unreachables for every probe
    "net.ipv4.icmp_msgs_per_sec": 100_000_000,
    "net.ipv4.icmp_msgs_burst": 100_000_000,
    # ARP requests from the target otherwise name the probed address (198.18.x.y)
    # as sender; use the link address instead.
    "net.ipv4.conf.all.arp_announce": 2,
}
COMMON_SYSCTLS = {
    # Forged packets from the third-party ns carry prefix sources on another link.
    "net.ipv4.conf.all.rp_filter": 0,
    "net.ipv4.conf.default.rp_filter": 0,
    # No IPv6 chatter (RS/DAD/MLD) in captures.
    "net.ipv6.conf.all.disable_ipv6": 1,
    "net.ipv6.conf.default.disable_ipv6": 1,
    "net.ipv4.ip_forward": 0,  # the scanner ns must never relay between x and target
}
# Namespaces that carry the IPv6 lab (LabSpec.prefix6): IPv6 on, but quiet and
# immediate (no router solicitations, no RAs, no duplicate address detection).
IPV6_ON_SYSCTLS = {
    "net.ipv6.conf.all.disable_ipv6": 0,
    "net.ipv6.conf.default.disable_ipv6": 0,
    "net.ipv6.conf.all.forwarding": 0,
    "net.ipv6.conf.all.accept_ra": 0,
    "net.ipv6.conf.default.accept_ra": 0,
    "net.ipv6.conf.all.router_solicitations": 0,
    "net.ipv6.conf.default.router_solicitations": 0,
    "net.ipv6.conf.all.accept_dad": 0,
    "net.ipv6.conf.default.accept_dad": 0,
    "net.ipv6.conf.all.dad_transmits": 0,
    "net.ipv6.conf.default.dad_transmits": 0,
}
TARGET_SYSCTLS6 = {
    "net.ipv6.icmp.ratelimit": 0,  # an ICMPv6 error for every probe
}


def _sh(argv: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    p = subprocess.run(argv, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


def _nsexec(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def _sysctl(ns: str, values: dict[str, int]) -> None:
    # -e: keys missing on this kernel are not fatal.
    _sh(_nsexec(ns, ["sysctl", "-e", "-q", "-w", *(f"{k}={v}" for k, v in values.items())]), check=False)


# Runs inside a namespace: ETHTOOL_STXCSUM off (no ethtool binary needed).  veth
# otherwise hands CHECKSUM_PARTIAL skbs across, so AF_PACKET sockets on the other
# side see SYN-ACKs/UDP replies with unfinished (wrong) TCP/UDP checksums.
_TX_CSUM_OFF = """
import fcntl, socket, struct, sys, array
SIOCETHTOOL, ETHTOOL_STXCSUM = 0x8946, 0x17
s = socket.socket()
for name in sys.argv[1:]:
    val = array.array("I", [ETHTOOL_STXCSUM, 0])
    ifr = struct.pack("16sP", name.encode(), val.buffer_info()[0])
    fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)
"""


def _tx_csum_off(ns: str, *ifnames: str) -> None:
    _sh(_nsexec(ns, [sys.executable, "-c", _TX_CSUM_OFF, *ifnames]))


def _mac(ns: str, ifname: str) -> str:
    out = _sh(["ip", "-n", ns, "-j", "link", "show", "dev", ifname]).stdout
    return json.loads(out)[0]["address"]


def _kill_ns_procs(ns: str, timeout: float = 2.0) -> None:
    def pids() -> list[int]:
        p = _sh(["ip", "netns", "pids", ns], check=False)
        return [int(x) for x in p.stdout.split()] if p.returncode == 0 else []

    for sig in (signal.SIGTERM, signal.SIGKILL):
        todo = [p for p in pids() if p != os.getpid()]
        if not todo:
            return
        for pid in todo:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pids():
            time.sleep(0.02)


def _delete_ns(ns: str) -> None:
    _kill_ns_procs(ns)
    _sh(["ip", "netns", "del", ns], check=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale(prefix: str = "scl") -> list[str]:
    """Delete namespaces ``<prefix>XXXXXX-{s,t,x,rN}`` left by crashed runs.

    A lab whose owner process is still alive is left alone (parallel test runs).
    Returns the deleted namespace names.
    """
    pat = re.compile(rf"^({re.escape(prefix)}[0-9a-f]{{6}})-(?:[stx]|r[0-9]+)$")
    listed = _sh(["ip", "-j", "netns", "list"], check=False).stdout.strip()
    names = [n["name"] for n in json.loads(listed)] if listed else []
    removed = []
    for ns in names:
        m = pat.match(ns)
        if not m:
            continue
        owner = OWNER_DIR / m.group(1)
        try:
            if _pid_alive(int(owner.read_text())):
                continue
        except (OSError, ValueError):
            pass  # no owner record: a crash before/after it was written
        _delete_ns(ns)
        removed.append(ns)
    for owner in OWNER_DIR.glob(f"{prefix}*") if OWNER_DIR.is_dir() else ():
        if not any(n.startswith(owner.name + "-") for n in names if n not in removed):
            owner.unlink(missing_ok=True)
    return removed


@dataclass
class LabSpec:
    prefix: str = "198.18.0.0/20"
    open_tcp: tuple[int, ...] = (22, 80, 443)
    open_udp: tuple[int, ...] = (53,)
    drop_tcp: tuple[int, ...] = (8080,)
    reject_tcp: dict[int, str] = field(default_factory=lambda: {8443: "admin-prohibited"})
    drop_udp: tuple[int, ...] = ()
    live_every: int = 1
    loss_percent: int = 0
    ingress_drop_all: bool = False
    # IPv6 targets (None: no IPv6 anywhere in the lab).  Host index i of prefix6 is live
    # under the same live_every rule as for prefix.
    prefix6: str | None = None
    # UDP port -> how it is rejected (REJECTS keys but tcp-reset), for both families.
    reject_udp: dict[int, str] = field(default_factory=dict)
    # Keep the kernel's ICMP rate limit (Linux: about one error a second per destination after a
    # short burst), as real targets have it; by default the lab answers every probe.
    icmp_ratelimit: bool = False
    # Router namespaces between the scanner and the target (hops for traceroute).
    routers: int = 0
    # SCTP: ports with a listener, answered by scanner.lab_sctp (this kernel has no SCTP); None: no
    # responder (the target then answers SCTP with ICMP protocol-unreachable). Dropped and
    # rejected SCTP ports as for UDP.
    open_sctp: tuple[int, ...] | None = None
    drop_sctp: tuple[int, ...] = ()
    reject_sctp: dict[int, str] = field(default_factory=dict)
    # IP protocols (-sO) dropped, or rejected (REJECTS keys but tcp-reset), over IPv4.
    drop_proto: tuple[int, ...] = ()
    reject_proto: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        net = ipaddress.ip_network(self.prefix, strict=True)
        if net.version != 4 or not net.subnet_of(LAB_SPACE):  # type: ignore[arg-type]
            raise ValueError(f"lab prefix {self.prefix} must lie inside {LAB_SPACE}")
        if self.prefix6 is not None:
            net6 = ipaddress.ip_network(self.prefix6, strict=True)
            if net6.version != 6 or not net6.subnet_of(LAB_SPACE6):  # type: ignore[arg-type]
                raise ValueError(f"lab prefix6 {self.prefix6} must lie inside {LAB_SPACE6}")
            if net6.overlaps(ipaddress.ip_network(f"{SCANNER_LINK6[0]}/{SCANNER_LINK6[2]}", strict=False)):
                raise ValueError(f"lab prefix6 {self.prefix6} overlaps the lab link (2001:2:0:ffff::/64)")
            if net6.num_addresses > MAX_HOSTS6:
                raise ValueError(f"lab prefix6 {self.prefix6} is too large (at most {MAX_HOSTS6} addresses)")
        for link in (SCANNER_LINK, THIRD_LINK):
            if net.overlaps(ipaddress.ip_network(f"{link[0]}/{link[2]}", strict=False)):
                raise ValueError(f"lab prefix {self.prefix} overlaps the lab links (198.19.254.0/23)")
        if not 0 <= self.routers <= MAX_ROUTERS:
            raise ValueError(f"routers must be in 0..{MAX_ROUTERS}")
        if self.routers and net.overlaps(ROUTER_LINKS):
            raise ValueError(f"lab prefix {self.prefix} overlaps the router links ({ROUTER_LINKS})")
        if self.routers and self.prefix6 is not None and ipaddress.ip_network(self.prefix6).overlaps(ROUTER_LINKS6):
            raise ValueError(f"lab prefix6 {self.prefix6} overlaps the router links ({ROUTER_LINKS6})")
        le = self.live_every
        if le < 1 or le & (le - 1):
            raise ValueError(f"live_every must be a power of two, not {le}")
        if not 0 <= self.loss_percent <= 100:
            raise ValueError("loss_percent must be in 0..100")
        for port, how in self.reject_tcp.items():
            if how not in REJECTS:
                raise ValueError(f"reject_tcp[{port}]={how!r}: expected one of {sorted(REJECTS)}")
        for port, how in (*self.reject_udp.items(), *self.reject_sctp.items(), *self.reject_proto.items()):
            if how not in REJECTS or how == "tcp-reset":
                raise ValueError(f"reject_udp[{port}]={how!r}: expected one of "
                                 f"{sorted(set(REJECTS) - {'tcp-reset'})}")
        for p in (*self.open_tcp, *self.open_udp, *self.drop_tcp, *self.drop_udp, *self.reject_tcp,
                  *self.reject_udp, *(self.open_sctp or ()), *self.drop_sctp, *self.reject_sctp):
            if not 0 < p < 65536:
                raise ValueError(f"bad port {p}")

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.prefix)

    @property
    def network6(self) -> ipaddress.IPv6Network | None:
        return None if self.prefix6 is None else ipaddress.IPv6Network(self.prefix6)


@dataclass
class Host:
    """A namespace hanging off the scanner namespace (see Lab.third_party)."""
    ns: str
    ifname: str
    addr: str
    mac: str = ""
    peer_ifname: str = ""  # its veth peer, inside the scanner namespace
    peer_addr: str = ""
    peer_mac: str = ""

    def run(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        return subprocess.run(_nsexec(self.ns, list(argv)), **kw)

    def popen(self, argv: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(_nsexec(self.ns, list(argv)), **kw)


def router_link(k: int) -> tuple[str, str, int]:
    """(near end, far end, prefix length) of the link behind router k (1-based)."""
    base = ROUTER_LINKS.network_address + 4 * (k - 1)
    return str(base + 1), str(base + 2), 30


def router_link6(k: int) -> tuple[str, str, int]:
    return f"2001:2:0:fe{k:02x}::1", f"2001:2:0:fe{k:02x}::2", 64


class Lab:
    scanner_addr = SCANNER_LINK[0]
    scanner_addr6 = SCANNER_LINK6[0]  # only configured with LabSpec.prefix6

    def __init__(self, spec: LabSpec | None = None):
        self.spec = spec or LabSpec()
        self.name = "scl" + secrets.token_hex(3)
        self.scanner_ns = f"{self.name}-s"
        self.target_ns = f"{self.name}-t"
        self.router_ns = [f"{self.name}-r{k}" for k in range(1, self.spec.routers + 1)]
        self.scanner_if = f"{self.name}s"  # 10 chars, under IFNAMSIZ
        self.target_if = f"{self.name}t"
        # The scanner's neighbour (the target, or router 1), then the target's own link address.
        self.target_link_addr = SCANNER_LINK[1]
        self.target_link_addr6 = SCANNER_LINK6[1]
        if self.spec.routers:
            self.target_link_addr = router_link(self.spec.routers)[1]
            self.target_link_addr6 = router_link6(self.spec.routers)[1]
        self.scanner_mac = ""
        self.target_mac = ""
        self._third: Host | None = None
        self._services: subprocess.Popen | None = None
        self._is_up = False

    # -- lifecycle -------------------------------------------------------
    def __enter__(self) -> "Lab":
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    def up(self) -> "Lab":
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        self._is_up = True
        return self

    def down(self) -> None:
        if self._services is not None:
            self._services.terminate()
            try:
                self._services.wait(2)
            except subprocess.TimeoutExpired:
                self._services.kill()
                self._services.wait()
            if self._services.stdout:
                self._services.stdout.close()
            self._services = None
        for ns in (f"{self.name}-x", self.target_ns, *self.router_ns, self.scanner_ns):
            if Path("/run/netns", ns).exists():
                _delete_ns(ns)
        (OWNER_DIR / self.name).unlink(missing_ok=True)
        self._third = None
        self._is_up = False

    def _build(self) -> None:
        s, t, spec = self.scanner_ns, self.target_ns, self.spec
        OWNER_DIR.mkdir(parents=True, exist_ok=True)
        (OWNER_DIR / self.name).write_text(str(os.getpid()))  # before any ns exists
        v6 = spec.prefix6 is not None
        for ns in (s, *self.router_ns, t):
            _sh(["ip", "netns", "add", ns])
            _sysctl(ns, COMMON_SYSCTLS)
            if v6:
                _sysctl(ns, IPV6_ON_SYSCTLS)
            _sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        _sysctl(t, {k: v for k, v in TARGET_SYSCTLS.items()
                    if not (self.spec.icmp_ratelimit and k.startswith("net.ipv4.icmp_"))})
        if v6:
            _sysctl(t, TARGET_SYSCTLS6)
        for r in self.router_ns:
            _sysctl(r, {**ROUTER_SYSCTLS, **(ROUTER_SYSCTLS6 if v6 else {})})

        # A chain of veth links: scanner, routers, target. Each is created inside its left
        # namespace, so the root namespace never sees it.
        for left, right, lif, rif, (a_l, a_r, plen) in self._links():
            _sh(["ip", "-n", left, "link", "add", lif, "txqueuelen", "10000", "type", "veth",
                 "peer", "name", rif, "netns", right, "txqueuelen", "10000"])
            for ns, ifname, addr in ((left, lif, a_l), (right, rif, a_r)):
                _sh(["ip", "-n", ns, "addr", "add", f"{addr}/{plen}", "dev", ifname])
                _sh(["ip", "-n", ns, "link", "set", ifname, "up"])
                _sysctl(ns, {f"net.ipv4.conf.{ifname}.rp_filter": 0})
                _tx_csum_off(ns, ifname)
        a_s, a_t, plen = SCANNER_LINK
        scanner_net = str(ipaddress.ip_interface(f"{a_s}/{plen}").network)
        # The only non-connected routes in the lab: the prefix, via the target (or router 1),
        # and in routers and the target, the scanner's link back.
        _sh(["ip", "-n", s, "route", "add", spec.prefix, "via", a_t, "dev", self.scanner_if])
        for k, r in enumerate(self.router_ns, 1):
            _sh(["ip", "-n", r, "route", "add", spec.prefix, "via", router_link(k)[1]])
            if k > 1:
                _sh(["ip", "-n", r, "route", "add", scanner_net, "via", router_link(k - 1)[0]])
        if self.router_ns:
            _sh(["ip", "-n", t, "route", "add", scanner_net, "via", router_link(spec.routers)[0]])
        _sh(["ip", "-n", t, "route", "add", "local", spec.prefix, "dev", "lo"])
        if v6:
            self._build6()
        self.scanner_mac = _mac(s, self.scanner_if)
        self.target_mac = _mac(self.router_ns[0] if self.router_ns else t, self._links()[0][3])

        _sh(_nsexec(t, ["nft", "-f", "-"]), input=self.nft_ruleset())
        self._start_services()

    def _links(self) -> list[tuple[str, str, str, str, tuple[str, str, int]]]:
        """(left ns, right ns, left ifname, right ifname, addresses) from the scanner on."""
        chain = [self.scanner_ns, *self.router_ns, self.target_ns]
        out = []
        for j in range(len(chain) - 1):
            lif = self.scanner_if if j == 0 else f"{self.name}o{j}"
            rif = self.target_if if j == len(chain) - 2 else f"{self.name}i{j + 1}"
            out.append((chain[j], chain[j + 1], lif, rif, SCANNER_LINK if j == 0 else router_link(j)))
        return out

    def hops(self, family: int = 4) -> list[str]:
        """The addresses traceroute sees before the target: each router's address on its
        link toward the scanner (the source of its time-exceeded messages)."""
        first, link = (SCANNER_LINK[1], router_link) if family == 4 else (SCANNER_LINK6[1], router_link6)
        return [first, *(link(k)[1] for k in range(1, self.spec.routers))][:self.spec.routers]

    def _build6(self) -> None:
        s, t, spec = self.scanner_ns, self.target_ns, self.spec
        a_s, a_t, plen = SCANNER_LINK6
        for j, (left, right, lif, rif, _) in enumerate(self._links()):
            a_l, a_r, plen = SCANNER_LINK6 if j == 0 else router_link6(j)
            _sh(["ip", "-n", left, "-6", "addr", "add", f"{a_l}/{plen}", "dev", lif, "nodad"])
            _sh(["ip", "-n", right, "-6", "addr", "add", f"{a_r}/{plen}", "dev", rif, "nodad"])
        _sh(["ip", "-n", s, "-6", "route", "add", str(spec.prefix6), "via", a_t, "dev", self.scanner_if])
        scanner_net = str(ipaddress.ip_interface(f"{SCANNER_LINK6[0]}/{SCANNER_LINK6[2]}").network)
        for k, r in enumerate(self.router_ns, 1):
            _sh(["ip", "-n", r, "-6", "route", "add", str(spec.prefix6), "via", router_link6(k)[1]])
            if k > 1:
                _sh(["ip", "-n", r, "-6", "route", "add", scanner_net, "via", router_link6(k - 1)[0]])
        if self.router_ns:
            _sh(["ip", "-n", t, "-6", "route", "add", scanner_net, "via", router_link6(spec.routers)[0]])
        # Real addresses (not a local route): ICMPv6 errors then come from the probed address.
        batch = "".join(f"address add {a}/128 dev lo nodad\n" for a in self.hosts6())
        _sh(["ip", "-n", t, "-6", "-batch", "-"], input=batch)

    def _start_services(self) -> None:
        spec = self.spec
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        argv = [sys.executable, "-m", "scanner.lab_services",
                "--tcp", ",".join(map(str, spec.open_tcp)), "--udp", ",".join(map(str, spec.open_udp))]
        if spec.prefix6 is not None:
            argv.append("--ipv6")
        if spec.open_sctp is not None:
            argv += ["--sctp", ",".join(map(str, spec.open_sctp))]
        self._services = p = subprocess.Popen(
            _nsexec(self.target_ns, argv), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, env=env)
        assert p.stdout is not None
        ready, _, _ = select.select([p.stdout], [], [], 15.0)
        line = p.stdout.readline() if ready else ""
        if line.strip() != "ready":
            raise RuntimeError(f"lab services did not start (exit code {p.poll()}, said {line!r})")

    def nft_ruleset(self) -> str:
        """The target namespace's nftables table (applied with nft -f)."""
        spec, tif = self.spec, self.target_if
        net = spec.network
        lines = ["table inet lab {", "  counter rx { }", "  counter rst { }"]
        # inet ingress sees IPv4/IPv6 only: ARP still gets through, so the
        # scanner can resolve the target's MAC even with ingress_drop_all.
        # Neighbour discovery, IPv6's ARP, is let through explicitly.
        nd = "ip6 nexthdr icmpv6 icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert }"
        lines += ["  chain ingress {",
                  f'    type filter hook ingress device "{tif}" priority -500; policy accept;',
                  '    counter name "rx"',
                  # RSTs (the scanner kernel's answers to SYN-ACKs, a connect scan's close): not probes
                  '    tcp flags & rst == rst counter name "rst"']
        if spec.prefix6 is not None:
            lines.append(f"    {nd} accept")
        if spec.ingress_drop_all:
            lines.append("    drop")
        if spec.loss_percent:
            lines.append(f"    numgen random mod 100 < {spec.loss_percent} drop")
        lines.append("  }")

        lines += ["  chain input {", "    type filter hook input priority 0; policy accept;"]
        lines += self._input_rules(net, "ip", REJECTS)
        if spec.network6 is not None:
            lines += self._input_rules(spec.network6, "ip6", REJECTS6)
        lines.append("  }")

        if spec.loss_percent:
            # Loss on the way back too (answers, RSTs, ICMP errors).
            lines += ["  chain egress {", "    type filter hook postrouting priority 0; policy accept;"]
            if spec.prefix6 is not None:
                lines.append(f'    oifname "{tif}" {nd} accept')
            lines += [f'    oifname "{tif}" numgen random mod 100 < {spec.loss_percent} drop', "  }"]
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _input_rules(self, net, family: str, rejects: dict) -> list[str]:
        """Input-chain rules for one family (nft rule order: dead host, drop, reject)."""
        spec, tif = self.spec, self.target_if
        dst = f'iifname "{tif}" {family} daddr {net}'
        addr_cls = ipaddress.IPv4Address if family == "ip" else ipaddress.IPv6Address
        out = []
        if spec.live_every > 1:
            # Live iff (addr - base) % live_every == 0; with a power of two that
            # is addr & (live_every-1) == base & (live_every-1).
            m = spec.live_every - 1
            mask, want = addr_cls(m), addr_cls(int(net.network_address) & m)
            out.append(f"    {dst} {family} daddr & {mask} != {want} drop")
        if spec.drop_tcp:
            out.append(f'    {dst} tcp dport {{ {", ".join(map(str, spec.drop_tcp))} }} drop')
        if spec.drop_udp:
            out.append(f'    {dst} udp dport {{ {", ".join(map(str, spec.drop_udp))} }} drop')
        for port, how in sorted(spec.reject_tcp.items()):
            out.append(f"    {dst} tcp dport {port} {rejects[how][0]}")
        for port, how in sorted(spec.reject_udp.items()):
            out.append(f"    {dst} udp dport {port} {rejects[how][0]}")
        if spec.drop_sctp:
            out.append(f'    {dst} sctp dport {{ {", ".join(map(str, spec.drop_sctp))} }} drop')
        for port, how in sorted(spec.reject_sctp.items()):
            out.append(f"    {dst} sctp dport {port} {rejects[how][0]}")
        if family == "ip" and spec.drop_proto:
            out.append(f'    {dst} ip protocol {{ {", ".join(map(str, spec.drop_proto))} }} drop')
        for number, how in sorted(spec.reject_proto.items()) if family == "ip" else ():
            out.append(f"    {dst} ip protocol {number} {rejects[how][0]}")
        return out

    # -- running things ---------------------------------------------------
    def run(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        return subprocess.run(_nsexec(self.scanner_ns, list(argv)), **kw)

    def popen(self, argv: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(_nsexec(self.scanner_ns, list(argv)), **kw)

    def run_target(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        return subprocess.run(_nsexec(self.target_ns, list(argv)), **kw)

    def third_party(self) -> Host:
        """Namespace ``<name>-x`` linked to the scanner ns only, for forging packets."""
        if self._third is not None:
            return self._third
        x, s = f"{self.name}-x", self.scanner_ns
        xif, yif = f"{self.name}x", f"{self.name}y"
        a_x, a_s, plen = THIRD_LINK
        _sh(["ip", "netns", "add", x])
        _sysctl(x, COMMON_SYSCTLS)
        _sh(["ip", "-n", x, "link", "set", "lo", "up"])
        _sh(["ip", "-n", s, "link", "add", yif, "type", "veth", "peer", "name", xif, "netns", x])
        _sh(["ip", "-n", x, "addr", "add", f"{a_x}/{plen}", "dev", xif])
        _sh(["ip", "-n", s, "addr", "add", f"{a_s}/{plen}", "dev", yif])
        _sh(["ip", "-n", x, "link", "set", xif, "up"])
        _sh(["ip", "-n", s, "link", "set", yif, "up"])
        _sysctl(s, {f"net.ipv4.conf.{yif}.rp_filter": 0})
        _tx_csum_off(x, xif)
        _tx_csum_off(s, yif)
        # Lets L3 sends from x reach the scanner's main address (and nothing else).
        _sh(["ip", "-n", x, "route", "add", f"{self.scanner_addr}/32", "via", a_s, "dev", xif])
        self._third = Host(ns=x, ifname=xif, addr=a_x, mac=_mac(x, xif),
                           peer_ifname=yif, peer_addr=a_s, peer_mac=_mac(s, yif))
        return self._third

    # -- what a scan should find -------------------------------------------
    def _is_live(self, index: int) -> bool:
        return index % self.spec.live_every == 0

    def _network(self, family: int):
        if family == 4:
            return self.spec.network
        if family == 6 and self.spec.network6 is not None:
            return self.spec.network6
        raise ValueError(f"this lab has no IPv{family} targets" if family == 6 else f"bad family {family}")

    def hosts6(self) -> list[str]:
        """Every IPv6 target address (as Python's ipaddress prints it), live or not."""
        net = self.spec.network6
        return [] if net is None else [str(a) for a in net]

    def live_hosts(self, family: int = 4) -> list[str]:
        net = self._network(family)
        return [str(net.network_address + i) for i in range(0, net.num_addresses, self.spec.live_every)]

    def tcp_state(self, port: int, live: bool = True, family: int = 4) -> tuple[str, str]:
        """(state, reason) nmap reports for a SYN probe to `port` of a host."""
        spec = self.spec
        if not live or port in spec.drop_tcp:  # nft rule order: dead host, drop, reject
            return ("filtered", "no-response")
        if port in spec.reject_tcp:
            reason = (REJECTS if family == 4 else REJECTS6)[spec.reject_tcp[port]][1]
            return ("closed", "reset") if reason == "reset" else ("filtered", reason)
        if port in spec.open_tcp:
            return ("open", "syn-ack")
        return ("closed", "reset")

    def udp_state(self, port: int, live: bool = True, family: int = 4) -> tuple[str, str]:
        """(state, reason) nmap reports for a UDP probe (-sU) to `port` of a host."""
        spec = self.spec
        if not live or port in spec.drop_udp:
            return ("open|filtered", "no-response")
        if port in spec.reject_udp:
            reason = (REJECTS if family == 4 else REJECTS6)[spec.reject_udp[port]][1]
            return ("closed", reason) if reason == "port-unreach" else ("filtered", reason)
        if port in spec.open_udp:
            return ("open", "udp-response")
        return ("closed", "port-unreach")

    def expected(self, ports: Iterable[int], family: int = 4,
                 proto: str = "tcp") -> dict[tuple[str, int], tuple[str, str]]:
        """{(address, port): (state, reason)} a -Pn SYN scan (proto="tcp") or UDP scan
        (proto="udp") of every address of the IPv4 (family=4) or IPv6 (family=6) prefix finds."""
        ports = list(ports)
        net = self._network(family)
        state = {"tcp": self.tcp_state, "udp": self.udp_state}[proto]
        per_live = {p: state(p, True, family) for p in ports}
        per_dead = {p: state(p, False, family) for p in ports}
        out: dict[tuple[str, int], tuple[str, str]] = {}
        for i in range(net.num_addresses):
            ip = str(net.network_address + i)
            per = per_live if self._is_live(i) else per_dead
            for p in ports:
                out[(ip, p)] = per[p]
        return out

    def target_counter(self, name: str = "rx") -> int:
        """Packets that arrived on the target's veth (IPv4/IPv6, before any drop); name="rst":
        those of them that are TCP RSTs."""
        out = _sh(_nsexec(self.target_ns, ["nft", "-j", "list", "counter", "inet", "lab", name])).stdout
        for item in json.loads(out)["nftables"]:
            if "counter" in item:
                return int(item["counter"]["packets"])
        raise RuntimeError(f"nft counter {name} not found")
