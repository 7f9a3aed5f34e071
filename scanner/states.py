"""Port states and reasons: the codes the compiled parser writes, and the names nmap prints."""
import numpy as np

from ._ext.parser import REASONS, REPLY_KINDS, RESULT_DTYPE, STATES

STATE_NAMES = {code: name for name, code in STATES.items()}
REASON_NAMES = {code: name for name, code in REASONS.items()}
PROTO_NAMES = {0: "arp", 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}
PROTO_NUMBERS = {name: number for number, name in PROTO_NAMES.items()}

# How the compiled path describes a probe kind (ext/probes.pxd ProbeKind; packed, same order).
PROBE_KIND_DTYPE = np.dtype([("proto", "u1"), ("tcp_flags", "u1"), ("icmp_type", "u1"), ("ck_len", "u1"),
                             ("offset", "<i4"), ("length", "<i4"), ("ts_offset", "<i4"),
                             ("ck_at", "<i2"), ("ck_echo", "<i2"), ("table", "u1", (len(REPLY_KINDS),))])
# ck_echo besides an offset into the reply's payload (ext/probes.pxd ECHO_*)
ECHO_NONE, ECHO_SNMP = -1, -2

__all__ = ["STATES", "REASONS", "REPLY_KINDS", "RESULT_DTYPE", "STATE_NAMES", "REASON_NAMES", "addresses",
           "PROTO_NAMES", "PROTO_NUMBERS", "PROBE_KIND_DTYPE"]


def addresses(rows: np.ndarray) -> list:
    """The target address of each RESULT_DTYPE row, as text (IPv4 from ip, IPv6 from ip6)."""
    import ipaddress
    if len(rows) and rows["ip6"].any():
        return [str(ipaddress.IPv6Address(bytes(a))) for a in rows["ip6"]]
    return [str(ipaddress.IPv4Address(a)) for a in rows["ip"].tolist()]


def host_keys(rows: np.ndarray) -> np.ndarray:
    """One sortable key per row naming its host: the address bytes in network order."""
    keys = np.concatenate([rows["ip"].astype(">u4").view(np.uint8).reshape(-1, 4), rows["ip6"]], axis=1)
    return np.ascontiguousarray(keys).view(np.dtype((np.void, 20))).ravel()
