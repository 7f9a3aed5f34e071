"""nmap-style TCP port specs and the top-ports frequency list."""
from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from typing import Optional

import numpy as np

from .errors import InputError

DEFAULT_TOP_PORTS = 1000  # nmap scans its top 1000 TCP ports when no -p is given
_NUM = re.compile(r"[0-9]+")


@lru_cache(maxsize=1)
def _services() -> dict:
    """TCP port -> usual service name, most frequent first (shipped data file, never /usr/share/nmap)."""
    text = resources.files("scanner").joinpath("data/top-ports-tcp.txt").read_text(encoding="ascii")
    rows = (line.split() for line in text.split("\n") if line.strip() and not line.startswith("#"))
    return {int(port): name for port, name in rows}


@lru_cache(maxsize=1)
def _ranked() -> np.ndarray:
    """All TCP ports, most frequent first."""
    arr = np.array(list(_services()), dtype=np.uint16)
    arr.setflags(write=False)  # cached and shared: callers get copies
    return arr


def service_name(port: int) -> str:
    """The service usually found on a TCP port, as nmap names it ("unknown" if none)."""
    return _services().get(int(port), "unknown")


def top_ports(n: int) -> np.ndarray:
    """The n most frequent TCP ports in frequency order (all of them if n is larger)."""
    if n < 1:
        raise InputError(f"--top-ports must be at least 1, got {n}")
    return _ranked()[:n].copy()


def _port(text: str, item: str, spec: str) -> int:
    if not _NUM.fullmatch(text):
        raise InputError(f"bad port spec '{spec}': '{item}' is not a port number or range")
    value = int(text)
    if value > 65535:
        raise InputError(f"bad port spec '{spec}': port {value} in '{item}' is out of range 0-65535")
    return value


def _parse_spec(spec: str) -> np.ndarray:
    """Boolean mask of the 65536 ports selected by an nmap -p spec."""
    mask = np.zeros(65536, dtype=bool)
    if not spec.strip():
        raise InputError("bad port spec '': empty")
    proto = "T"
    for raw in spec.split(","):
        item = raw.strip()
        # nmap's protocol prefixes apply to this and the following items.
        m = re.match(r"([A-Za-z]):", item)
        if m:
            proto = m.group(1).upper()
            item = item[2:].strip()
            if proto not in "TUS":
                raise InputError(f"bad port spec '{spec}': unknown protocol prefix '{m.group(0)}'")
        if proto == "U":
            raise InputError("UDP ports (U:) need -sU, which is not supported yet")
        if proto == "S":
            raise InputError("SCTP ports (S:) need -sY, which is not supported yet")
        if not item:
            raise InputError(f"bad port spec '{spec}': empty entry")
        if "-" in item:
            lo_text, _, hi_text = item.partition("-")
            # Open ends like nmap: '-' is 1-65535, '-1024' is 1-1024, '60000-' is 60000-65535.
            lo = _port(lo_text, item, spec) if lo_text else 1
            hi = _port(hi_text, item, spec) if hi_text else 65535
            if lo > hi:
                raise InputError(f"bad port spec '{spec}': range '{item}' is reversed")
            mask[lo:hi + 1] = True
        else:
            mask[_port(item, item, spec)] = True
    return mask


def parse_ports(spec: Optional[str], top_ports: Optional[int] = None) -> np.ndarray:
    """Sorted unique uint16 ports from an nmap -p spec and/or --top-ports.

    With both, the n most frequent ports within the spec are chosen (as nmap does).
    With neither, the top 1000 TCP ports.
    """
    if spec is None and top_ports is None:
        top_ports = DEFAULT_TOP_PORTS
    if top_ports is not None and top_ports < 1:
        raise InputError(f"--top-ports must be at least 1, got {top_ports}")
    if spec is None:
        return np.sort(_ranked()[:top_ports])
    mask = _parse_spec(spec)
    if top_ports is None:
        return np.flatnonzero(mask).astype(np.uint16)
    ranked = _ranked()
    chosen = ranked[mask[ranked]][:top_ports]
    if chosen.size == 0:
        raise InputError(f"bad port spec '{spec}': none of these ports is in the top-ports list")
    return np.sort(chosen)


def format_ports(ports) -> str:
    """Compact ports into nmap syntax, e.g. '22,80,1000-2000'."""
    values = np.unique(np.asarray(ports, dtype=np.int64))
    if values.size == 0:
        return ""
    # Runs of consecutive ports start where the gap to the previous one is not 1.
    breaks = np.flatnonzero(np.diff(values) != 1) + 1
    parts = []
    for run in np.split(values, breaks):
        lo, hi = int(run[0]), int(run[-1])
        parts.append(str(lo) if lo == hi else f"{lo}-{hi}")
    return ",".join(parts)
