"""The hook where per-service scripts plug in (scanner's answer to NSE, in Python): a script
declares the services it runs on and returns the text nmap would print under the port
(`| name: ...`) and, where nmap's script has them, the structured values of its -oX
<elem>/<table>s. Scripts run inside the -sV engine, right after a port is identified, with what
was learned while probing (certificate, page title, the probes' replies) and the engine's own
exchanges for talking to the port again. Registering one is one call: register(Script(...)).

Which scripts run: -sC the default set (nmap's "default" category), --script names, categories
(default, safe, discovery, version, auth, all) and shell patterns (http-*), instead of -sC's set
when both are given, as in nmap; -sV alone runs the
scripts marked sv (nmap's version-category http-server-header, and ssl-cert/http-title, which
read only what probing already learned)."""
from __future__ import annotations

import asyncio
import fnmatch
import re
import struct
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable, Dict, Iterable, Optional, Union

from ..errors import InputError
from .exchange import Conversation, tcp_exchange, tls_context, udp_exchange
from .model import ServiceInfo
from .tls import cert_data, cert_text

SCRIPT_TIMEOUT = 20.0     # at most this long per script and port
STEP_TIMEOUT = 5.0        # each read of a dialogue


@dataclass
class PortFacts:
    """What the engine learned about one port while identifying it."""
    host: str
    port: int
    proto: str
    cert: Optional[dict] = None         # the TLS certificate, parsed (tls.parse_certificate)
    title: Optional[str] = None         # the first HTML <title> seen
    banners: list = field(default_factory=list)   # raw replies, in order
    replies: dict = field(default_factory=dict)   # probe name -> its first reply (NULL: the banner)
    args: dict = field(default_factory=dict)      # --script-args
    active: bool = False                # scripts were asked for (-sC, --script): they may talk to the port
    verbose: int = 0                    # -v count; one more for the scripts named (nmap's boost)
    named: frozenset = frozenset()      # scripts selected by name or pattern


@dataclass
class ScriptOutput:
    """A script's result: nmap's text, and its structured values (dict: keyed <elem>/<table>,
    list: unkeyed ones) where nmap's script has them."""
    text: str
    data: Any = None


Result = Optional[Union[str, ScriptOutput]]


@dataclass(frozen=True)
class Script:
    name: str                                            # nmap's script id (ssl-cert, http-title)
    applies: Callable[[ServiceInfo, PortFacts], bool]    # does it run on this port?
    run: Callable[[ServiceInfo, PortFacts], Awaitable[Result]]
    default: bool = True                                 # part of the default set (-sC)
    categories: tuple = ("safe", "discovery")            # nmap's categories besides "default"
    sv: bool = False                                     # runs with plain -sV too


SCRIPTS: Dict[str, Script] = {}
CATEGORIES = ("default", "safe", "discovery", "version", "auth", "all")


def register(script: Script) -> Script:
    SCRIPTS[script.name] = script
    return script


def _in_category(script: Script, cat: str) -> bool:
    return cat == "all" or (cat == "default" and script.default) or cat in script.categories


def select(names: Iterable[str] = (), default: bool = False, versions: bool = False) -> Optional[frozenset]:
    """The scripts to run: --script's comma lists of names, categories and patterns, -sC's default
    set, and (versions) those of plain -sV. None when nothing asked for scripts (plain -sV's).
    InputError on a name that is none of these."""
    words = [w.strip() for n in names for w in n.split(",") if w.strip()]
    if not words and not default:
        return None
    default = default and not words        # as nmap: --script replaces -sC's default set
    chosen = {s.name for s in SCRIPTS.values() if (default and s.default) or (versions and s.sv)}
    for w in words:
        if w in SCRIPTS:
            chosen.add(w)
        elif w in CATEGORIES:
            chosen |= {s.name for s in SCRIPTS.values() if _in_category(s, w)}
        elif any(c in w for c in "*?[") and fnmatch.filter(SCRIPTS, w):
            chosen |= set(fnmatch.filter(SCRIPTS, w))
        else:
            raise InputError(f"unknown script: {w}")
    return frozenset(chosen)


def named(names: Iterable[str] = ()) -> frozenset:
    """The scripts that --script selects by name or pattern, not by category: nmap gives them one
    more level of verbosity."""
    words = [w.strip() for n in names for w in n.split(",") if w.strip()]
    return frozenset(x for w in words if w not in CATEGORIES for x in fnmatch.filter(SCRIPTS, w))


def parse_args(text: Optional[str]) -> dict:
    """--script-args: name=value pairs separated by commas (values may be quoted)."""
    out: dict = {}
    for m in re.finditer(r'\s*([^=,\s]+)\s*(?:=\s*("[^"]*"|\'[^\']*\'|[^,]*))?\s*(?:,|$)', text or ""):
        if m.group(1):
            value = (m.group(2) or "").strip()
            out[m.group(1)] = value[1:-1] if value[:1] in "\"'" and len(value) > 1 else value
    return out


async def run_scripts(info: ServiceInfo, facts: PortFacts, names=None) -> ServiceInfo:
    """Runs the scripts that apply to an identified port (those named, or plain -sV's) at once,
    each within SCRIPT_TIMEOUT, and keeps their output in info.scripts / info.script_data."""
    todo = [s for s in SCRIPTS.values() if (s.name in names if names is not None else s.sv)
            and s.applies(info, facts)]

    async def one(script: Script) -> Result:
        mine = replace(facts, verbose=facts.verbose + 1) if script.name in facts.named else facts
        try:
            return await asyncio.wait_for(script.run(info, mine), SCRIPT_TIMEOUT)
        except (OSError, ValueError, EOFError, IndexError, struct.error, asyncio.TimeoutError):
            return None     # the port stopped answering or spoke nonsense: no output, as nmap
    results = await asyncio.gather(*(one(s) for s in todo))
    for script, out in zip(todo, results):
        if isinstance(out, ScriptOutput):
            if out.text:
                info.scripts[script.name] = out.text
                if out.data is not None:
                    info.script_data[script.name] = out.data
        elif out:
            info.scripts[script.name] = out
    return info


def nse_text(data) -> str:
    """NSE's text layout of a structured output: one "key: value" line per entry, nested tables
    indented two spaces more, unkeyed entries alone; it starts on the line below the script id."""
    lines: list = []

    def walk(d, indent):
        items = d.items() if isinstance(d, dict) else ((None, v) for v in d)
        for k, v in items:
            head = "" if k is None else f"{k}: "
            if isinstance(v, (dict, list)):
                lines.append(f"{indent}{head}")
                walk(v, indent + "  ")
            else:
                lines.append(f"{indent}{head}{v}")
    walk(data, "  ")
    return "\n" + "\n".join(lines)


# ---------------------------------------------------------------- helpers

def _http_port(info: ServiceInfo, facts: PortFacts) -> bool:
    if facts.proto != "tcp":
        return False
    if info.name.startswith(("http", "https")) and not info.guess:
        return True
    return info.guess and facts.port in (80, 443, 631, 3000, 5000, 8000, 8008, 8080, 8443, 8888)


def _line_reply(code_ok: Callable[[bytes], bool] = lambda line: True) -> Callable[[bytes], int]:
    """A complete reply of a line-based protocol (FTP, SMTP): up to the line "NNN text"."""
    def complete(buf: bytes) -> int:
        pos = 0
        while True:
            end = buf.find(b"\n", pos)
            if end < 0:
                return 0
            line = buf[pos:end + 1]
            if re.match(rb"\d{3}(?: |\r?\n)", line):
                return end + 1
            pos = end + 1
    return complete


async def _http_get(info: ServiceInfo, facts: PortFacts, path: str = "/") -> bytes:
    agent = facts.args.get("http.useragent", "Mozilla/5.0 (compatible; scanner)")
    host = f"[{facts.host}]" if ":" in facts.host else facts.host
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {agent}\r\n"
               "Connection: close\r\n\r\n").encode()
    ex = await tcp_exchange(facts.host, facts.port, request, STEP_TIMEOUT,
                            tls_context() if info.tunnel == "ssl" else None)
    return ex.data


def _headers(reply: bytes) -> list:
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    return [tuple(x.strip() for x in line.split(":", 1)) for line in head.split("\r\n")[1:] if ":" in line]


# ---------------------------------------------------------------- the scripts

async def _ssl_cert(info: ServiceInfo, facts: PortFacts) -> Result:
    if not facts.cert:
        return None
    return ScriptOutput(cert_text(facts.cert, facts.verbose), cert_data(facts.cert) if "md5" in facts.cert else None)


_NMAP_TITLE = re.compile(rb"<title[^>]*>([^<]*)</title>", re.I)
MAX_REDIRECTS = 5


def _status(reply: bytes) -> int:
    parts = reply.split(b"\r\n", 1)[0].split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def _same_place(location: str, facts: PortFacts, tls: bool) -> Optional[str]:
    """The path to ask for if a redirect stays on the scanned host and port (nmap's
    redirect_ok), else None: a redirect never sends a probe anywhere else."""
    from urllib.parse import urlsplit
    u = urlsplit(location)
    if not u.scheme and not u.netloc:
        return location if location.startswith("/") else "/" + location
    default = 443 if u.scheme == "https" else 80
    try:
        port = u.port or default
    except ValueError:
        return None
    if u.scheme not in ("http", "https") or (u.scheme == "https") != tls or port != facts.port \
            or (u.hostname or "").lower() != facts.host.lower():
        return None
    return (u.path or "/") + (f"?{u.query}" if u.query else "")


async def _http_title(info: ServiceInfo, facts: PortFacts) -> Result:
    """nmap's http-title: GET the page (redirects followed on the same host and port), the
    <title> without CR/LF/tab and cut at 65 characters, "Requested resource was ..." after a
    redirect, "Did not follow redirect to ..." when one leads elsewhere."""
    if not facts.active:          # plain -sV: the title its probes saw
        return ScriptOutput(facts.title, {"title": facts.title}) if facts.title else None
    tls = info.tunnel == "ssl" or (info.name == "https")
    path: Optional[str] = facts.args.get("http-title.url", "/")
    redirect = None
    reply = b""
    for _ in range(MAX_REDIRECTS + 1):
        reply = await _http_get(info, facts, path or "/")
        if not reply.startswith(b"HTTP/"):
            return None
        loc = dict((k.lower(), v) for k, v in _headers(reply)).get("location")
        if not (300 <= _status(reply) < 400 and loc):
            break
        redirect = loc
        path = _same_place(loc, facts, tls)
        if path is None:
            return ScriptOutput(f"Did not follow redirect to {loc}", {"redirect_url": loc})
    else:
        return ScriptOutput(f"Did not follow redirect to {redirect}", {"redirect_url": redirect})
    body = reply.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in reply else b""
    m = _NMAP_TITLE.search(body)
    title = m.group(1).decode("utf-8", "replace") if m else None
    data: dict = {}
    if title:
        shown = re.sub(r"[\n\r\t]", "", title)
        shown = shown[:62] + "..." if len(shown) > 65 else shown
        data["title"] = title
    else:
        ctype = dict((k.lower(), v) for k, v in _headers(reply)).get("content-type")
        shown = "Site doesn't have a title" + (f" ({ctype})." if ctype else ".")
    if redirect:
        data["redirect_url"] = redirect
        shown += f"\nRequested resource was {redirect}"
    return ScriptOutput(shown or "Site doesn't have a title.", data or None)


async def _http_server_header(info: ServiceInfo, facts: PortFacts) -> Result:
    """nmap's http-server-header: the Server headers of the -sV probes' HTTP replies and of a GET
    with a Host header (plain -sV: the probes' only), sorted; none when -sV's product says it."""
    replies = [r for r in facts.replies.values() if r.startswith(b"HTTP/1.")]
    if facts.active:
        replies.append(await _http_get(info, facts))
    servers: set = set()
    for r in replies:
        m = re.search(rb"\n[Ss][Ee][Rr][Vv][Ee][Rr]:[ \t]*(.*?)\r?\n", r.split(b"\r\n\r\n", 1)[0] + b"\r\n")
        if m and re.match(rb"HTTP/1\.[01] \d{3}", r):
            servers.add(m.group(1).decode("latin-1"))
    servers.discard(info.product or None)          # nmap: what -sV named already is not said again
    if not servers:
        return None
    out = sorted(servers)
    shown = sorted(x or "<empty>" for x in out)
    return ScriptOutput(("\n  " if len(out) > 1 else "") + "\n  ".join(shown), out)


async def _ssh_hostkey(info: ServiceInfo, facts: PortFacts) -> Result:
    from .sshkey import host_keys
    keys = await host_keys(facts.host, facts.port, STEP_TIMEOUT)
    if not keys:
        return None
    text = "\n" + "\n".join(f"  {k.bits} {k.fingerprint} ({k.label})" + (f"\n{k.type} {k.key}" if facts.verbose > 1
                                                                         else "") for k in keys)
    return ScriptOutput(text, [{"key": k.key, "fingerprint": k.fingerprint, "type": k.type, "bits": str(k.bits)}
                               for k in keys])


async def _banner(info: ServiceInfo, facts: PortFacts) -> Result:
    data = facts.replies.get("NULL")
    if not data and facts.active:
        async with Conversation(facts.host, facts.port, timeout=STEP_TIMEOUT) as c:
            data = await c.read_some(float(facts.args.get("banner.timeout", STEP_TIMEOUT)))
    text = (data or b"").strip(b" \t\r\n\f\v")
    if not text:
        return None
    return banner_text(text, facts.verbose)


def banner_text(data: bytes, verbose: int = 0) -> str:
    """nmap's banner layout: bytes outside 32-126 as \\xNN, cut at 63 characters (71 more per
    level of verbosity; then "..."), in lines of 63 and then 71 characters."""
    first, per_line = 75 - 1 - len("banner") - 5, 75 - 1 - 3
    total = first + verbose * per_line
    out = ""
    for b in data:
        out += chr(b) if 32 <= b <= 126 else f"\\x{b:02X}"
        if len(out) > total + 1:
            break
    if len(out) > total:
        while len(out) > total:
            out = out[:-4] if re.search(r"\\x[0-9A-F]{2}$", out) else out[:-1]
        out = out[:total - 3] + "..."
    lines, ptr = [], first
    while len(out) >= ptr:
        lines.append(out[:ptr])
        out, ptr = out[ptr:], per_line
    lines.append(out)
    return "\n".join(lines)


async def _ftp_anon(info: ServiceInfo, facts: PortFacts) -> Result:
    done = _line_reply()
    async with Conversation(facts.host, facts.port, timeout=STEP_TIMEOUT) as c:
        greeting = await c.read_until(done)
        if not greeting.startswith(b"220"):
            return None
        await c.send(b"USER anonymous\r\n")
        reply = await c.read_until(done)
        if reply.startswith(b"331"):
            await c.send(b"PASS IEUser@\r\n")
            reply = await c.read_until(done)
        code = reply[:3].decode("ascii", "replace")
        if code not in ("230", "332"):
            return None
        lines = [f"Anonymous FTP login allowed (FTP code {code})"]
        if code == "230":
            lines += await _ftp_list(c, facts, done)
        await c.send(b"QUIT\r\n")
    return "\n".join(lines)


async def _ftp_list(c: Conversation, facts: PortFacts, done) -> list:
    """LIST over a passive data connection to the same host (never to an address the server
    names), at most 20 lines as nmap's ftp-anon.maxlist."""
    await c.send(b"PASV\r\n")
    reply = await c.read_until(done)
    m = re.search(rb"\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)", reply)
    if not reply.startswith(b"227") or not m:
        return []
    data_port = int(m.group(5)) * 256 + int(m.group(6))
    async with Conversation(facts.host, data_port, timeout=STEP_TIMEOUT) as d:
        await c.send(b"LIST\r\n")
        listing = await d.read_until(lambda b: 0)          # until the server closes the data line
        listing = listing or bytes(d.buf)
    await c.read_until(done)
    limit = int(facts.args.get("ftp-anon.maxlist", 20 if facts.verbose == 0 else -1))
    rows = [x.rstrip("\r") for x in listing.decode("utf-8", "replace").split("\n") if x.strip()]
    extra = [f"Only {limit} shown. Use --script-args ftp-anon.maxlist=-1 to see all."] \
        if 0 <= limit < len(rows) else []
    return (rows if limit < 0 else rows[:limit]) + extra


async def _smtp_commands(info: ServiceInfo, facts: PortFacts) -> Result:
    done = _line_reply()
    domain = facts.args.get("smtp-commands.domain", facts.args.get("smtp.domain", "scanner.invalid"))
    tls = tls_context() if info.tunnel == "ssl" else None
    async with Conversation(facts.host, facts.port, tls, timeout=STEP_TIMEOUT) as c:
        if not (await c.read_until(done)).startswith(b"220"):
            return None
        await c.send(f"EHLO {domain}\r\n".encode())
        ehlo = await c.read_until(done)
        if not ehlo.startswith(b"250"):
            return None
        result = [_smtp_clean(ehlo, "250", ", ")]
        await c.send(b"HELP\r\n")
        helped = await c.read_until(done)
        if helped.startswith(b"214") or helped.startswith(b"211"):
            result.append(_smtp_clean(helped, helped[:3].decode(), " "))
        await c.send(b"QUIT\r\n")
    return "\n ".join(result)


def _smtp_clean(reply: bytes, code: str, joiner: str) -> str:
    """smtp-commands' cleaning: the code prefixes dropped, lines joined, spaces squeezed."""
    text = reply.decode("utf-8", "replace").replace("\r", "").strip()
    text = re.sub(rf"(?m)^{code}[-\s]+", "", text)
    return re.sub(r"\s+", " ", text.replace("\n", joiner))


def _resp_complete(buf: bytes) -> int:
    """One whole RESP reply (Redis), its length in buf or 0."""
    try:
        return _resp_parse(buf, 0)[1]
    except (IndexError, ValueError):
        return 0


def _resp_parse(buf: bytes, pos: int):
    end = buf.index(b"\r\n", pos)
    kind, line = buf[pos:pos + 1], buf[pos + 1:end]
    pos = end + 2
    if kind in (b"+", b"-", b":"):
        return line.decode("utf-8", "replace"), pos
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            raise IndexError
        return buf[pos:pos + n].decode("utf-8", "replace"), pos + n + 2
    if kind == b"*":
        items = []
        for _ in range(max(0, int(line))):
            item, pos = _resp_parse(buf, pos)
            items.append(item)
        return items, pos
    raise ValueError("not RESP")


_REDIS_FIELDS = (("redis_version", "Version"), ("os", "Operating System"), ("arch_bits", "Architecture"),
                 ("process_id", "Process ID"), ("used_cpu_sys", "Used CPU (sys)"),
                 ("used_cpu_user", "Used CPU (user)"), ("connected_clients", "Connected clients"),
                 ("connected_slaves", "Connected slaves"), ("used_memory_human", "Used memory"), ("role", "Role"))


async def _redis_info(info: ServiceInfo, facts: PortFacts) -> Result:
    async with Conversation(facts.host, facts.port, timeout=STEP_TIMEOUT) as c:
        async def cmd(*words: str):
            await c.send(f"*{len(words)}\r\n".encode() + b"".join(
                f"${len(w.encode())}\r\n{w}\r\n".encode() for w in words))
            reply = await c.read_until(_resp_complete)
            if not reply:                   # as nmap: a command without answer adds nothing
                return True, None
            return reply[:1] == b"-", _resp_parse(reply, 0)[0]
        err, text = await cmd("INFO")
        if text is None:
            return None
        if err:
            return "ERROR: Authentication required" if "NOAUTH" in (text or "") or "not permitted" in (text or "") \
                else f"ERROR: {text}"
        kvs = dict(line.split(":", 1) for line in (text or "").split("\r\n") if ":" in line and not line.startswith("#"))
        out: dict = {}
        for key, label in _REDIS_FIELDS:
            if key in kvs:
                out[label] = f"{kvs[key]} bits" if key == "arch_bits" else kvs[key]
        # As nmap's redis-info, the port's version learns what INFO told.
        info.version = out.get("Version", info.version)
        info.extrainfo = out.get("Architecture", info.extrainfo)
        err, bind = await cmd("CONFIG", "GET", "bind")
        if not err and isinstance(bind, list) and len(bind) > 1 and bind[0] == "bind" and bind[1] is not None:
            out["Bind addresses"] = [ip or "0.0.0.0" for ip in bind[1].split(" ")]
        err, chans = await cmd("PUBSUB", "CHANNELS")
        if not err and isinstance(chans, list) and chans:
            out["Active channels"] = chans[:20]
        err, clients = await cmd("CLIENT", "LIST")
        if not err and isinstance(clients, str):
            import ipaddress
            ips = {m.group(1) for m in re.finditer(r"(?:^|\s)addr=\[?([0-9a-fA-F:.]+?)\]?:\d+(?=\s|$)", clients)}
            valid = []
            for ip in ips:
                try:
                    valid.append(ipaddress.ip_address(ip))
                except ValueError:
                    pass
            if valid:
                out["Client connections"] = [str(a) for a in sorted(valid, key=lambda a: (a.version, a))]
    if not out:
        return None
    return ScriptOutput(nse_text(out), out)


_MYSQL_CAPS = (("LongPassword", 0x1), ("FoundRows", 0x2), ("LongColumnFlag", 0x4), ("ConnectWithDatabase", 0x8),
               ("DontAllowDatabaseTableColumn", 0x10), ("SupportsCompression", 0x20), ("ODBCClient", 0x40),
               ("SupportsLoadDataLocal", 0x80), ("IgnoreSpaceBeforeParenthesis", 0x100),
               ("Speaks41ProtocolNew", 0x200), ("InteractiveClient", 0x400), ("SwitchToSSLAfterHandshake", 0x800),
               ("IgnoreSigpipes", 0x1000), ("SupportsTransactions", 0x2000), ("Speaks41ProtocolOld", 0x4000),
               ("Support41Auth", 0x8000))
_MYSQL_EXT = (("SupportsMultipleStatments", 0x1), ("SupportsMultipleResults", 0x2), ("SupportsAuthPlugins", 0x8))


def mysql_greeting(packet: bytes) -> Optional[dict]:
    """mysql-info's table from a server's greeting packet (its 4-byte header included)."""
    body = packet[4:]
    if not body or body[0] == 0xFF:
        return None
    proto = body[0]
    end = body.index(b"\0", 1)
    out: dict = {"Protocol": str(proto), "Version": body[1:end].decode("utf-8", "replace")}
    pos = end + 1
    out["Thread ID"] = str(struct.unpack_from("<I", body, pos)[0])
    pos += 4
    if proto != 10:
        return out
    salt = body[pos:pos + 8]
    caps = struct.unpack_from("<H", body, pos + 9)[0]
    pos += 11
    ext = status = None
    plugin = None
    if pos < len(body) - 1:
        _, status, ext, plugin_len = struct.unpack_from("<BHHB", body, pos)
        pos += 6 + 10
        if caps & 0x8000:
            n = max(13, plugin_len - 8) - 1
            salt += body[pos:pos + n]
            pos += n + 1
        if ext & 0x8:
            plugin = body[pos:].split(b"\0", 1)[0].decode("utf-8", "replace")
    out["Capabilities flags"] = str(caps)
    names = [n for n, bit in _MYSQL_CAPS if caps & bit] + [n for n, bit in _MYSQL_EXT if ext and ext & bit]
    if names:
        out["Some Capabilities"] = names
    if status is not None:
        out["Status"] = "Autocommit" if status == 2 else str(status)
    out["Salt"] = salt.decode("latin-1")
    if plugin is not None:
        out["Auth Plugin Name"] = plugin
    return out


async def _mysql_info(info: ServiceInfo, facts: PortFacts) -> Result:
    def whole(buf: bytes) -> int:
        return 4 + int.from_bytes(buf[:3], "little") if len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(
            buf[:3], "little") else 0
    packet = facts.replies.get("NULL") or b""
    if not whole(packet):
        async with Conversation(facts.host, facts.port, timeout=STEP_TIMEOUT) as c:
            packet = await c.read_until(whole)
    out = mysql_greeting(packet) if packet else None
    if out is None:
        return None
    text = "\n" + "\n".join(f"  {k}: {', '.join(v) if isinstance(v, list) else v}" for k, v in out.items())
    return ScriptOutput(text, out)


def _dns_query(name: str, nsid: bool) -> bytes:
    import os
    q = os.urandom(2) + b"\x01\x00" + struct.pack(">HHHH", 1, 0, 0, 1 if nsid else 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 16, 3)
    if nsid:     # OPT: 4096-byte UDP, DO bit (nmap asks with dnssec=true), the NSID option, empty
        q += b"\0" + struct.pack(">HHIH", 41, 4096, 0x8000, 4) + struct.pack(">HH", 3, 0)
    return q


def _dns_name_skip(msg: bytes, pos: int) -> int:
    while True:
        n = msg[pos]
        if n == 0:
            return pos + 1
        if n & 0xC0 == 0xC0:
            return pos + 2
        pos += 1 + n


def dns_answers(msg: bytes) -> tuple:
    """([TXT strings of the answers], NSID bytes or None) of a DNS reply."""
    qd, an, ns, ar = struct.unpack_from(">HHHH", msg, 4)
    if msg[3] & 0x0F:        # an error rcode
        return [], None
    pos = 12
    for _ in range(qd):
        pos = _dns_name_skip(msg, pos) + 4
    txts, nsid = [], None
    for i in range(an + ns + ar):
        pos = _dns_name_skip(msg, pos)
        rtype, _, _, rdlen = struct.unpack_from(">HHIH", msg, pos)
        rdata = msg[pos + 10:pos + 10 + rdlen]
        pos += 10 + rdlen
        if i < an and rtype == 16:
            j = 0
            while j < len(rdata):
                txts.append(rdata[j + 1:j + 1 + rdata[j]].decode("utf-8", "replace"))
                j += 1 + rdata[j]
        elif rtype == 41:
            j = 0
            while j + 4 <= len(rdata):
                code, olen = struct.unpack_from(">HH", rdata, j)
                if code == 3:
                    nsid = rdata[j + 4:j + 4 + olen]
                j += 4 + olen
    return txts, nsid


async def _dns_nsid(info: ServiceInfo, facts: PortFacts) -> Result:
    async def ask(name: str, nsid: bool) -> Optional[bytes]:
        q = _dns_query(name, nsid)
        if facts.proto == "udp":
            return await udp_exchange(facts.host, facts.port, q, STEP_TIMEOUT)
        async with Conversation(facts.host, facts.port, timeout=STEP_TIMEOUT) as c:
            await c.send(struct.pack(">H", len(q)) + q)
            reply = await c.read_until(lambda b: 2 + int.from_bytes(b[:2], "big")
                                       if len(b) >= 2 and len(b) >= 2 + int.from_bytes(b[:2], "big") else 0)
            return reply[2:] or None
    out: dict = {}
    first, version = await asyncio.gather(ask("id.server", True), ask("version.bind", False))
    if first:
        txts, nsid = dns_answers(first)
        if nsid:
            out["NSID"] = f"{nsid.decode('latin-1')} ({nsid.hex()})"
        if txts:
            out["id.server"] = txts[0]
    if version:
        txts, _ = dns_answers(version)
        if txts:
            out["bind.version"] = txts[0]
    if not out:
        return None
    return ScriptOutput(nse_text(out), out)


def _named(*names: str, ports: tuple = ()) -> Callable[[ServiceInfo, PortFacts], bool]:
    """nmap's shortport.port_or_service: the service's name, or one of its usual ports."""
    return lambda info, facts: info.name in names or facts.port in ports


def _tcp(rule):
    return lambda info, facts: facts.proto == "tcp" and rule(info, facts)


register(Script("ssl-cert", lambda info, facts: bool(facts.cert), _ssl_cert, sv=True))
register(Script("http-title", _http_port, _http_title, sv=True))
register(Script("http-server-header", _http_port, _http_server_header, default=False, categories=("version",),
                sv=True))
register(Script("ssh-hostkey", _tcp(_named("ssh", ports=(22,))), _ssh_hostkey))
register(Script("banner", lambda info, facts: facts.proto == "tcp" and info.name != "tcpwrapped", _banner,
                default=False))
register(Script("ftp-anon", _tcp(_named("ftp", ports=(21,))), _ftp_anon, categories=("auth", "safe")))
register(Script("smtp-commands", _tcp(_named("smtp", "smtps", "submission", ports=(25, 465, 587))),
                _smtp_commands))
register(Script("redis-info", _tcp(_named("redis", ports=(6379,))), _redis_info, default=False))
register(Script("mysql-info", _tcp(_named("mysql", ports=(3306,))), _mysql_info))
register(Script("dns-nsid", _named("domain", ports=(53,)), _dns_nsid))
