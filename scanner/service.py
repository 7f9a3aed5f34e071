"""Service and version detection (-sV): after the port scan, real kernel-socket connections to
every open TCP port (many at once, bounded, with timeouts) read the banner and send probes; open
UDP ports get the UDP probes. Replies are matched against a probe database: our own
(scanner/data/service-probes.txt, a readable format described at its top) or, with --service-db,
a file in nmap's nmap-service-probes format.

The order of work per port follows nmap: the NULL probe (just listen for a banner), then the
probes registered for the port, then the others whose rarity is within --version-intensity; a
soft match narrows the remaining probes to those that can name that service's version; a TLS
answer switches to a TLS connection (certificate read, then the same probes inside the tunnel).
"""
from __future__ import annotations

import asyncio
import os
import re
import shlex
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

DEFAULT_DB = Path(__file__).resolve().parent / "data" / "service-probes.txt"
DEFAULT_INTENSITY = 7
NULL_WAIT = 3.0          # seconds to wait for a banner when no probe is registered for the port
NULL_WAIT_CLIENT = 1.0   # ... when one is (the client probably speaks first: HTTP, TLS, ...)
PROBE_WAIT = 3.0         # cap on a probe's wait for its answer
IDLE_AFTER_DATA = 0.4    # stop reading this long after the last data when nothing matched yet
CONNECT_TIMEOUT = 4.0
PORT_DEADLINE = 40.0     # at most this long per port, however many probes remain
MAX_READ = 65536


# ---------------------------------------------------------------- results

@dataclass
class ServiceInfo:
    """What -sV found on one port (nmap's <service> element)."""
    name: str
    product: str = ""
    version: str = ""
    extrainfo: str = ""
    hostname: str = ""
    ostype: str = ""
    devicetype: str = ""
    tunnel: str = ""                 # "ssl" when the service was found inside TLS
    cpes: list = field(default_factory=list)
    method: str = "probed"           # "table" when nothing matched (name from the services table)
    conf: int = 10
    scripts: dict = field(default_factory=dict)   # nmap script id -> output text (http-title, ssl-cert)
    guess: bool = False      # probed but not recognised: the services table's name, shown "name?"

    @property
    def display_name(self) -> str:
        return (f"ssl/{self.name}" if self.tunnel == "ssl" else self.name) + ("?" if self.guess else "")

    @property
    def version_text(self) -> str:
        """nmap's VERSION column: product version (extrainfo)."""
        text = " ".join(x for x in (self.product, self.version) if x)
        if self.extrainfo:
            text += f" ({self.extrainfo})" if text else self.extrainfo
        return text

    def to_dict(self) -> dict:
        d = {"name": self.name}
        for k in ("product", "version", "extrainfo", "hostname", "ostype", "devicetype", "tunnel"):
            if getattr(self, k):
                d[k] = getattr(self, k)
        if self.cpes:
            d["cpe"] = list(self.cpes)
        d["method"], d["conf"] = self.method, self.conf
        if self.scripts:
            d["scripts"] = dict(self.scripts)
        if self.guess:
            d["guess"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ServiceInfo":
        kw = {k: d[k] for k in ("name", "product", "version", "extrainfo", "hostname", "ostype", "devicetype",
                                "tunnel", "method", "conf") if k in d}
        return cls(cpes=list(d.get("cpe", [])), scripts=dict(d.get("scripts", {})), guess=bool(d.get("guess")), **kw)


# ---------------------------------------------------------------- the probe database

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
    out = set()
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
    probes, excluded, cur = [], frozenset(), None
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
    from .errors import InputError
    p = Path(path) if path else DEFAULT_DB
    try:
        text = p.read_text(encoding="latin-1")
    except OSError as e:
        raise InputError(f"cannot read the service database '{p}': {e.strerror}") from None
    nmap_format = bool(re.search(r"^Probe (TCP|UDP) ", text, re.M))
    try:
        db = parse_nmap_db(text, str(p)) if nmap_format else parse_own_db(text, str(p))
    except ValueError as e:
        raise InputError(f"bad service database '{p}': {e}") from None
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


# ---------------------------------------------------------------- TLS certificates (DER)

_OIDS = {"2.5.4.3": "commonName", "2.5.4.6": "countryName", "2.5.4.7": "localityName",
         "2.5.4.8": "stateOrProvinceName", "2.5.4.10": "organizationName",
         "2.5.4.11": "organizationalUnitName", "1.2.840.113549.1.9.1": "emailAddress",
         "2.5.4.5": "serialNumber"}


def parse_certificate(der: bytes) -> dict:
    """subject, issuer ([(attribute, value)]), not_before/not_after (ISO), names (SANs) of an
    X.509 certificate, in nmap's ssl-cert terms."""
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)

    def name(n) -> list:
        return [(_OIDS.get(a.oid.dotted_string, a.oid.dotted_string),
                 a.value if isinstance(a.value, str) else a.value.hex()) for a in n]
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        alt = []
    names = [f"DNS:{g.value}" if isinstance(g, x509.DNSName) else f"IP Address:{g.value}"
             for g in alt if isinstance(g, (x509.DNSName, x509.IPAddress))]
    iso = "%Y-%m-%dT%H:%M:%S"
    return {"subject": name(cert.subject), "issuer": name(cert.issuer), "names": names,
            "not_before": cert.not_valid_before_utc.strftime(iso),
            "not_after": cert.not_valid_after_utc.strftime(iso)}


def cert_text(cert: dict) -> str:
    """nmap's ssl-cert script output."""
    def dn(items):
        return "/".join(f"{k}={v}" for k, v in items)
    lines = [f"Subject: {dn(cert['subject'])}"]
    if cert["names"]:
        lines.append("Subject Alternative Name: " + ", ".join(cert["names"]))
    lines += [f"Issuer: {dn(cert['issuer'])}", f"Not valid before: {cert['not_before']}",
              f"Not valid after:  {cert['not_after']}"]
    return "\n".join(lines)


_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)


def http_title(data: bytes) -> Optional[str]:
    if not data.startswith(b"HTTP/"):
        return None
    m = _TITLE.search(data)
    if m:
        return " ".join(m.group(1).decode("utf-8", "replace").split())[:200]
    return None


# ---------------------------------------------------------------- talking to ports

def tls_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    except (ssl.SSLError, ValueError):
        pass
    return ctx


@dataclass
class Exchange:
    data: bytes = b""
    closed: bool = False         # the peer closed the connection
    refused: bool = False        # could not connect at all
    elapsed: float = 0.0
    cert: Optional[bytes] = None


async def tcp_exchange(host: str, port: int, payload: bytes, wait: float, tls: Optional[ssl.SSLContext] = None,
                       done: Optional[Callable[[bytes], bool]] = None) -> Exchange:
    """Connects, sends payload (if any), reads until `done(data)`, the peer closes, wait seconds
    pass, or the line is idle a moment after some data."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    out = Exchange()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=tls, server_hostname=None if tls is None else "",
                                    **({"ssl_handshake_timeout": CONNECT_TIMEOUT} if tls else {})),
            CONNECT_TIMEOUT)
    except (OSError, asyncio.TimeoutError, ssl.SSLError, EOFError):
        out.refused = True
        return out
    try:
        if tls is not None:
            obj = writer.get_extra_info("ssl_object")
            out.cert = obj.getpeercert(binary_form=True) if obj else None
        if payload:
            writer.write(payload)
            await writer.drain()
        buf = bytearray()
        deadline = t0 + wait
        while len(buf) < MAX_READ:
            left = deadline - loop.time()
            if buf:
                left = min(left, IDLE_AFTER_DATA)
            if left <= 0:
                break
            try:
                chunk = await asyncio.wait_for(reader.read(8192), left)
            except asyncio.TimeoutError:
                break
            if not chunk:
                out.closed = True
                break
            buf += chunk
            if done is not None and done(bytes(buf)):
                break
        out.data = bytes(buf)
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
        out.closed = True
    finally:
        out.elapsed = loop.time() - t0
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 1.0)
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            pass
    return out


async def udp_exchange(host: str, port: int, payload: bytes, wait: float) -> Optional[bytes]:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setblocking(False)
    try:
        s.connect((host, port))
        await loop.sock_sendall(s, payload)
        return await asyncio.wait_for(loop.sock_recv(s, MAX_READ), wait)
    except (OSError, asyncio.TimeoutError):
        return None
    finally:
        s.close()


class ServiceScanner:
    """Runs -sV over many ports at once: scan(ports) -> {(addr, proto, port): ServiceInfo}."""

    def __init__(self, db: Optional[ProbeDB] = None, intensity: int = DEFAULT_INTENSITY,
                 concurrency: int = 128, null_wait: float = NULL_WAIT, probe_wait: float = PROBE_WAIT,
                 port_deadline: float = PORT_DEADLINE):
        self.db = db or load_db()
        self.intensity = intensity
        self.concurrency = concurrency
        self.null_wait, self.probe_wait, self.port_deadline = null_wait, probe_wait, port_deadline
        self.total = self.done = self.found = 0
        self.started = 0.0
        self.results: dict = {}
        self._lock = threading.Lock()
        self.on_warning: Callable[[str], None] = lambda text: None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._task: Optional[asyncio.Task] = None
        self.stopped = False

    # -- one TCP port
    async def tcp_port(self, host: str, port: int) -> Optional[ServiceInfo]:
        db = self.db
        ctx = None
        soft = None
        cert = None
        title = None
        started = time.monotonic()
        tunnel = ""
        ssl_seen = None          # the "ssl" match that sent us into TLS
        while True:
            null = db.null("tcp")
            order = db.ordered("tcp", port, self.intensity, tls=ctx is not None)
            registered = any(port in (p.sslports if ctx else p.ports) for p in order)
            steps = ([null] if null is not None else []) + order
            restart = False
            for probe in steps:
                if time.monotonic() - started > self.port_deadline:
                    break
                only = None
                if soft is not None:
                    only = {soft.name}
                    if probe.name != "NULL" and not ({soft.name} & probe.services()):
                        continue
                if probe.name == "NULL":
                    wait = min(probe.wait, NULL_WAIT_CLIENT if registered else self.null_wait)
                else:
                    wait = min(probe.wait, self.probe_wait)

                def done(data, probe=probe, only=only):
                    return match_reply(db, probe, data, only)[0] is not None

                ex = await tcp_exchange(host, port, probe.payload, wait, ctx, done)
                if ex.refused:
                    if ctx is not None and cert is None:      # TLS handshake failed: plain after all
                        ctx, tunnel = None, ""
                    break
                if ex.cert and cert is None:
                    try:
                        cert = parse_certificate(ex.cert)
                    except (IndexError, ValueError):
                        cert = {}
                if probe.name == "NULL" and not ex.data and ex.closed and ex.elapsed < 2.0 and ctx is None:
                    return ServiceInfo("tcpwrapped", conf=8)
                if not ex.data:
                    continue
                title = title or http_title(ex.data)
                hard, s = match_reply(db, probe, ex.data, only)
                if hard is not None and hard.name in ("ssl", "tls") and ctx is None and not hard.tunnel:
                    ssl_seen = hard
                    ctx, tunnel, restart = tls_context(), "ssl", True     # look inside the tunnel
                    soft = None
                    break
                if hard is not None:
                    if tunnel:
                        hard.tunnel = "ssl"
                    return self._finish(hard, cert, title)
                if s is not None and soft is None:
                    soft = s
            if not restart:
                break
        if soft is not None:
            if tunnel:
                soft.tunnel = "ssl"
            return self._finish(soft, cert, title)
        if tunnel or ssl_seen is not None:
            return self._finish(ssl_seen or ServiceInfo("ssl", conf=10), cert, title)
        return None

    @staticmethod
    def _finish(info: ServiceInfo, cert, title) -> ServiceInfo:
        if cert:
            info.scripts["ssl-cert"] = cert_text(cert)
        if title and info.name.startswith("http"):
            info.scripts["http-title"] = title
        return info

    # -- one UDP port
    async def udp_port(self, host: str, port: int) -> Optional[ServiceInfo]:
        started = time.monotonic()
        soft = None
        # First the -sU payload that made the port answer: its reply goes through every UDP match.
        from .techniques import udp_payloads
        payload = udp_payloads().get(port)
        if payload is not None:
            data = await udp_exchange(host, port, payload, self.probe_wait)
            if data:       # matched like the answer of the probes registered for this port
                for probe in [p for p in self.db.probes if p.proto == "udp" and port in p.ports]:
                    hard, s = match_reply(self.db, probe, data)
                    if hard is not None:
                        return hard
                    soft = soft or s
        for probe in self.db.ordered("udp", port, self.intensity):
            if time.monotonic() - started > self.port_deadline:
                break
            if soft is not None and soft.name not in probe.services():
                continue
            data = await udp_exchange(host, port, probe.payload, min(probe.wait, self.probe_wait))
            if not data:
                continue
            hard, s = match_reply(self.db, probe, data, None if soft is None else {soft.name})
            if hard is not None:
                return hard
            soft = soft or s
        return soft

    # -- all of them
    async def _run(self, targets: list) -> dict:
        sem = asyncio.Semaphore(self.concurrency)
        results = self.results = {}        # filled as ports finish: kept if the run is interrupted

        async def one(addr, proto, port):
            async with sem:
                try:
                    info = await (self.tcp_port(addr, port) if proto == "tcp" else self.udp_port(addr, port))
                except Exception as e:      # noqa: BLE001 - one odd server must not end the scan
                    info = None
                    self.on_warning(f"service scan of {addr}:{port}/{proto} failed: {e!r}")
            with self._lock:
                self.done += 1
                if info is not None:
                    self.found += 1
            if info is None:         # as nmap: the services table's name, with a question mark
                from .ports import service_name
                info = ServiceInfo(service_name(port, proto), method="table", conf=3, guess=True)
            results[(addr, proto, port)] = info

        await asyncio.gather(*(one(*t) for t in targets))
        return results

    def scan(self, targets) -> dict:
        """targets: [(addr, proto, port)]; ports in the database's Exclude list are skipped.
        After stop() (any thread), returns the ports done so far."""
        targets = [t for t in targets if t[2] not in self.db.excluded]
        self.total, self.done, self.found = len(targets), 0, 0
        self.started = time.monotonic()
        raise_fd_limit(self.concurrency * 2 + 64)
        return asyncio.run(self._main(targets)) if targets and not self.stopped else {}

    async def _main(self, targets: list) -> dict:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.ensure_future(self._run(targets))
        try:
            return await self._task
        except asyncio.CancelledError:
            return dict(self.results)

    def stop(self) -> None:
        self.stopped = True
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:        # the loop has closed: the scan is over anyway
                pass

    def progress(self) -> dict:
        return {"done": self.done, "total": self.total, "found": self.found,
                "elapsed": time.monotonic() - self.started}


def raise_fd_limit(want: int) -> None:
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    except (ImportError, ValueError, OSError):
        pass


def service_targets(rows) -> list:
    """[(addr, proto, port)] of the open TCP ports and answering UDP ports among RESULT_DTYPE rows."""
    from .states import STATES, addresses
    mask = rows["state"] == STATES["open"]
    rows = rows[mask]
    seen, out = set(), []
    for addr, proto, port in zip(addresses(rows), rows["proto"].tolist(), rows["port"].tolist()):
        key = (addr, "tcp" if proto == 6 else "udp" if proto == 17 else None, port)
        if key[1] and key not in seen:
            seen.add(key)
            out.append(key)
    return out


# ---------------------------------------------------------------- the post-scan stage (-sV, -O)

class RowCollector:
    """A sink consumer keeping what -sV and -O need from the scan's rows: open ports (with the
    SYN-ACK fingerprint fields) and one RST per host."""
    grouped = False
    error = None

    def __init__(self):
        self.batches = []
        self._rst_hosts = set()

    def write(self, rows) -> None:
        from .states import REASONS, STATES
        keep = rows["state"] == STATES["open"]
        rst = (rows["reason"] == REASONS["reset"]) & (rows["proto"] == 6)
        if rst.any():
            idx = rst.nonzero()[0]
            keys = (rows["ip"][idx].tolist(), [bytes(x) for x in rows["ip6"][idx]])
            for i, a, b in zip(idx.tolist(), *keys):
                if (a, b) not in self._rst_hosts:
                    self._rst_hosts.add((a, b))
                    keep[i] = True
        if keep.any():
            self.batches.append(rows[keep].copy())

    def close(self, summary=None) -> None:
        pass

    def rows(self):
        import numpy as np
        from .states import RESULT_DTYPE
        return np.concatenate(self.batches) if self.batches else np.zeros(0, dtype=RESULT_DTYPE)


class PostScan:
    """-sV and/or -O after the port scan: run() hands the results to the outputs and the store."""

    def __init__(self, versions: bool, os_detect: bool, intensity: int = DEFAULT_INTENSITY,
                 db_path: Optional[str] = None, concurrency: int = 128):
        self.versions, self.os_detect = versions, os_detect
        self.intensity, self.concurrency = intensity, concurrency
        self.db = load_db(db_path) if versions else None      # a bad --service-db fails before the scan
        self.collector = RowCollector()
        self.services: dict = {}
        self.os_guesses: dict = {}
        self.elapsed = 0.0
        self.interrupted = False

    def run(self, session, outputs, recorder=None) -> None:
        """-sV, then -O, over the collected rows; the results go to the outputs and the store.
        session: the Session (its events, and stop() which ends the service scan early)."""
        from . import events as ev
        from .session import _Ticker
        t_start = time.monotonic()
        rows = self.collector.rows()
        if self.versions:
            targets = service_targets(rows)
            scanner = ServiceScanner(self.db, self.intensity, self.concurrency)
            scanner.on_warning = lambda text: session.emit(ev.Warning(text))
            session._current = scanner
            if session.stopping:
                scanner.stop()
            t0 = time.monotonic()
            session.emit(ev.StageStarted("service", len(targets), len(targets)))
            ticker = _Ticker(session, "service", scanner.progress)
            try:
                self.services = scanner.scan(targets)
            finally:
                ticker.stop()
                session._current = None
            if scanner.stopped:
                self.interrupted = True
                session.emit(ev.Note("service scan interrupted: the ports done so far are reported"))
            found = sum(1 for s in self.services.values() if not s.guess)
            session.emit(ev.Note(f"service scan: {found} of {len(targets)} open ports identified in "
                                 f"{time.monotonic() - t0:.2f}s ({self.concurrency} at once)"))
        if self.os_detect:
            from .osguess import guess_hosts
            self.os_guesses = guess_hosts(rows, self.services)
            if not self.os_guesses:
                session.emit(ev.Note("OS detection: no host gave a SYN-ACK to fingerprint (needs an open "
                                     "TCP port and the SYN scan, -sS)"))
        outputs.set_details(self.services if self.versions else None, self.os_guesses if self.os_detect else None)
        if recorder is not None:
            recorder.set_details(self.services, self.os_guesses)
        session.emit(ev.Details(self.services, self.os_guesses))
        self.elapsed = time.monotonic() - t_start
