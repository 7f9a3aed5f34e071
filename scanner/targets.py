"""IPv4 target parsing into merged integer intervals.

Targets are never expanded into address lists: a /8 is one (start, end) pair.
Intervals are inclusive (start, end) tuples of ints; the number of intervals is
small, so the arithmetic is plain Python and numpy is only used for the final
arrays the hot path consumes.
"""
from __future__ import annotations

import bisect
import ipaddress
import re
import socket
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


# IPv6 targets are expanded into a sorted address list for the compiled path: keep it bounded.
MAX_IPV6_HOSTS = 1 << 20

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
    """Sorted, merged, non-overlapping inclusive intervals of IPv4 (32-bit) or IPv6 (128-bit)
    addresses. IPv4 sets are never expanded; IPv6 sets expand to a list (hosts6) when scanned."""

    def __init__(self, intervals: Iterable[Interval], family: int = 4):
        self.family = family
        self._ranges = _merge(intervals)
        self._starts_list = [s for s, _ in self._ranges]
        self.count = sum(e - s + 1 for s, e in self._ranges)
        if family == 4:
            self.starts = np.array(self._starts_list, dtype=np.uint32)
            self.ends = np.array([e for _, e in self._ranges], dtype=np.uint32)
        elif self.count > MAX_IPV6_HOSTS:
            raise InputError(f"{self.count} IPv6 targets is too many to scan (at most {MAX_IPV6_HOSTS}:"
                             " use prefixes of /108 or longer)")

    @property
    def hosts6(self) -> np.ndarray:
        """The IPv6 addresses, sorted, as an (n, 16) uint8 array in network byte order."""
        data = b"".join(a.to_bytes(16, "big") for s, e in self._ranges for a in range(s, e + 1))
        return np.frombuffer(data, dtype=np.uint8).reshape(-1, 16).copy()

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
        if input_file is not None:
            specs += read_target_file(input_file)
        if not specs:
            raise InputError("no targets given")
        excl = _split_specs(exclude)
        if exclude_file is not None:
            excl += read_target_file(exclude_file)

        parsed = [parse_target_family(s, ipv6=ipv6) for s in specs]
        families = {family for family, _ in parsed}
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
        if not left:
            raise InputError("no targets left after excludes" + (
                " (special-purpose ranges are scanned only when named; --no-default-exclude scans them)"
                if excluded[0] else ""))
        ts = cls(left, family)
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
        return list(self._ranges)

    def __contains__(self, addr: Union[int, str]) -> bool:
        if isinstance(addr, str):
            value = int(ipaddress.IPv6Address(addr)) if self.family == 6 else ip_to_int(addr)
        else:
            value = int(addr)
        i = bisect.bisect_right(self._starts_list, value) - 1
        return i >= 0 and value <= self._ranges[i][1]

    def __repr__(self) -> str:
        shown = ", ".join(f"{self.address(s)}-{self.address(e)}" for s, e in self._ranges[:3])
        more = ", ..." if len(self._ranges) > 3 else ""
        return f"TargetSet({self.count} addresses in {len(self._ranges)} ranges: {shown}{more})"
