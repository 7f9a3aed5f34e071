"""The probe databases of -sV: our own readable format (scanner/data/service-probes.txt, described at
its top) and nmap's nmap-service-probes, parsed into one model (probes with their ports, rarity and
matches); match_reply() tries a reply against them."""
from __future__ import annotations

import os
import re
import stat
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import InputError
from .model import ServiceInfo

DEFAULT_DB = Path(__file__).resolve().parent.parent / "data" / "service-probes.txt"
MAX_DB_BYTES = 64 << 20     # nmap's nmap-service-probes is about 2.5 MiB


@dataclass
class Match:
    service: str
    pattern: bytes
    flags: str = ""
    soft: bool = False
    fields: dict = field(default_factory=dict)     # product/version/info/hostname/os/device -> template
    cpes: list = field(default_factory=list)
    line: int = 0
    _regex: object = None
    _bad: bool = False

    @property
    def regex(self):
        if self._regex is None and not self._bad:
            fl = (re.I if "i" in self.flags else 0) | (re.S if "s" in self.flags else 0)
            try:
                self._regex = re.compile(self.pattern, fl)
            except (re.error, OverflowError, RecursionError):
                self._bad = True     # a Perl-only construct: this match cannot apply
        return self._regex

    def apply(self, data: bytes) -> Optional[ServiceInfo]:
        rx = self.regex
        if rx is None:
            return None
        m = rx.search(data)
        if not m:
            return None
        tunnel, name = "", self.service
        if name.startswith("ssl/"):
            tunnel, name = "ssl", name[4:]
        f = {k: substitute(v, m) for k, v in self.fields.items()}
        return ServiceInfo(name=name, product=f.get("product", ""), version=f.get("version", ""),
                           extrainfo=f.get("info", ""), hostname=f.get("hostname", ""), ostype=f.get("os", ""),
                           devicetype=f.get("device", ""), tunnel=tunnel,
                           cpes=[c for c in (substitute(c, m) for c in self.cpes) if c], method="probed", conf=10)


@dataclass
class Probe:
    proto: str                   # tcp or udp
    name: str
    payload: bytes
    rarity: int = 5
    ports: frozenset = frozenset()
    sslports: frozenset = frozenset()
    wait: float = 5.0            # seconds (nmap's totalwaitms)
    tcpwrapped: float = 0.0      # seconds (nmap's tcpwrappedms)
    fallback: tuple = ()
    matches: list = field(default_factory=list)

    def services(self) -> set:
        return {m.service.split("/", 1)[-1] for m in self.matches if not m.soft}


class ProbeDB:
    def __init__(self, probes: list, excluded: frozenset = frozenset(), source: str = ""):
        self.probes, self.excluded, self.source = probes, excluded, source
        self.by_name = {(p.proto, p.name): p for p in probes}

    def null(self, proto: str = "tcp") -> Optional[Probe]:
        return self.by_name.get((proto, "NULL"))

    def ordered(self, proto: str, port: int, intensity: int, tls: bool = False) -> list:
        """The probes to try on a port after NULL, nmap's order: those registered for the port
        first (whatever their rarity), then the rest within the intensity, by rarity."""
        mine = [p for p in self.probes if p.proto == proto and p.name != "NULL"]
        reg = [p for p in mine if port in (p.sslports if tls else p.ports)]
        rest = sorted((p for p in mine if p not in reg and p.rarity <= intensity), key=lambda p: p.rarity)
        return reg + rest

    def fallbacks(self, probe: Probe) -> list:
        """The probes whose matches also apply to this probe's answer: itself, its fallbacks,
        and NULL for TCP (nmap's rule)."""
        out = [probe]
        for name in probe.fallback:
            p = self.by_name.get((probe.proto, name))
            if p is not None and p not in out:
                out.append(p)
        null = self.null("tcp")
        if probe.proto == "tcp" and null is not None and null not in out:
            out.append(null)
        return out


def _port_set(text: str) -> frozenset:
    out: set = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            out.update(range(int(a), int(b) + 1))
        else:
            out.add(int(part))
    return frozenset(out)


def unescape(text: str) -> bytes:
    """nmap-style escapes in probe strings: \\r \\n \\t \\0 \\xHH \\\\ and an escaped delimiter."""
    out, i = bytearray(), 0
    simple = {"r": 13, "n": 10, "t": 9, "0": 0, "a": 7, "f": 12, "v": 11, "\\": 92}
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            n = text[i + 1]
            if n == "x" and i + 3 < len(text) + 1:
                out.append(int(text[i + 2:i + 4], 16))
                i += 4
                continue
            out.append(simple.get(n, ord(n) & 0xFF))
            i += 2
            continue
        out += c.encode("latin-1", "replace")
        i += 1
    return bytes(out)


_SUBST = re.compile(r"\$(\d)|\$P\((\d)\)|\$SUBST\((\d),\"((?:[^\"\\]|\\.)*)\",\"((?:[^\"\\]|\\.)*)\"\)"
                    r"|\$I\((\d),\"([<>])\"\)")


def substitute(template: str, m) -> str:
    """$1, $P(1) (printable characters only), $SUBST(1,"a","b") and $I(1,">") (an integer)."""
    def group(n):
        try:
            return m.group(int(n)) or b""
        except (IndexError, re.error):
            return b""

    def rep(x):
        if x.group(1):
            return "".join(chr(b) if 32 <= b != 127 else f"\\x{b:02x}" for b in group(x.group(1)))
        if x.group(2):
            return "".join(chr(b) for b in group(x.group(2)) if 32 <= b < 127)
        if x.group(3):
            return group(x.group(3)).decode("latin-1").replace(x.group(4), x.group(5))
        raw = group(x.group(6))
        return str(int.from_bytes(raw, "big" if x.group(7) == ">" else "little")) if raw else ""
    return _SUBST.sub(rep, template).strip()


# -- nmap's nmap-service-probes

_NMAP_FIELD = re.compile(r"\s*(cpe:|[pvihod])([^\w\s])")


def _delimited(text: str, i: int, delim: str) -> tuple:
    """(content, index after the closing delimiter) for content starting at text[i]."""
    j = text.find(delim, i)
    if j < 0:
        raise ValueError("unterminated field")
    return text[i:j], j + 1


def parse_nmap_match(rest: str, soft: bool, lineno: int) -> Match:
    service, rest = rest.strip().split(None, 1)
    if not rest.startswith("m"):
        raise ValueError("expected m<delim>regex<delim>")
    delim = rest[1]
    pattern, i = _delimited(rest, 2, delim)
    flags = ""
    while i < len(rest) and rest[i] in "is":
        flags += rest[i]
        i += 1
    fields, cpes = {}, []
    names = {"p": "product", "v": "version", "i": "info", "h": "hostname", "o": "os", "d": "device"}
    while True:
        m = _NMAP_FIELD.match(rest, i)
        if not m:
            break
        value, i = _delimited(rest, m.end(), m.group(2))
        if m.group(1) == "cpe:":
            cpes.append("cpe:/" + value)
            if i < len(rest) and rest[i] == "a":
                i += 1
        else:
            fields[names[m.group(1)]] = value
    return Match(service, pattern.encode("latin-1"), flags, soft, fields, cpes, lineno)


def parse_nmap_db(text: str, source: str = "") -> ProbeDB:
    probes: list = []
    excluded: frozenset = frozenset()
    cur = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        try:
            if word == "Probe":
                proto, name, q = rest.split(None, 2)
                if not q.startswith("q"):
                    raise ValueError("expected q<delim>payload<delim>")
                payload, _ = _delimited(q, 2, q[1])
                cur = Probe(proto.lower(), name, unescape(payload))
                probes.append(cur)
            elif word == "Exclude":
                excluded = _port_set(rest.replace("T:", "").replace("U:", ""))
            elif cur is None:
                continue
            elif word in ("match", "softmatch"):
                cur.matches.append(parse_nmap_match(rest, word == "softmatch", lineno))
            elif word == "ports":
                cur.ports = _port_set(rest)
            elif word == "sslports":
                cur.sslports = _port_set(rest)
            elif word == "rarity":
                cur.rarity = int(rest)
            elif word == "totalwaitms":
                cur.wait = int(rest) / 1000
            elif word == "tcpwrappedms":
                cur.tcpwrapped = int(rest) / 1000
            elif word == "fallback":
                cur.fallback = tuple(x.strip() for x in rest.split(",") if x.strip())
        except (ValueError, IndexError, KeyError):
            continue      # a line this parser does not understand: skip it, as nmap skips bad matches
    return ProbeDB(probes, excluded, source)


# -- our own format (see the top of data/service-probes.txt)

_OWN_KEYS = {"product": "product", "version": "version", "info": "info", "hostname": "hostname",
             "os": "os", "device": "device"}


def parse_own_match(rest: str, soft: bool, lineno: int) -> Match:
    service, rest = rest.strip().split(None, 1)
    if not rest.startswith("/"):
        raise ValueError(f"line {lineno}: the pattern must be written /regex/flags")
    i, pattern = 1, []
    while i < len(rest) and rest[i] != "/":
        if rest[i] == "\\" and i + 1 < len(rest):
            pattern.append(rest[i:i + 2] if rest[i + 1] != "/" else "/")
            i += 2
            continue
        pattern.append(rest[i])
        i += 1
    if i >= len(rest):
        raise ValueError(f"line {lineno}: unterminated /regex/")
    i += 1
    flags = ""
    while i < len(rest) and rest[i] in "is":
        flags += rest[i]
        i += 1
    fields, cpes = {}, []
    for tok in shlex.split(rest[i:]):
        key, eq, value = tok.partition("=")
        if not eq:
            raise ValueError(f"line {lineno}: expected key=value, got {tok!r}")
        if key == "cpe":
            cpes.append(value)
        elif key in _OWN_KEYS:
            fields[_OWN_KEYS[key]] = value
        else:
            raise ValueError(f"line {lineno}: unknown field {key!r}")
    return Match(service, "".join(pattern).encode("latin-1"), flags, soft, fields, cpes, lineno)


def parse_own_db(text: str, source: str = "") -> ProbeDB:
    probes, cur = [], None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word == "probe":
            proto, name, payload = rest.split(None, 2)
            if payload.startswith("hex:"):
                data = bytes.fromhex(payload[4:].replace(" ", ""))
            elif payload.startswith('"') and payload.endswith('"'):
                data = unescape(payload[1:-1])
            else:
                raise ValueError(f"{source}:{lineno}: the payload must be \"quoted\" or hex:...")
            cur = Probe(proto.lower(), name, data)
            probes.append(cur)
        elif cur is None:
            raise ValueError(f"{source}:{lineno}: {word} before the first probe")
        elif word in ("match", "softmatch"):
            cur.matches.append(parse_own_match(rest, word == "softmatch", lineno))
        elif word == "ports":
            cur.ports = _port_set(rest)
        elif word == "tlsports":
            cur.sslports = _port_set(rest)
        elif word == "rarity":
            cur.rarity = int(rest)
        elif word == "wait":
            cur.wait = float(rest)
        elif word == "fallback":
            cur.fallback = tuple(x.strip() for x in rest.split(",") if x.strip())
        else:
            raise ValueError(f"{source}:{lineno}: unknown keyword {word!r}")
    return ProbeDB(probes, frozenset(), source)


def load_db(path=None) -> ProbeDB:
    """Our database, or the file at PATH in either format (nmap's starts its probes with 'Probe')."""
    p = Path(path) if path else DEFAULT_DB
    try:
        with open(p, "rb") as f:
            data = f.read(MAX_DB_BYTES + 1)
            public = bool(os.fstat(f.fileno()).st_mode & stat.S_IROTH)
    except OSError as e:
        raise InputError(f"cannot read the service database '{p}': {e.strerror}") from None
    if len(data) > MAX_DB_BYTES:
        raise InputError(f"the service database '{p}' is larger than {MAX_DB_BYTES >> 20} MiB: not a probe file")
    text = data.decode("latin-1")
    nmap_format = bool(re.search(r"^Probe (TCP|UDP) ", text, re.M))
    try:
        db = parse_nmap_db(text, str(p)) if nmap_format else parse_own_db(text, str(p))
    except ValueError as e:
        # The file's own words only when anyone may read them: never a line of, say, /etc/shadow.
        line = re.search(r"line (\d+)|:(\d+):", str(e))
        where = f"line {line.group(1) or line.group(2)}" if line else "its content"
        reason = str(e) if public else f"{where} is not a probe database line (not shown: the file is not public)"
        raise InputError(f"bad service database '{p}': {reason}") from None
    if not db.probes:
        raise InputError(f"no probes in the service database '{p}'")
    return db


def match_reply(db: ProbeDB, probe: Probe, data: bytes, only: Optional[set] = None):
    """(hard ServiceInfo or None, soft ServiceInfo or None) for a probe's answer."""
    soft = None
    for p in db.fallbacks(probe):
        for m in p.matches:
            if only is not None and m.service.split("/", 1)[-1] not in only:
                continue
            if m.soft and soft is not None:
                continue
            info = m.apply(data)
            if info is None:
                continue
            if not m.soft:
                return info, soft
            soft = info
    return None, soft
