"""The named workloads: each a lab (LabSpec), a list of variants (one Scan each) and the tools
that can run it. `quick` gives the smoke-test size of each."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..lab import LabSpec
from .tools import UNLIMITED, Scan

TECHNIQUES = ("sS", "sT", "sA", "sW", "sN", "sF", "sX", "sM", "sU")
# The techniques workload's port behaviours, on every live host (half the hosts are live).
TECH_TCP = {"open": 22, "closed": 23, "dropped": 8080, "reset": 1001, "port-unreach": 1002, "admin-prohibited": 1003}
TECH_UDP = {"open": 53, "closed": 54, "dropped": 5000, "port-unreach": 2002, "admin-prohibited": 2003}
SERVICE_PORTS = {22: "ssh (OpenSSH)", 80: "http (nginx)", 6379: "redis"}


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    doc: str
    lab: Callable[[bool], LabSpec]
    variants: Callable[[bool], list]        # quick -> [(label, x, Scan)]; x: the plots' x value
    peers: tuple = ("nmap", "masscan", "zmap")
    x: str = ""                              # "rate" or "ports": the plot this workload feeds
    in_quick: bool = False                   # part of `scanner bench --quick` by default
    servers: bool = False                    # real servers (nginx, sshd, redis) in the target


def _sweep_lab(prefix: str, live_every: int, loss: int = 0) -> LabSpec:
    return LabSpec(prefix=prefix, live_every=live_every, open_tcp=(80,), open_udp=(), drop_tcp=(),
                   reject_tcp={}, loss_percent=loss)


def _rate_label(rate: int) -> str:
    return "unlimited" if rate == UNLIMITED else f"{rate // 1000}k"


def _sweep(prefix_full: str, prefix_quick: str, rates_full, rates_quick, wait_full: float):
    def variants(quick: bool) -> list:
        prefix, rates = (prefix_quick, rates_quick) if quick else (prefix_full, rates_full)
        wait = 1.0 if quick else wait_full
        return [(f"rate {_rate_label(r)}", r, Scan(prefix, "80", rate=r, retries=0, wait=wait)) for r in rates]
    return variants


def _allports(quick: bool) -> list:
    counts = (1024, 8192) if quick else (1000, 10000, 65535)
    return [(f"-{t} 1-{n}", n, Scan("198.18.0.1/32", f"1-{n}", technique=t, retries=1, wait=1.0, all_states=True))
            for t in ("sS", "sT") for n in counts]


def _loss(quick: bool) -> list:
    prefix = "198.18.0.0/22" if quick else "198.18.0.0/18"
    return [("2% loss, 2 retries", 100_000, Scan(prefix, "80", rate=100_000, retries=2, wait=1.0 if quick else 2.0))]


def _techniques(quick: bool) -> list:
    tcp = ",".join(map(str, sorted(TECH_TCP.values())))
    udp = ",".join(map(str, sorted(TECH_UDP.values())))
    return [(f"-{t}", None, Scan("198.18.0.0/29", udp if t == "sU" else tcp, technique=t, retries=1, wait=1.0,
                                 all_states=True))
            for t in (("sS", "sA", "sU") if quick else TECHNIQUES)]


def _top1000(quick: bool) -> list:
    prefix, n = ("198.18.0.0/28", 100) if quick else ("198.18.0.0/24", 1000)
    return [(f"top {n}", n, Scan(prefix, top_ports=n, rate=UNLIMITED, retries=0, wait=1.0, all_states=True))]


def _udp_ratelimit(quick: bool) -> list:
    # One ICMP bucket per destination (the scanner's address): about one answer a second in all.
    prefix, ports = ("198.18.0.0/31", "40-73") if quick else ("198.18.0.0/30", "40-73")
    return [(f"-sU {prefix} {ports}", None, Scan(prefix, ports, technique="sU", retries=1, wait=1.0,
                                       all_states=True))]


def _service(quick: bool) -> list:
    prefix = "198.18.0.0/30" if quick else "198.18.0.0/26"
    return [("-sV", None, Scan(prefix, ",".join(map(str, SERVICE_PORTS)), version=True, retries=1, wait=1.0))]


def _sendpath(quick: bool) -> list:
    prefix, n = ("198.18.0.0/20", 4) if quick else ("198.18.0.0/16", 16)
    return [(f"{prefix} x {n} ports", None, Scan(prefix, f"80-{80 + n - 1}", rate=UNLIMITED, wait=0, send_only=True))]


WORKLOADS = {w.name: w for w in [
    Workload("sparse", "Sparse sweep",
             "A /16 (--quick: a /20), one host in 16 live with port 80 open, SYN-scanned on port 80 with no "
             "retries at several rates. Coverage = live hosts reported open / live hosts.",
             lambda q: _sweep_lab("198.18.0.0/20" if q else "198.18.0.0/16", 16),
             _sweep("198.18.0.0/16", "198.18.0.0/20", (100_000, 300_000, UNLIMITED), (100_000, UNLIMITED), 2.0),
             x="rate", in_quick=True),
    Workload("dense", "Dense sweep",
             "A /18 (--quick: a /22) where every host answers on port 80: the target kernel's SYN-ACK work "
             "shares the two cores with the tools.",
             lambda q: _sweep_lab("198.18.0.0/22" if q else "198.18.0.0/18", 1),
             _sweep("198.18.0.0/18", "198.18.0.0/22", (100_000, UNLIMITED), (UNLIMITED,), 2.0), x="rate"),
    Workload("allports", "One host, every port",
             "One host (22, 80, 443 open, 8080 dropped, 8443 admin-prohibited, the rest closed), ports 1-N "
             "for several N, with SYN (-sS) and connect (-sT); 1 retry. Every port's state is compared with nmap's.",
             lambda q: LabSpec(prefix="198.18.0.1/32"), _allports, peers=("nmap", "masscan"), x="ports",
             in_quick=True),
    Workload("loss", "2% loss each way, with retries",
             "A /18 (--quick: a /22), one host in 16 live, port 80; nftables drops 2% of the packets at the "
             "target's ingress and 2% of its answers (numgen random); every tool resends twice (zmap: -P 3).",
             lambda q: _sweep_lab("198.18.0.0/22" if q else "198.18.0.0/18", 16, loss=2), _loss, x="rate"),
    Workload("techniques", "Every technique's states against nmap",
             "A /29, every other host live, TCP ports open/closed/dropped/reset/port-unreachable/"
             "admin-prohibited and UDP open/closed/dropped/port-unreachable/admin-prohibited; each technique "
             "(--quick: -sS -sA -sU) run by scanner and nmap; the share of (address, port) cells whose state "
             "equals nmap's.",
             lambda q: LabSpec(prefix="198.18.0.0/29", live_every=2, open_tcp=(TECH_TCP["open"],),
                               open_udp=(TECH_UDP["open"],), drop_tcp=(TECH_TCP["dropped"],),
                               drop_udp=(TECH_UDP["dropped"],),
                               reject_tcp={1001: "tcp-reset", 1002: "port-unreachable", 1003: "admin-prohibited"},
                               reject_udp={2002: "port-unreachable", 2003: "admin-prohibited"}),
             _techniques, peers=("nmap",), in_quick=True),
    Workload("top1000", "A /24 x the top 1000 ports",
             "A /24 (--quick: a /28 x top 100), one host in 4 live with 22, 80, 443 open, SYN scan at unlimited "
             "rate, no retries; every state compared with the lab's and nmap's.",
             lambda q: LabSpec(prefix="198.18.0.0/28" if q else "198.18.0.0/24", live_every=4, open_udp=(),
                               drop_tcp=(), reject_tcp={}),
             _top1000, peers=("nmap", "masscan"), x="ports"),
    Workload("udp-ratelimit", "UDP behind Linux's ICMP rate limit",
             "A /30 (--quick: a /31) x UDP ports 40-73, every host live, port 53 answering, the other ports "
             "closed; the target keeps Linux's ICMP rate limit (about one port-unreachable a second after a "
             "burst, per destination), as real hosts do.",
             lambda q: LabSpec(prefix="198.18.0.0/31" if q else "198.18.0.0/30", open_tcp=(), open_udp=(53,), drop_tcp=(), reject_tcp={},
                               icmp_ratelimit=True),
             _udp_ratelimit, peers=("nmap",)),
    Workload("service", "-sV on real services",
             "nginx (80), OpenSSH (22) and redis (6379) in the target namespace, answering on every address of "
             "a /26 (192 services; --quick: a /30). Agreement: the share of nmap's services whose name scanner "
             "also gives.",
             lambda q: LabSpec(prefix="198.18.0.0/30" if q else "198.18.0.0/26", open_tcp=(), open_udp=(),
                               drop_tcp=(), reject_tcp={}),
             _service, peers=("nmap",), servers=True),
    Workload("sendpath", "The send path alone",
             "A /16 x 16 ports (--quick: a /20 x 4) at unlimited rate into a target that drops everything at "
             "its netdev ingress: only sending is measured. The ceiling is bench/csend.c (AF_PACKET, "
             "PACKET_QDISC_BYPASS, 256 frames per sendmmsg, every frame built before the clock starts); "
             "scanner-packet is scanner held to its sendmmsg path (--send-path packet), scanner itself "
             "sends through AF_XDP where it binds.",
             lambda q: LabSpec(prefix="198.18.0.0/20" if q else "198.18.0.0/16", live_every=16, open_tcp=(80,),
                               open_udp=(), drop_tcp=(), reject_tcp={}, ingress_drop_all=True),
             _sendpath, peers=("masscan", "zmap", "csend", "scanner-packet"), in_quick=True),
]}
