"""What this process may do on the network, from its capabilities rather than its uid (as nmap's
--privileged and ping do): raw scans need CAP_NET_RAW (raw and packet sockets, capture);
CAP_NET_ADMIN lets the sender force a large socket buffer (SO_SNDBUFFORCE, else it falls back to
SO_SNDBUF). A non-root user given the capabilities (setcap, ambient capabilities, a container)
may raw-scan; a root without CAP_NET_RAW (a locked-down container) may not."""
from __future__ import annotations

import os

CAP_NET_ADMIN = 12
CAP_NET_RAW = 13


def effective_capabilities(status_path: str = "/proc/self/status") -> int:
    """The effective capability mask (CapEff). Without a readable /proc: all of them for root,
    none otherwise (the uid is then the best evidence there is)."""
    try:
        with open(status_path, encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return -1 if os.geteuid() == 0 else 0


def has_capability(cap: int, status_path: str = "/proc/self/status") -> bool:
    return bool(effective_capabilities(status_path) >> cap & 1)


def can_raw_scan(status_path: str = "/proc/self/status") -> bool:
    """Whether raw techniques (-sS -sA -sU ..., host discovery, -O) can run: CAP_NET_RAW."""
    return has_capability(CAP_NET_RAW, status_path)


def missing_for_raw_scan(status_path: str = "/proc/self/status") -> str:
    """'' when raw scans can run, else a one-line reason for an error message."""
    if can_raw_scan(status_path):
        return ""
    who = "root without CAP_NET_RAW" if os.geteuid() == 0 else "not root and without CAP_NET_RAW"
    return f"raw scans need CAP_NET_RAW ({who}): run as root, grant it (setcap cap_net_raw,cap_net_admin+eip), or use -sT"
