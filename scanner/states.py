"""Port states and reasons: the codes the compiled parser writes, and the names nmap prints."""
import numpy as np

from ._ext.constants import ECHOES, PROBE_KIND_DTYPE, PROTOCOLS
from ._ext.parser import REASONS, REPLY_KINDS, RESULT_DTYPE, STATES

STATE_NAMES = {code: name for name, code in STATES.items()}
REASON_NAMES = {code: name for name, code in REASONS.items()}
PROTO_NUMBERS = PROTOCOLS                 # scanner's protocol names -> IP protocol numbers (ARP: 0)
PROTO_NAMES = {number: name for name, number in PROTO_NUMBERS.items()}
ECHO_NONE, ECHO_SNMP = ECHOES["none"], ECHOES["snmp"]    # ProbeKind.ck_echo besides an offset

__all__ = ["STATES", "REASONS", "REPLY_KINDS", "RESULT_DTYPE", "STATE_NAMES", "REASON_NAMES", "addresses",
           "PROTO_NAMES", "PROTO_NUMBERS", "PROBE_KIND_DTYPE", "take", "concatenate"]


_OCTET_DOT = [f"{i}." for i in range(256)]
_OCTET = [str(i) for i in range(256)]


def addresses(rows: np.ndarray) -> list:
    """The target address of each RESULT_DTYPE row, as text (IPv4 from ip, IPv6 from ip6)."""
    import ipaddress
    if len(rows) and rows["ip6"].any():
        return [str(ipaddress.IPv6Address(bytes(a))) for a in rows["ip6"]]
    return dotted(rows["ip"])


def dotted(ips: np.ndarray) -> list:
    """IPv4 addresses (uint32) as dotted-quad strings, from four octet lists (no ipaddress object
    per address: about 10x faster)."""
    a, b, c, d = np.asarray(ips, dtype=">u4").view(np.uint8).reshape(-1, 4).T.tolist()
    dot, last = _OCTET_DOT, _OCTET
    return [dot[w] + dot[x] + dot[y] + last[z] for w, x, y, z in zip(a, b, c, d)]


def host_keys(rows: np.ndarray) -> np.ndarray:
    """One sortable key per row naming its host: the address bytes in network order (IPv4 rows
    only: the address as a number, the same order and much quicker to sort and compare)."""
    if not rows["ip6"].any():
        return rows["ip"]
    keys = np.concatenate([rows["ip"].astype(">u4").view(np.uint8).reshape(-1, 4), rows["ip6"]], axis=1)
    return np.ascontiguousarray(keys).view(np.dtype((np.void, 20))).ravel()


# Rows copied as whole records: numpy copies a structured array with subarray fields (ip6,
# tcpopts) field by field, 4-6x slower than as opaque records of the same size.
_RECORD = np.dtype((np.void, RESULT_DTYPE.itemsize))


def take(rows: np.ndarray, which) -> np.ndarray:
    """rows[which] (indices or a mask) of RESULT_DTYPE rows, copied as whole records."""
    if rows.dtype != RESULT_DTYPE or not rows.flags.c_contiguous:
        return rows[which]
    return rows.view(_RECORD)[which].view(RESULT_DTYPE)


def concatenate(batches: list) -> np.ndarray:
    """np.concatenate of RESULT_DTYPE batches, copied as whole records."""
    if not batches:
        return np.zeros(0, dtype=RESULT_DTYPE)
    return np.concatenate([np.ascontiguousarray(b).view(_RECORD) for b in batches]).view(RESULT_DTYPE)
