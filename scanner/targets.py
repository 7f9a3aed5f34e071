"""Target parsing: IPv4 into merged integer intervals, IPv6 into packed address rows.

IPv4 targets are never expanded into address lists: a /8 is one (start, end) pair.
Intervals are inclusive (start, end) tuples of ints; the number of intervals is
small, so the arithmetic is plain Python and numpy is only used for the final
arrays the hot path consumes. IPv6 targets are a sorted (n, 16) uint8 array (16 bytes
an address, no Python object per address): hitlists from -iL are parsed into it in
chunks by compiled code, prefixes and ranges are expanded into it by numpy.
"""
from __future__ import annotations

import bisect
import ipaddress
import os
import re
import socket
import stat
import sys
from functools import lru_cache
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import InputError

Interval = Tuple[int, int]

_MAX = 0xFFFFFFFF
# Hostname labels per RFC 1123; checked before resolving so junk never hits DNS.
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
_NUMERIC = re.compile(r"^[0-9.]+$")


def ip_to_int(addr: str) -> int:
    try:
        return int(ipaddress.IPv4Address(addr.strip()))
    except (ipaddress.AddressValueError, ValueError):
        raise InputError(f"bad IPv4 address '{addr}'") from None


def int_to_ip(value: int) -> str:
    return str(ipaddress.IPv4Address(int(value)))


def _ipv4(text: str) -> Optional[int]:
    """The address as int, or None if text is not a dotted-quad IPv4 literal."""
    try:
        return int(ipaddress.IPv4Address(text))
    except ValueError:
        return None


def _looks_like_hostname(text: str) -> bool:
    # All-numeric specs (e.g. 300.1.1.1) are bad addresses, not names to look up.
    if not text or len(text) > 253 or _NUMERIC.match(text):
        return False
    return all(_LABEL.match(label) for label in text.rstrip(".").split("."))


def _resolve(host: str, spec: str, what: str, family: int = 4) -> List[int]:
    """The addresses of a hostname (A records, or AAAA for family 6), resolved once."""
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET6 if family == 6 else socket.AF_INET,
                                   socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise InputError(f"bad {what} '{spec}': cannot resolve hostname '{host}' ({reason})") from None
    addrs = sorted({int(ipaddress.ip_address(str(info[4][0]).split("%")[0])) for info in infos})
    if not addrs:
        raise InputError(f"bad {what} '{spec}': hostname '{host}' has no IPv{family} address")
    return addrs


# IPv6 targets are held as a sorted array of 16-byte addresses for the compiled path: 2^25
# addresses (33.5 million, a 512 MiB array) keep a scan's memory under 1 GiB while it is sorted.
MAX_IPV6_HOSTS = 1 << 25
_BE64 = np.dtype(">u8")


def _rows6(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """(n, 16) uint8 address rows of the 64-bit halves."""
    out = np.empty((len(hi), 2), dtype=_BE64)
    out[:, 0], out[:, 1] = hi, lo
    return out.view(np.uint8).reshape(-1, 16)


def _halves6(rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The native uint64 (high, low) halves of (n, 16) address rows."""
    words = np.ascontiguousarray(rows).view(_BE64).reshape(-1, 2)
    return words[:, 0].astype(np.uint64), words[:, 1].astype(np.uint64)


def _expand6(intervals: Sequence[Interval]) -> np.ndarray:
    """The addresses of IPv6 intervals as (n, 16) rows (at most MAX_IPV6_HOSTS of them)."""
    total = sum(e - s + 1 for s, e in intervals)
    if total > MAX_IPV6_HOSTS:
        raise InputError(f"{total} IPv6 targets is too many to scan (at most {MAX_IPV6_HOSTS}: use prefixes of "
                         "/103 or longer, or a hitlist)")
    parts = []
    for start, end in intervals:
        lo = np.uint64(start & 0xFFFFFFFFFFFFFFFF) + np.arange(end - start + 1, dtype=np.uint64)
        hi = np.uint64(start >> 64) + (lo < np.uint64(start & 0xFFFFFFFFFFFFFFFF)).astype(np.uint64)
        parts.append(_rows6(hi, lo))
    return np.concatenate(parts) if parts else np.zeros((0, 16), dtype=np.uint8)


def _keys6(rows: np.ndarray) -> np.ndarray:
    """Address rows as one sortable, searchable 16-byte string each (a view, no copy)."""
    return np.ascontiguousarray(rows).view("S16").reshape(-1)


def _addr_key(value: int) -> np.ndarray:
    return np.array([value.to_bytes(16, "big")], dtype="S16")


def _drop6(rows: np.ndarray, drop: Sequence[Interval]) -> np.ndarray:
    """Sorted address rows minus the addresses in the (merged) intervals."""
    if not drop or not len(rows):
        return rows
    keys = _keys6(rows)
    keep = np.ones(len(rows), dtype=bool)
    for start, end in drop:
        a = int(np.searchsorted(keys, _addr_key(start)[0], side="left"))
        b = int(np.searchsorted(keys, _addr_key(end)[0], side="right"))
        keep[a:b] = False
    return rows if keep.all() else rows[keep]


def _sorted_unique6(parts: Sequence[np.ndarray]) -> np.ndarray:
    """The distinct addresses of several row arrays, sorted, in one array (peak: twice its size)."""
    from ._ext.hitlist import sort_unique16
    total = sum(len(p) for p in parts)
    if total > MAX_IPV6_HOSTS:
        raise InputError(f"{total} IPv6 targets is too many to scan (at most {MAX_IPV6_HOSTS})")
    rows = np.empty((total, 16), dtype=np.uint8)
    at = 0
    for p in parts:
        rows[at:at + len(p)] = p
        at += len(p)
    n = sort_unique16(rows)
    return rows if n == total else rows[:n].copy()

# IANA's IPv4 and IPv6 Special-Purpose Address Registries: the ranges that are not globally
# reachable, with multicast and the limited broadcast. A target block that merely contains one
# (0.0.0.0/0, 192.0.0.0/2, ...) is scanned without it; a target inside one (a lab in 198.18.0.0/15,
# 127.0.0.1) is scanned. --no-default-exclude turns this off. (Globally reachable
# registry entries such as AS112 or AMT are scanned; in 2001::/23 only its listed non-global
# blocks are left out.)
SPECIAL_PURPOSE = (
    ("0.0.0.0/8", "this network"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("255.255.255.255/32", "limited broadcast"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::ffff:0:0/96", "IPv4-mapped"),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation"),
    ("100::/64", "discard-only"),
    ("100:0:0:1::/64", "dummy prefix"),
    ("2001::/32", "TEREDO"),
    ("2001:1::1/128", "port control protocol anycast"),
    ("2001:1::2/128", "traversal using relays around NAT anycast"),
    ("2001:1::3/128", "DNS-SD service registration protocol anycast"),
    ("2001:2::/48", "benchmarking"),
    ("2001:10::/28", "deprecated ORCHID"),
    ("2001:db8::/32", "documentation"),
    ("2002::/16", "6to4"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing SIDs"),
    ("fc00::/7", "unique local"),
    ("fe80::/10", "link local"),
    ("ff00::/8", "multicast"),
)


@lru_cache(maxsize=2)
def _special_ranges(family: int) -> List[Tuple[int, int, str]]:
    """(first, last, prefix) of the special-purpose ranges of a family, sorted."""
    out = []
    for prefix, _ in SPECIAL_PURPOSE:
        net = ipaddress.ip_network(prefix)
        if net.version == family:
            out.append((int(net.network_address), int(net.broadcast_address), prefix))
    return sorted(out)


def without_special(intervals: List[Interval], family: int) -> List[Interval]:
    """One target's intervals minus the special-purpose ranges they merely contain: a range stays
    where the interval lies inside it (the target names something in it)."""
    out: List[Interval] = []
    for start, end in intervals:
        drop = [(s, e) for s, e, _ in _special_ranges(family)
                if s <= end and e >= start and not (s <= start and end <= e)]
        out += _subtract([(start, end)], _merge(drop))
    return out


def _parse_ipv6(s: str, spec: str, what: str) -> List[Interval]:
    """An IPv6 address, prefix or dash range of full addresses, as 128-bit int intervals."""
    bad = f"bad {what} '{spec}'"
    if "-" in s:
        left, _, right = s.partition("-")
        try:
            start, end = int(ipaddress.IPv6Address(left)), int(ipaddress.IPv6Address(right))
        except ValueError:
            raise InputError(f"{bad}: not an IPv6 address range") from None
        if end < start:
            raise InputError(f"{bad}: range end is before its start")
        return [(start, end)]
    try:
        net = ipaddress.IPv6Network(s, strict=False)
    except ValueError:
        raise InputError(f"{bad}: not an IPv6 address or prefix") from None
    return [(int(net.network_address), int(net.broadcast_address))]


def parse_target_family(spec: str, what: str = "target", ipv6: bool = False):
    """(4 or 6, intervals) of one target spec. IPv6 addresses and prefixes are recognised by
    their colons; hostnames resolve to IPv6 addresses only with ipv6 (nmap's -6)."""
    s = spec.strip()
    if ":" in s:
        return 6, _parse_ipv6(s, spec, what)
    if ipv6 and s and _ipv4(s.partition("/")[0].partition("-")[0]) is None and _looks_like_hostname(s):
        return 6, [(a, a) for a in _resolve(s, spec, what, family=6)]
    return 4, parse_target(s, what)


def parse_target(spec: str, what: str = "target") -> List[Interval]:
    """Parse one IPv4 target spec into sorted, merged inclusive (start, end) int intervals.

    Accepts an address, CIDR (host bits are masked off, like nmap), a dash range
    (a.b.c.d-e.f.g.h or nmap's short a.b.c.d-N last-octet form) or a hostname
    (all A records, optionally with /prefix). `what` only names the spec in errors.
    """
    s = spec.strip()
    bad = f"bad {what} '{spec}'"
    if not s:
        raise InputError(f"bad {what} '{spec}': empty")
    if ":" in s:
        raise InputError(f"{bad}: not an IPv4 address, CIDR, range or resolvable hostname")

    addr = _ipv4(s)
    if addr is not None:
        return [(addr, addr)]

    if "/" in s:
        host, _, prefix = s.partition("/")
        if not re.fullmatch(r"[0-9]{1,2}", prefix) or int(prefix) > 32:
            raise InputError(f"{bad}: CIDR prefix '/{prefix}' must be 0-32")
        bits = int(prefix)
        base = _ipv4(host)
        if base is not None:
            bases = [base]
        elif _looks_like_hostname(host):
            bases = _resolve(host, spec, what)
        else:
            raise InputError(f"{bad}: '{host}' is not an IPv4 address or hostname")
        mask = (_MAX << (32 - bits)) & _MAX
        return _merge((b & mask, (b & mask) | (~mask & _MAX)) for b in bases)

    if "-" in s:
        left, _, right = s.partition("-")
        start = _ipv4(left)
        # Hostnames may contain '-', so a non-address left side falls through to DNS.
        if start is not None:
            if re.fullmatch(r"[0-9]{1,3}", right):
                last = int(right)
                if last > 255:
                    raise InputError(f"{bad}: last octet {last} is out of range 0-255")
                end = (start & 0xFFFFFF00) | last
            else:
                end = _ipv4(right)  # type: ignore[assignment]
                if end is None:
                    raise InputError(f"{bad}: range end '{right}' is not an IPv4 address or octet")
            if end < start:
                raise InputError(f"{bad}: range end is before its start")
            return [(start, end)]

    if OCTET_PATTERN.fullmatch(s) and not _NUMERIC.match(s):
        return _octet_pattern(s, bad)       # nmap's 198.18.0.*, 198.18.0.1,3,5, 198.18.0-3.1-10: never DNS
    if _looks_like_hostname(s):
        return [(a, a) for a in _resolve(s, spec, what)]
    raise InputError(f"{bad}: not an IPv4 address, CIDR, range or resolvable hostname")


# nmap's octet patterns: four parts, each '*' or a comma list of numbers and ranges (1-10, -5, 250-).
_OCTET = r"(?:\*|(?:[0-9]{0,3}-[0-9]{0,3}|[0-9]{1,3})(?:,(?:[0-9]{0,3}-[0-9]{0,3}|[0-9]{1,3}))*)"
OCTET_PATTERN = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")
MAX_PATTERN_INTERVALS = 1 << 18


def _octet_pattern(s: str, bad: str) -> List[Interval]:
    """The addresses of an nmap octet pattern, as merged intervals (the last octet's ranges stay
    ranges; the first three octets are expanded)."""
    octets = []
    for part in s.split("."):
        ranges = []
        for item in part.split(","):
            if item == "*":
                lo, hi = 0, 255
            elif "-" in item:
                a, _, b = item.partition("-")
                lo, hi = int(a) if a else 0, int(b) if b else 255
            else:
                lo = hi = int(item)
            if hi > 255 or lo > hi:
                raise InputError(f"{bad}: octet range '{item}' must be within 0-255, low to high")
            ranges.append((lo, hi))
        octets.append(_merge(ranges))
    prefixes = [0]
    for ranges in octets[:3]:
        prefixes = [(p << 8) | v for p in prefixes for lo, hi in ranges for v in range(lo, hi + 1)]
        if len(prefixes) * len(octets[3]) > MAX_PATTERN_INTERVALS:
            raise InputError(f"{bad}: too many address ranges in one pattern (use a CIDR block)")
    return _merge(((p << 8) | lo, (p << 8) | hi) for p in prefixes for lo, hi in octets[3])


# A target file's lines are short (an address, a range, a name); a longer one is not a target list
# (e.g. -iL /dev/zero), and reading it whole would never end.
MAX_TARGET_LINE = 4096


def read_target_file(path: str) -> List[str]:
    """Specs from a file: whitespace/newline separated, '#' starts a comment. '-' is stdin."""
    specs: List[str] = []
    try:
        f = sys.stdin if path == "-" else open(path, encoding="utf-8")
        try:
            while True:
                line = f.readline(MAX_TARGET_LINE + 1)
                if not line:
                    break
                if len(line) > MAX_TARGET_LINE or "\0" in line:
                    raise InputError(f"target file '{path}' is not a list of targets "
                                     f"(a line longer than {MAX_TARGET_LINE} characters, or binary data)")
                specs.extend(line.split("#", 1)[0].split())
        finally:
            if f is not sys.stdin:
                f.close()
    except OSError as e:
        raise InputError(f"cannot read target file '{path}': {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise InputError(f"cannot read target file '{path}': not a text file") from None
    return specs


# -iL files are read in pieces of this size: only the IPv6 addresses parsed so far stay in memory.
READ_CHUNK = 4 << 20


def read_target_file_packed(path: str) -> Tuple[List[str], np.ndarray]:
    """A target file as (its words that are not IPv6 addresses, its distinct IPv6 addresses as a
    sorted (n, 16) uint8 array): a hitlist of millions of addresses never becomes Python objects
    and is held once (parsed into one array reserved up front, of which only the pages written
    to take memory; sorted and deduplicated in place). Same rules as read_target_file."""
    from ._ext.hitlist import parse_chunk, sort_unique16
    specs: List[str] = []
    not_targets = InputError(f"target file '{path}' is not a list of targets "
                             f"(a line longer than {MAX_TARGET_LINE} characters, or binary data)")
    try:
        f = sys.stdin.buffer if path == "-" else open(path, "rb")
        try:
            size = os.fstat(f.fileno()).st_size if path != "-" else 0
            room = 2 * MAX_IPV6_HOSTS          # before deduplication
            if size > 0 and stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                room = min(room, size // 3 + 1)       # an address takes at least 3 bytes ("::\n")
            rows = np.empty((room, 16), dtype=np.uint8)
            n, tail = 0, b""
            while True:
                data = f.read(READ_CHUNK)
                text = tail + data
                if not text:
                    break
                cut = len(text) if not data else text.rfind(b"\n") + 1
                tail = text[cut:]
                if len(tail) > MAX_TARGET_LINE:
                    raise not_targets
                got, others, status = parse_chunk(text[:cut], MAX_TARGET_LINE, rows, n)
                n += got
                if status == 1:
                    raise not_targets
                if status == 2:
                    raise InputError(f"target file '{path}' holds more than {MAX_IPV6_HOSTS} IPv6 addresses")
                specs += [w.decode("utf-8") for w in others]
                if not data:
                    break
        finally:
            if f is not sys.stdin.buffer:
                f.close()
    except OSError as e:
        raise InputError(f"cannot read target file '{path}': {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise InputError(f"cannot read target file '{path}': not a text file") from None
    m = sort_unique16(rows[:n])
    if m > MAX_IPV6_HOSTS:
        raise InputError(f"target file '{path}' holds more than {MAX_IPV6_HOSTS} IPv6 addresses")
    return specs, rows[:m]


def _merge(intervals: Iterable[Interval]) -> List[Interval]:
    """Sort and merge overlapping or adjacent intervals."""
    out: List[Interval] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1] + 1:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _subtract(keep: List[Interval], drop: List[Interval]) -> List[Interval]:
    """keep minus drop; both must be merged and sorted."""
    out: List[Interval] = []
    j = 0
    for start, end in keep:
        # Skip excludes wholly before this interval; they can't touch later ones either.
        while j < len(drop) and drop[j][1] < start:
            j += 1
        k = j
        while k < len(drop) and drop[k][0] <= end:
            ds, de = drop[k]
            if ds > start:
                out.append((start, ds - 1))
            start = de + 1
            if start > end:
                break
            k += 1
        if start <= end:
            out.append((start, end))
    return out


def _split_specs(items: Iterable[str]) -> List[str]:
    # Commas are accepted as separators too (nmap's --exclude a,b,c), except inside an octet
    # pattern (198.18.0.1,3,5).
    return [p for item in items for word in item.split() if word
            for p in ([word] if OCTET_PATTERN.fullmatch(word) else word.split(",")) if p]


class TargetSet:
    """Sorted, merged, non-overlapping inclusive intervals of IPv4 (32-bit) addresses, or a sorted
    array of distinct IPv6 addresses (hosts6, 16 bytes each)."""

    def __init__(self, intervals: Iterable[Interval] = (), family: int = 4,
                 hosts6: Optional[np.ndarray] = None, hosts6_sorted: bool = False):
        self.family = family
        if family == 4:
            self._ranges: Optional[List[Interval]] = _merge(intervals)
            self._starts_list = [s for s, _ in self._ranges]
            self.count = sum(e - s + 1 for s, e in self._ranges)
            self.starts = np.array(self._starts_list, dtype=np.uint32)
            self.ends = np.array([e for _, e in self._ranges], dtype=np.uint32)
            return
        if hosts6 is None:
            hosts6 = _expand6(_merge(intervals))
        elif len(hosts6) > 1 and not hosts6_sorted:
            keys = _keys6(hosts6)
            if not (keys[1:] > keys[:-1]).all():
                hosts6 = _sorted_unique6([hosts6])
        self._hosts6 = np.ascontiguousarray(hosts6, dtype=np.uint8).reshape(-1, 16)
        self._ranges = None            # built from the array only when asked for (ranges())
        self.count = len(self._hosts6)

    @classmethod
    def of_hosts6(cls, rows: np.ndarray) -> "TargetSet":
        """The IPv6 targets of (n, 16) address rows, in any order, repeats allowed."""
        return cls(family=6, hosts6=np.asarray(rows, dtype=np.uint8).reshape(-1, 16))

    @property
    def hosts6(self) -> np.ndarray:
        """The IPv6 addresses, sorted, as an (n, 16) uint8 array in network byte order."""
        return self._hosts6

    # What the special-purpose exclusion removed (from_specs): (address count, prefixes touched).
    special_excluded: Tuple[int, List[str]] = (0, [])

    @classmethod
    def from_specs(cls, targets: Sequence[str], exclude: Sequence[str] = (),
                   input_file: Optional[str] = None,
                   exclude_file: Optional[str] = None, ipv6: bool = False,
                   default_exclude: bool = True) -> "TargetSet":
        """The targets of specs (and -iL's file) minus excludes (and --excludefile's). The whole
        address space needs an exclude file (as masscan does; it may be empty); special-purpose
        ranges are left out of larger blocks unless default_exclude is False."""
        specs = _split_specs(targets)
        listed6 = np.zeros((0, 16), dtype=np.uint8)        # -iL's IPv6 addresses, packed (a hitlist)
        if input_file is not None:
            more, listed6 = read_target_file_packed(input_file)
            specs += more
        if not specs and not len(listed6):
            raise InputError("no targets given")
        excl = _split_specs(exclude)
        if exclude_file is not None:
            excl += read_target_file(exclude_file)

        parsed = [parse_target_family(s, ipv6=ipv6) for s in specs]
        families = {family for family, _ in parsed} | ({6} if len(listed6) else set())
        if len(families) > 1:
            raise InputError("IPv4 and IPv6 targets cannot be mixed in one scan: run one scan for each")
        family = families.pop()
        keep = _merge(iv for _, ivs in parsed for iv in ivs)
        everything = (0, _MAX if family == 4 else (1 << 128) - 1)
        if keep == [everything] and exclude_file is None:
            whole = "0.0.0.0/0" if family == 4 else "::/0"
            raise InputError(f"the targets are the whole address space ({whole}): scanning it needs "
                             "--excludefile FILE (it may be empty, e.g. --excludefile /dev/null)")
        excluded: Tuple[int, List[str]] = (0, [])
        if default_exclude:
            kept = _merge(iv for _, ivs in parsed for iv in without_special(ivs, family))
            gone = _subtract(keep, kept)
            if gone:
                touched = [p for s, e, p in _special_ranges(family)
                           if any(gs <= e and ge >= s for gs, ge in gone)]
                excluded = (sum(e - s + 1 for s, e in gone), touched)
            keep = kept
        drop = _merge(iv for s in excl for f, ivs in [parse_target_family(s, "exclude", ipv6)]
                      if f == family for iv in ivs)
        left = _subtract(keep, drop)
        if family == 6:
            # A hitlist's addresses each name themselves: the special-purpose exclusion (above,
            # on intervals) never removes one; excludes do.
            if not len(listed6):
                rows = _expand6(left)
            else:
                rows = _drop6(_sorted_unique6([_expand6(left), listed6]) if left else listed6, drop)
            del listed6
            ts = cls(family=6, hosts6=rows, hosts6_sorted=True)
        else:
            ts = cls(left, family)
        if not ts.count:
            raise InputError("no targets left after excludes" + (
                " (special-purpose ranges are scanned only when named; --no-default-exclude scans them)"
                if excluded[0] else ""))
        ts.special_excluded = excluded
        return ts

    def special_note(self) -> Optional[str]:
        """One line saying what the special-purpose exclusion left out, or None."""
        count, prefixes = self.special_excluded
        if not count:
            return None
        return (f"not scanning {count:,} addresses in IANA special-purpose ranges ({', '.join(prefixes)}): "
                "name them as targets, or use --no-default-exclude")

    def address(self, value: int) -> str:
        return str(ipaddress.ip_address(value) if self.family == 6 else ipaddress.IPv4Address(value))

    def ranges(self) -> List[Interval]:
        """The targets as merged (first, last) intervals (for IPv6, runs of consecutive addresses)."""
        if self._ranges is None:
            hi, lo = _halves6(self._hosts6)
            one = np.uint64(1)
            # a new run starts where an address does not follow its predecessor
            follows = ((hi[1:] == hi[:-1]) & (lo[1:] == lo[:-1] + one)) | \
                      ((hi[1:] == hi[:-1] + one) & (lo[1:] == 0) & (lo[:-1] == np.uint64(0xFFFFFFFFFFFFFFFF)))
            first = np.flatnonzero(np.concatenate(([True], ~follows)))
            last = np.concatenate((first[1:] - 1, [len(hi) - 1])) if len(first) else first
            self._ranges = [((int(hi[a]) << 64) | int(lo[a]), (int(hi[b]) << 64) | int(lo[b]))
                            for a, b in zip(first.tolist(), last.tolist())]
        return list(self._ranges)

    def __contains__(self, addr: Union[int, str]) -> bool:
        if isinstance(addr, str):
            value = int(ipaddress.IPv6Address(addr)) if self.family == 6 else ip_to_int(addr)
        else:
            value = int(addr)
        if self.family == 6:
            if not 0 <= value < 1 << 128:
                return False
            key = _addr_key(value)[0]
            i = int(np.searchsorted(_keys6(self._hosts6), key))
            return i < self.count and bytes(self._hosts6[i]) == value.to_bytes(16, "big")
        assert self._ranges is not None
        i = bisect.bisect_right(self._starts_list, value) - 1
        return i >= 0 and value <= self._ranges[i][1]

    def __repr__(self) -> str:
        if self.family == 6:
            shown = ", ".join(self.address(int.from_bytes(bytes(a), "big")) for a in self._hosts6[:3])
            return f"TargetSet({self.count} IPv6 addresses: {shown}{', ...' if self.count > 3 else ''})"
        assert self._ranges is not None
        shown = ", ".join(f"{self.address(s)}-{self.address(e)}" for s, e in self._ranges[:3])
        more = ", ..." if len(self._ranges) > 3 else ""
        return f"TargetSet({self.count} addresses in {len(self._ranges)} ranges: {shown}{more})"
