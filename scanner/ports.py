"""nmap-style TCP port specs and the top-ports frequency list."""
from __future__ import annotations

import fnmatch
import re
from functools import lru_cache
import os
from typing import Optional

import numpy as np

from .errors import InputError

DATA = os.path.join(os.path.dirname(__file__), "data")   # shipped with the package (no importlib.resources: start-up)
DEFAULT_TOP_PORTS = 1000  # nmap scans its top 1000 TCP ports when no -p is given
_NUM = re.compile(r"[0-9]+")


@lru_cache(maxsize=3)
def _services(proto: str = "tcp") -> dict:
    """Port -> usual service name, most frequent first (shipped data files, never /usr/share/nmap)."""
    with open(os.path.join(DATA, f"top-ports-{proto}.txt"), encoding="ascii") as f:
        text = f.read()
    rows = (line.split() for line in text.split("\n") if line.strip() and not line.startswith("#"))
    return {int(port): name for port, name in rows}


@lru_cache(maxsize=3)
def _ranked(proto: str = "tcp") -> np.ndarray:
    """All ports of a protocol, most frequent first."""
    arr = np.array(list(_services(proto)), dtype=np.uint16)
    arr.setflags(write=False)  # cached and shared: callers get copies
    return arr


@lru_cache(maxsize=1)
def _ip_protocols() -> dict:
    """IP protocol number -> name, as nmap names them (shipped data file)."""
    with open(os.path.join(DATA, "ip-protocols.txt"), encoding="ascii") as f:
        rows = (line.split() for line in f if line.strip() and not line.startswith("#"))
        return {int(number): name for number, name in rows}


def service_name(port: int, proto: str = "tcp") -> str:
    """The service usually found on a port, as nmap names it ("unknown" if none)."""
    if proto == "ip":                       # -sO: the port is an IP protocol number
        return _ip_protocols().get(int(port), "unknown")
    if proto not in ("tcp", "udp", "sctp"):
        return ""
    return _services(proto).get(int(port), "unknown")


def top_ports(n: int, proto: str = "tcp") -> np.ndarray:
    """The n most frequent ports in frequency order (all of them if n is larger)."""
    if n < 1:
        raise InputError(f"--top-ports must be at least 1, got {n}")
    return _ranked(proto)[:n].copy()


def _port(text: str, item: str, spec: str) -> int:
    if not _NUM.fullmatch(text):
        raise InputError(f"bad port spec '{spec}': '{item}' is not a port number or range")
    value = int(text)
    if value > 65535:
        raise InputError(f"bad port spec '{spec}': port {value} in '{item}' is out of range 0-65535")
    return value


def _parse_spec(spec: str) -> dict:
    """Boolean masks of the 65536 ports an nmap -p spec selects, per protocol ("tcp", "udp", "sctp").
    Unqualified items count for all, as in nmap; T:, U: and S: apply to the items that follow."""
    masks = {proto: np.zeros(65536, dtype=bool) for proto in ("tcp", "udp", "sctp")}
    if not spec.strip():
        raise InputError("bad port spec '': empty")
    protos: tuple = ("tcp", "udp", "sctp")
    for raw in spec.split(","):
        item = raw.strip()
        m = re.match(r"([A-Za-z]):", item)
        if m:
            prefix = m.group(1).upper()
            item = item[2:].strip()
            if prefix not in "TUS":
                raise InputError(f"bad port spec '{spec}': unknown protocol prefix '{m.group(0)}'")
            protos = ({"T": "tcp", "U": "udp", "S": "sctp"}[prefix],)
        if not item:
            raise InputError(f"bad port spec '{spec}': empty entry")
        known = None
        if item.startswith("[") and item.endswith("]"):
            # nmap: [1-1024] is the ports of the range that have a service name
            item, known = item[1:-1].strip(), True
            if not item:
                raise InputError(f"bad port spec '{spec}': empty []")
        if re.search(r"[A-Za-z*?]", item):       # service names (ssh, http*), as nmap-services names them
            matched = False
            for proto in protos:
                ports = [p for p, name in _services(proto).items() if fnmatch.fnmatchcase(name, item.lower())]
                masks[proto][ports] = True
                matched |= bool(ports)
            if not matched:
                raise InputError(f"bad port spec '{spec}': no service is named '{item}'")
            continue
        if "-" in item:
            lo_text, _, hi_text = item.partition("-")
            # Open ends like nmap: '-' is 1-65535, '-1024' is 1-1024, '60000-' is 60000-65535.
            lo = _port(lo_text, item, spec) if lo_text else 1
            hi = _port(hi_text, item, spec) if hi_text else 65535
            if lo > hi:
                raise InputError(f"bad port spec '{spec}': range '{item}' is reversed")
            selected = slice(lo, hi + 1)
        else:
            selected = _port(item, item, spec)  # type: ignore[assignment]
        for proto in protos:
            if known:
                named = np.zeros(65536, dtype=bool)
                named[list(_services(proto))] = True
                masks[proto][selected] |= named[selected]
            else:
                masks[proto][selected] = True
    return masks


def _select(mask: Optional[np.ndarray], top: Optional[int], proto: str, spec: Optional[str]) -> np.ndarray:
    """The ports of one protocol: those of the spec, or the top ones, or the top ones within it."""
    if mask is None:
        return np.sort(_ranked(proto)[:top])
    if top is None:
        return np.flatnonzero(mask).astype(np.uint16)
    ranked = _ranked(proto)
    chosen = ranked[mask[ranked]][:top]
    if chosen.size == 0:
        raise InputError(f"bad port spec '{spec}': none of these ports is in the top-ports list")
    return np.sort(chosen)


def port_lists(spec: Optional[str], top_ports: Optional[int], tcp: bool = True, udp: bool = False,
               sctp: bool = False):
    """(TCP ports, UDP ports) for a scan, each sorted unique uint16 (empty if not scanned); with
    sctp=True, (TCP, UDP, SCTP ports).

    With neither a spec nor --top-ports, the top 1000 of each scanned protocol, as nmap does."""
    if spec is None and top_ports is None:
        top_ports = DEFAULT_TOP_PORTS
    if top_ports is not None and top_ports < 1:
        raise InputError(f"--top-ports must be at least 1, got {top_ports}")
    masks = _parse_spec(spec) if spec is not None else {"tcp": None, "udp": None, "sctp": None}
    if spec is not None and not udp and "U:" in spec.upper().replace(" ", ""):
        raise InputError("UDP ports (U:) need the UDP scan: add -sU")
    if spec is not None and not sctp and "S:" in spec.upper().replace(" ", ""):
        raise InputError("SCTP ports (S:) need an SCTP scan: add -sY or -sZ")
    empty = np.zeros(0, dtype=np.uint16)
    lists: tuple = (_select(masks["tcp"], top_ports, "tcp", spec) if tcp else empty,
             _select(masks["udp"], top_ports, "udp", spec) if udp else empty)
    if sctp:
        lists += (_select(masks["sctp"], top_ports, "sctp", spec),)
    if spec is not None and not any(len(ports) for ports in lists):
        raise InputError(f"bad port spec '{spec}': no ports for the protocols being scanned")
    return lists


def parse_ports(spec: Optional[str], top_ports: Optional[int] = None) -> np.ndarray:
    """Sorted unique uint16 TCP ports from an nmap -p spec and/or --top-ports (the top 1000
    when neither is given); with both, the most frequent ports within the spec."""
    return port_lists(spec, top_ports)[0]


def format_ports(ports) -> str:
    """Compact ports into nmap syntax, e.g. '22,80,1000-2000'."""
    # Sorted and deduplicated by hand: np.unique would import numpy.ma (~15 ms) on the way to
    # the first probe (output headers list the scan's ports).
    values = np.sort(np.asarray(ports, dtype=np.int64).reshape(-1))
    if values.size == 0:
        return ""
    values = values[np.concatenate(([True], values[1:] != values[:-1]))]
    # Runs of consecutive ports start where the gap to the previous one is not 1.
    breaks = np.flatnonzero(np.diff(values) != 1) + 1
    parts = []
    for run in np.split(values, breaks):
        lo, hi = int(run[0]), int(run[-1])
        parts.append(str(lo) if lo == hi else f"{lo}-{hi}")
    return ",".join(parts)
