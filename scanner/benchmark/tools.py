"""Each tool's argv for one scan, with the options that give its best result in the lab, and its
output read back as {(address, port): state} (and {(address, port): service name} for -sV).

Every option is explicit (rate, retries, wait), so that the comparison does not depend on any
tool's default timing."""
from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

PEERS = ("nmap", "masscan", "zmap")
UNLIMITED = 0
MASSCAN_MAX_RATE = 100_000_000      # masscan has no "unlimited": a rate it never reaches
MASSCAN_SPARE_NET = "198.19.253.0/24"  # routed back to the scanner's link inside the target ns only
MASSCAN_SPARE_SRC = "198.19.253.1"     # no kernel in the lab owns it: no RSTs to masscan's SYN-ACKs
NMAP_MAX_RATE = 1_000_000            # nmap's --min-rate for "unlimited"


@dataclass(frozen=True)
class Scan:
    """One scan, in terms every tool can be given."""
    targets: str                    # a CIDR block (or one address)
    ports: str = "80"               # nmap syntax: "80", "1-1024", "22,80"
    technique: str = "sS"           # sS sT sA sW sN sF sX sM sU
    rate: int = UNLIMITED           # packets/s, 0: as fast as the tool goes
    retries: int = 0
    wait: float = 1.0               # seconds to wait for late replies
    top_ports: int = 0              # instead of ports
    all_states: bool = False        # every (address, port) state, not only the open ones
    version: bool = False           # -sV
    send_only: bool = False         # the target drops everything: the send path alone

    @property
    def port_count(self) -> int:
        if self.top_ports:
            return self.top_ports
        return sum(int(b or a) - int(a) + 1 for a, _, b in (p.partition("-") for p in self.ports.split(",")))

    @property
    def host_count(self) -> int:
        return ipaddress.ip_network(self.targets, strict=False).num_addresses

    @property
    def probes(self) -> int:
        return self.host_count * self.port_count


class NotApplicable(Exception):
    """The tool cannot run this scan (the message says why)."""


def installed(tool: str) -> bool:
    return tool == "scanner" or shutil.which(tool) is not None


def _fmt(x: float) -> str:
    return f"{x:g}"


# -- scanner ----------------------------------------------------------------------------------

def scanner_env(checkout: Optional[Path] = None) -> dict:
    """The environment for `python -m scanner` in a namespace: this package (or the scanner of
    another checkout, its extensions built in place) first on the path."""
    env = dict(os.environ)
    root = str(checkout or Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def scanner_argv(scan: Scan, out: Path, send_path: Optional[str] = None) -> list[str]:
    # -Pn: no host discovery, as zmap and masscan; --no-db: bench runs stay out of the store. No -q:
    # the stderr summary carries the capture drop count.
    argv = [sys.executable, "-m", "scanner", scan.targets, "-Pn", "--no-db", f"-{scan.technique}"]
    argv += ["-sV"] if scan.version else []
    argv += ["--top-ports", str(scan.top_ports)] if scan.top_ports else ["-p", scan.ports]
    argv += ["--rate", str(scan.rate), "--retries", str(scan.retries), "--wait", _fmt(scan.wait)]
    argv += ["--send-path", send_path] if send_path else []
    return argv + (["--show-all"] if scan.all_states else []) + ["-oJ", str(out)]


def parse_scanner(out: Path) -> tuple[dict, dict]:
    states, services = {}, {}
    if out.exists():
        for line in out.read_text().splitlines():
            d = json.loads(line)
            key = (d["ip"], int(d["port"]))
            if d.get("details"):
                services[key] = d["service"].get("name")
            else:
                states[key] = d["state"]
                if d.get("service"):
                    services[key] = d["service"].get("name")
    return states, services


# -- nmap -------------------------------------------------------------------------------------

def nmap_argv(scan: Scan, out: Path) -> list[str]:
    # -T4 for the -sV/technique scans (nmap's own "fast and reliable"), -T5 for sweeps; --min-rate
    # holds nmap at the others' rate (--max-rate too when a rate is set).
    if scan.send_only:
        raise NotApplicable("nmap has no send-only mode: it waits for every probe's answer")
    argv = ["nmap", f"-{scan.technique}", "-Pn", "-n", "--reason"] + (["-sV"] if scan.version else [])
    argv += ["--top-ports", str(scan.top_ports)] if scan.top_ports else ["-p", scan.ports]
    argv += ["-T4" if scan.all_states or scan.version else "-T5", "--max-retries", str(scan.retries)]
    if scan.rate:
        argv += ["--min-rate", str(scan.rate), "--max-rate", str(scan.rate)]
    elif not scan.all_states and not scan.version:
        argv += ["--min-rate", str(NMAP_MAX_RATE), "--min-hostgroup", "4096"]
    return argv + ["-oX", str(out), scan.targets]


def _expand(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


def parse_nmap_xml(out: Path) -> tuple[dict, dict]:
    """nmap-format XML: listed ports, and <extraports> expanded from <extrareasons ports=...>."""
    states: dict = {}
    services: dict = {}
    if not out.exists() or not out.stat().st_size:
        return states, services
    try:
        root = ET.parse(out).getroot()
    except ET.ParseError:
        return states, services
    for host in root.iter("host"):
        addr = next((a.get("addr") for a in host.iter("address") if a.get("addrtype") in ("ipv4", "ipv6")), None)
        for port in host.iter("port"):
            key = (addr, int(port.get("portid", "0")))
            state = port.find("state")
            states[key] = None if state is None else state.get("state")
            svc = port.find("service")
            if svc is not None and svc.get("method") == "probed":
                services[key] = ("ssl/" if svc.get("tunnel") == "ssl" else "") + svc.get("name", "")
        for extra in host.iter("extraports"):
            for why in extra.iter("extrareasons"):
                for p in _expand(why.get("ports") or ""):
                    states[(addr, p)] = extra.get("state")
    return states, services


# -- masscan ----------------------------------------------------------------------------------

def masscan_argv(scan: Scan, out: Path, ifname: str, router_mac: str) -> list[str]:
    if scan.technique != "sS" or scan.version:
        raise NotApplicable("masscan sends SYNs only (it reports open ports only)")
    rate = scan.rate or MASSCAN_MAX_RATE
    ports = ["--top-ports", str(scan.top_ports)] if scan.top_ports else [f"-p{scan.ports}"]
    return ["masscan", scan.targets, *ports, "--interface", ifname, "--router-mac", router_mac,
            "--source-ip", MASSCAN_SPARE_SRC, "--rate", str(rate),
            # masscan 1.3.2 with --retries on one host resends without end (55M packets for 1024
            # probes here): retries only for more than one host.
            *(["--retries", str(scan.retries)] if scan.retries and scan.host_count > 1 else []),
            "--wait", str(max(1, round(scan.wait))), "-oL", str(out)]


DISCOVERED_RE = re.compile(r"Discovered open port (\d+)/tcp on (\S+)")


def parse_masscan(out: Path, log: str = "") -> tuple[dict, dict]:
    """-oL; when masscan had to be killed (it writes -oL only when it exits by itself or on
    SIGINT), the "Discovered open port" lines it printed as it went."""
    states = {}
    if out.exists():
        for line in out.read_text().splitlines():
            f = line.split()
            if len(f) >= 4 and f[0] == "open":
                states[(f[3], int(f[2]))] = "open"
    if not states:
        states = {(ip, int(port)): "open" for port, ip in DISCOVERED_RE.findall(log)}
    return states, {}


# -- zmap -------------------------------------------------------------------------------------

def zmap_argv(scan: Scan, out: Path, ifname: str, gateway_mac: str, blocklist: Path, meta: Path) -> list[str]:
    if scan.send_only:      # the same packet count: N probes per address to the first port
        port, probes = scan.ports.split(",")[0].split("-")[0], scan.port_count
    elif scan.technique != "sS" or scan.version or scan.top_ports or not scan.ports.isdigit():
        raise NotApplicable("zmap sends SYNs to one port per run")
    else:
        port, probes = scan.ports, scan.retries + 1
    # -P: probes per address (zmap's only way to resend); the empty -b overrides zmap's default
    # blocklist, which holds 198.18.0.0/15.
    return ["zmap", "-p", port, "-i", ifname, "-G", gateway_mac, "-b", str(blocklist),
            "-r", str(scan.rate), "-c", str(max(1, round(scan.wait))), "-P", str(probes),
            "-m", str(meta), "-o", str(out), scan.targets]


def parse_zmap(out: Path, port: int) -> tuple[dict, dict]:
    states = {}
    if out.exists():
        for line in out.read_text().split():
            try:
                states[(str(ipaddress.IPv4Address(line.split(",")[0])), port)] = "open"
            except ValueError:
                pass     # a header
    return states, {}


def zmap_drops(meta: Path) -> Optional[int]:
    try:
        return json.loads(meta.read_text()).get("pcap_drop")
    except (OSError, ValueError):
        return None
