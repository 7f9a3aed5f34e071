"""What a scan hands on, in every format at once: the terminal report (an nmap-like table per
host for small scans, one line per open port as it is found for large ones), and the files of
-oN (nmap's normal text), -oX (nmap's XML), -oG (grepable), -oJ (NDJSON), --csv and -oL
(masscan's list). Each writer has the same small interface: write(rows) as results arrive (rows
are RESULT_DTYPE arrays), close(summary) at the end. Streaming formats write as they go; the
formats nmap groups by host (normal, XML, grepable, the terminal table) share one buffer of rows
and render it at the end. A writer whose file fails (e.g. disk full) stops writing and keeps the
error for the caller to report: the scan itself goes on."""
from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Optional
from xml.sax.saxutils import escape as xml_escape, quoteattr

import numpy as np

from .errors import InputError
from .ports import format_ports as port_ranges, service_name   # 22,80,1000-2000
from .states import PROTO_NAMES, REASON_NAMES, STATE_NAMES, STATES, addresses, host_keys

OPEN = STATES["open"]
UP = STATES["up"]
# nmap folds a state into "Not shown: N <state> ports" once more than this many ports share it.
FOLD_ABOVE = 25
VERSION = "0.1.0"
NO_RESPONSE = next(code for code, name in REASON_NAMES.items() if name == "no-response")


@dataclass
class ScanInfo:
    """What the output headers say about a scan (nmap's <nmaprun>/<scaninfo>, the # comment lines)."""
    start: float = field(default_factory=time.time)    # epoch seconds
    command: str = "scanner"
    scan_type: str = "syn"                             # nmap's scaninfo type: syn or connect
    protocol: str = "tcp"
    ports: tuple = ()
    n_hosts: int = 0
    version: str = VERSION
    scanner: str = "scanner"
    scaninfo: tuple = ()     # ((type, protocol, ports), ...) when a scan has several; else the above
    assume_up: bool = False  # -Pn: every target is up, answered or not (nmap: reason user-set)

    @property
    def services(self) -> str:
        return port_ranges(self.ports)


def nmap_time(t: float) -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(t))


def rows_to_dicts(rows: np.ndarray):
    for ip, port, proto, state, reason, ttl in zip(
            addresses(rows), rows["port"].tolist(), rows["proto"].tolist(), rows["state"].tolist(),
            rows["reason"].tolist(), rows["ttl"].tolist()):
        yield {"ip": ip, "port": port, "proto": PROTO_NAMES[proto],
               "state": STATE_NAMES[state], "reason": REASON_NAMES[reason], "ttl": ttl or None}


# ---------------------------------------------------------------- the host-grouped view

class RowBuffer:
    """All rows of a scan, for the formats that group them by host; sorted once, on demand."""

    def __init__(self):
        self.batches, self._sorted = [], None

    def append(self, rows: np.ndarray) -> None:
        if len(rows):
            self.batches.append(rows.copy())
            self._sorted = None

    def rows(self) -> np.ndarray:
        if self._sorted is None:
            from .states import RESULT_DTYPE
            rows = np.concatenate(self.batches) if self.batches else np.zeros(0, dtype=RESULT_DTYPE)
            self._sorted = rows[np.lexsort((rows["port"], rows["proto"], host_keys(rows)))]
            self.batches = [self._sorted]
        return self._sorted


@dataclass
class HostView:
    """One host that answered anything: its ports, split into those listed and those folded."""
    addr: str
    rows: np.ndarray                 # all its port rows, by protocol and port
    shown: np.ndarray                # rows listed one by one
    folded: list                     # [(state name, proto name, count, [(reason name, count, ports)])]
    up: np.ndarray                   # host discovery replies (state "up"), if any

    @property
    def ipv6(self) -> bool:
        return ":" in self.addr

    @property
    def status_reason(self) -> tuple:
        """(reason, ttl) of the reply that showed the host is up (nmap: status reason)."""
        answered = self.up if len(self.up) else self.rows[self.rows["reason"] != NO_RESPONSE]
        if not len(answered):
            return "user-set", 0         # -Pn: up because the user said so
        first = answered[0]
        return REASON_NAMES[int(first["reason"])], int(first["ttl"])


def host_views(rows: np.ndarray, show_all: bool, assume_up: bool = False):
    """(hosts as HostViews, number of hosts left out because they never answered; with
    assume_up (-Pn), every host is shown). rows: sorted."""
    if not len(rows):
        return [], 0
    keys = host_keys(rows)
    bounds = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(rows)]))
    views, silent = [], 0
    for s, e in zip(starts.tolist(), ends.tolist()):
        mine = rows[s:e]
        if not assume_up and not np.any(mine["reason"] != NO_RESPONSE):
            silent += 1
            continue
        up, mine = mine[mine["state"] == UP], mine[mine["state"] != UP]
        folded, keep = [], np.ones(len(mine), dtype=bool)
        if not show_all:
            groups, counts = np.unique(mine[["state", "proto"]], return_counts=True)
            for (st, proto), n in zip(groups.tolist(), counts.tolist()):
                if st == OPEN or n <= FOLD_ABOVE:
                    continue
                mask = (mine["state"] == st) & (mine["proto"] == proto)
                these = mine[mask]
                keep &= ~mask
                reasons, rcounts = np.unique(these["reason"], return_counts=True)
                why = [(REASON_NAMES[r], n, these["port"][these["reason"] == r].tolist())
                       for r, n in zip(reasons.tolist(), rcounts.tolist())]
                folded.append((STATE_NAMES[st], PROTO_NAMES[proto], len(these), why))
        views.append(HostView(addresses(rows[s:s + 1])[0], mine, mine[keep], folded, up))
    return views, silent


def escape_for_screen(text: str, newline: bool = True) -> str:
    """nmap's escape_for_screen(): printable ASCII, tab and newline as they are, every other
    byte as \\xHH, so that a hostile banner cannot put control sequences on a terminal or into
    -oN. Chars up to U+00FF are that byte (banners are decoded as latin-1), others their UTF-8.
    newline=False: a newline is escaped too (a line that must stay one line)."""
    if text.isascii() and text.isprintable():
        return text
    keep = "\t\n" if newline else "\t"
    out = []
    for ch in text:
        if ch in keep or " " <= ch <= "~":
            out.append(ch)
        else:
            raw = bytes([ord(ch)]) if ord(ch) < 256 else ch.encode("utf-8", "surrogatepass")
            out.append("".join(f"\\x{b:02X}" for b in raw))
    return "".join(out)


def host_block(view: HostView, reason: bool, title: str = "Scan report for", services=None, os_guess=None) -> list:
    """The nmap-like lines of one host: the one home of that layout (terminal and -oN).
    services: {(addr, proto, port): ServiceInfo} from -sV (adds nmap's VERSION column and script
    lines); os_guess: this host's OsGuess from -O (adds nmap's OS lines)."""
    out = [f"{title} {view.addr}"]
    for state, proto, n, why in view.folded:
        out.append(f"Not shown: {n} {state} {proto} ports ({', '.join(f'{c} {r}' for r, c, _ in why)})")
    services = services or {}
    versions = bool(services) and any((view.addr, d["proto"], d["port"]) in services
                                      for d in rows_to_dicts(view.shown))
    if len(view.shown):
        head = f"{'PORT':<9} {'STATE':<15} {'SERVICE':<15}"
        if reason:
            head += f" {'REASON':<20}" if versions else " REASON"
        out.append((head + (" VERSION" if versions else "")).rstrip())
        for d in rows_to_dicts(view.shown):
            svc = services.get((view.addr, d["proto"], d["port"]))
            line = (f"{str(d['port']) + '/' + d['proto']:<9} {d['state']:<15} "
                    f"{svc.display_name if svc else service_name(d['port'], d['proto']):<15}")
            if reason:
                why = f"{d['reason']}" + (f" ttl {d['ttl']}" if d["ttl"] else "")
                line += f" {why:<20}" if versions else f" {why}"
            if svc is not None and versions:
                line += f" {svc.version_text}"
            out.append(line.rstrip())
            for i, (sid, text) in enumerate(sorted((svc.scripts if svc else {}).items())):
                lines = text.split("\n")
                for j, t in enumerate(lines):
                    lead = "|_" if j == len(lines) - 1 else "| "
                    out.append(f"{lead}{sid + ': ' if j == 0 else ''}{t}")
    if os_guess is not None:
        out += os_lines(os_guess)
    info = service_info_line(view.addr, services)
    if info:
        out.append(info)
    return [escape_for_screen(line, newline=False) for line in out]   # script output was split above


def os_lines(g) -> list:
    """nmap's OS section of a host (normal output)."""
    out = [f"Device type: {g.type or 'general purpose'}", f"Running: {g.running}"]
    if g.cpes:
        out.append("OS CPE: " + " ".join(g.cpes))
    if g.accuracy == 100:                   # every piece of evidence fits (nmap: an exact match)
        out.append(f"OS details: {g.name}")
    else:
        out.append("Aggressive OS guesses: " + ", ".join(f"{n} ({a}%)" for n, a in
                                                      [(g.name, g.accuracy)] + [(o[0], o[1]) for o in g.others]))
    fp = g.fingerprint
    if fp is not None:
        ev = (f"SYN-ACK from port {fp.port}: ttl {fp.ttl}, window {fp.window}, mss {fp.mss}, "
              f"options {fp.options or 'none'}" + (f", wscale {fp.wscale}" if fp.wscale >= 0 else "")
              + (", DF" if fp.df else ""))
        if fp.rst_ttl:
            ev += f"; RST from port {fp.closed_port}: ttl {fp.rst_ttl}, window {fp.rst_window}"
        out.append(f"OS evidence: {ev}")
    return out


def service_info_line(addr: str, services) -> str:
    """nmap's 'Service Info: Host: x; OS: Linux; CPE: cpe:/o:...' of a host."""
    mine = [s for (a, _, _), s in sorted((services or {}).items(), key=lambda kv: (kv[0][1], kv[0][2]))
            if a == addr]
    hosts = list(dict.fromkeys(s.hostname for s in mine if s.hostname))
    oses = list(dict.fromkeys(s.ostype for s in mine if s.ostype))
    devs = list(dict.fromkeys(s.devicetype for s in mine if s.devicetype))
    cpes = list(dict.fromkeys(c for s in mine for c in s.cpes if c.startswith(("cpe:/o", "cpe:/h"))))
    parts = []
    if hosts:
        parts.append(f"Host{'s' if len(hosts) > 1 else ''}: {', '.join(hosts)}")
    if oses:
        parts.append(f"OS{'s' if len(oses) > 1 else ''}: {', '.join(oses)}")
    if devs:
        parts.append(f"Device{'s' if len(devs) > 1 else ''}: {', '.join(devs)}")
    if cpes:
        parts.append(f"CPE: {', '.join(cpes)}")
    return ("Service Info: " + "; ".join(parts)) if parts else ""


def service_xml(svc, port: int, proto: str) -> str:
    """nmap's <service> element (and <script> elements) of a port; the services table's guess
    (method="table") when -sV found nothing."""
    if svc is None:
        return f'<service name={quoteattr(service_name(port, proto))} method="table" conf="3"/>'
    attrs = [("name", svc.name), ("product", svc.product), ("version", svc.version),
             ("extrainfo", svc.extrainfo), ("hostname", svc.hostname), ("ostype", svc.ostype),
             ("devicetype", svc.devicetype), ("tunnel", svc.tunnel)]
    head = "<service " + " ".join(f"{k}={quoteattr(_xml_chars(v))}" for k, v in attrs if v)
    head += f' method="{svc.method}" conf="{svc.conf}"'
    cpes = "".join(f"<cpe>{xml_escape(c)}</cpe>" for c in svc.cpes)
    out = head + (f">{cpes}</service>" if cpes else "/>")
    for sid, text in sorted(svc.scripts.items()):
        out += f"<script id={quoteattr(sid)} output={quoteattr(_xml_chars(text))}/>"
    return out


def _xml_chars(text: str) -> str:
    """Without the control characters XML 1.0 cannot carry (servers' banners may hold any byte)."""
    return "".join(c for c in text if c >= " " or c in "\t\n\r")


def os_xml(g, rows) -> str:
    """nmap's <os> element of a host."""
    out = ["<os>"]
    fp = g.fingerprint
    if fp is not None and fp.port:
        out.append(f'<portused state="open" proto="tcp" portid="{fp.port}"/>')
    if fp is not None and fp.closed_port:
        out.append(f'<portused state="closed" proto="tcp" portid="{fp.closed_port}"/>')
    for name, acc, family, vendor, osgen, typ, cpe in [(g.name, g.accuracy, g.family, g.vendor, g.osgen, g.type,
                                                        g.cpes[0] if g.cpes else "")] + list(g.others):
        out.append(f'<osmatch name={quoteattr(name)} accuracy="{acc}" line="0">')
        for gen in (osgen or "").split("|"):
            attrs = f'type={quoteattr(typ or "general purpose")} vendor={quoteattr(vendor if vendor != "*" else family)} ' \
                    f'osfamily={quoteattr(family)}' + (f' osgen={quoteattr(gen)}' if gen and gen != "*" else "")
            out.append(f'<osclass {attrs} accuracy="{acc}">' + (f"<cpe>{xml_escape(cpe)}</cpe>" if cpe else "")
                       + "</osclass>")
        out.append("</osmatch>")
    out.append("</os>")
    return "\n".join(out) + "\n"


def done_line(info: ScanInfo, summary, n_up: int, what: str = "Nmap done at") -> str:
    end = info.start + summary.elapsed
    n = info.n_hosts
    return (f"{what} {nmap_time(end)} -- {n} IP address{'' if n == 1 else 'es'} ({n_up} host{'' if n_up == 1 else 's'}"
            f" up) scanned in {summary.elapsed:.2f} seconds")


# ---------------------------------------------------------------- writers

class Writer:
    """A file (or stdout for '-') written as results arrive. Subclasses: header(), write_rows(),
    footer(summary). A failed write stops this writer; `error` says why."""
    option = "-o?"
    grouped = False          # renders from a RowBuffer at the end
    errno = None
    services: dict = {}      # -sV: {(addr, proto, port): ServiceInfo}, set before close()
    os_guesses: dict = {}    # -O: {addr: OsGuess}
    details = False          # -sV/-O on: streams hold open ports back until close(), to add them

    def __init__(self, path: str, info: Optional[ScanInfo] = None, buffer: Optional[RowBuffer] = None,
                 show_all: bool = False, append: bool = False):
        """append: a resumed scan's streaming output goes on after what the first run wrote
        (the formats grouped by host are written anew, from every row)."""
        self.path, self.info, self.show_all = path, info or ScanInfo(), show_all
        self.error: Optional[str] = None
        self.buffer, self._own_buffer = (buffer, False) if buffer is not None else (RowBuffer(), True)
        append = append and not self.grouped
        if path == "-":
            self.file, self._close = sys.stdout, False
        else:
            try:
                self.file, self._close = open(path, "a" if append else "w", encoding="utf-8", newline=""), True
            except OSError as e:
                raise InputError(f"cannot write {self.option} output '{path}': {e.strerror}") from None
        if not append:
            self._guard(self.header)

    @property
    def failed(self) -> bool:
        return self.error is not None

    def _guard(self, fn, *args) -> None:
        if self.failed:
            return
        try:
            fn(*args)
            self.file.flush()
        except OSError as e:
            self.errno = e.errno
            self.error = f"writing {self.option} output '{self.path}' failed: {e.strerror or e}"

    def write(self, rows: np.ndarray) -> None:
        if self._own_buffer and self.grouped:
            self.buffer.append(rows)
        if not self.grouped and not self.show_all:
            rows = rows[rows["reason"] != NO_RESPONSE]     # streams list what answered
        if self.details and not self.grouped and len(rows):
            held = rows["state"] == OPEN
            if held.any():
                self.__dict__.setdefault("_held", []).append(rows[held].copy())
                rows = rows[~held]
        if len(rows) and not self.grouped:
            self._guard(self.write_rows, rows)

    def set_details(self, services=None, os_guesses=None) -> None:
        """-sV/-O results, known once the port scan is over; used by close()."""
        if services is not None:
            self.services = services
        if os_guesses is not None:
            self.os_guesses = os_guesses

    def close(self, summary=None) -> None:
        held = self.__dict__.pop("_held", None)
        if held:
            self._guard(self.write_rows, np.concatenate(held))
        if summary is not None:
            self._guard(self.footer, summary)
        if self._close:
            try:
                self.file.close()
            except OSError as e:
                if not self.failed:
                    self.error = f"writing {self.option} output '{self.path}' failed: {e.strerror or e}"

    def header(self) -> None:
        pass

    def nmap_comment_header(self) -> None:
        """The first line of nmap's normal and grepable outputs."""
        i = self.info
        self.file.write(f"# Nmap {i.version} scan initiated {nmap_time(i.start)} as: {i.command}\n")

    def write_rows(self, rows: np.ndarray) -> None:
        pass

    def footer(self, summary) -> None:
        pass


class NdjsonWriter(Writer):
    """-oJ: one JSON object per port, flushed per batch so that an interrupted scan keeps its results."""
    option = "-oJ"

    def write_rows(self, rows):
        self.file.write("".join(json.dumps(self._details(d)) + "\n" for d in rows_to_dicts(rows)))

    def _details(self, d: dict) -> dict:
        svc = self.services.get((d["ip"], d["proto"], d["port"])) if self.services else None
        if svc is not None:
            d["service"] = svc.to_dict()
        g = self.os_guesses.get(d["ip"]) if self.os_guesses and d["state"] == "open" else None
        if g is not None:
            d["os"] = g.to_dict()
        return d


class CsvWriter(Writer):
    """--csv: ip,port,proto,state,reason,ttl,service with a header row (RFC 4180, csv module)."""
    option = "--csv"
    FIELDS = ["ip", "port", "proto", "state", "reason", "ttl", "service"]
    DETAIL_FIELDS = ["product", "version", "extrainfo", "tunnel", "cpe", "os", "os_accuracy"]   # -sV/-O

    def __init__(self, path, info=None, buffer=None, show_all: bool = False, details: bool = False, **kw):
        self.details = details
        super().__init__(path, info, buffer, show_all, **kw)

    def header(self):
        csv.writer(self.file, lineterminator="\n").writerow(self.FIELDS + (self.DETAIL_FIELDS if self.details else []))

    def write_rows(self, rows):
        out = []
        for d in rows_to_dicts(rows):
            svc = self.services.get((d["ip"], d["proto"], d["port"])) if self.services else None
            row = [d["ip"], d["port"], d["proto"], d["state"], d["reason"], "" if d["ttl"] is None else d["ttl"],
                   svc.display_name if svc else service_name(d["port"], d["proto"])]
            if self.details:
                g = self.os_guesses.get(d["ip"]) if d["state"] == "open" else None
                row += ([svc.product, svc.version, svc.extrainfo, svc.tunnel, " ".join(svc.cpes)] if svc
                        else [""] * 5) + ([g.name, g.accuracy] if g else ["", ""])
            out.append(row)
        csv.writer(self.file, lineterminator="\n").writerows(out)


class ListWriter(Writer):
    """-oL: masscan's list format ("open tcp 80 192.0.2.1 1700000000"), a line per result."""
    option = "-oL"

    def header(self):
        self.file.write("#masscan\n")

    def write_rows(self, rows):
        if not self.show_all:
            rows = rows[rows["state"] == OPEN]
        now = int(time.time())
        self.file.write("".join(f"{d['state']} {d['proto']} {d['port']} {d['ip']} {now}\n"
                                for d in rows_to_dicts(rows)))

    def footer(self, summary):
        self.file.write("# end\n")


class NormalWriter(Writer):
    """-oN: nmap's normal output, the terminal table with nmap's # header and footer lines."""
    option = "-oN"
    grouped = True

    def __init__(self, path, info=None, buffer=None, show_all: bool = False, reason: bool = False,
                 append: bool = False):
        self.reason = reason
        super().__init__(path, info, buffer, show_all, append)

    header = Writer.nmap_comment_header

    def footer(self, summary):
        views, _ = host_views(self.buffer.rows(), self.show_all, self.info.assume_up)
        out = []
        for v in views:
            reason, ttl = v.status_reason
            out += host_block(v, self.reason, title="Nmap scan report for")[:1]
            out += [f"Host is up, received {reason}" + (f" ttl {ttl}" if ttl else "") + ".", ""]
            out += host_block(v, self.reason, services=self.services, os_guess=self.os_guesses.get(v.addr))[1:] + [""]
        if summary.interrupted:
            out.append("# scan interrupted: results are partial")
        out.append("# " + done_line(self.info, summary, len(views)))
        self.file.write("\n".join(out) + "\n")


class GrepableWriter(Writer):
    """-oG: nmap's grepable format, one Status and one Ports line per host."""
    option = "-oG"
    grouped = True

    header = Writer.nmap_comment_header

    def footer(self, summary):
        views, _ = host_views(self.buffer.rows(), self.show_all, self.info.assume_up)
        out = []
        for v in views:
            out.append(f"Host: {v.addr} ()\tStatus: Up")
            ports = ", ".join(f"{d['port']}/{d['state']}/{d['proto']}//{self._service(v.addr, d)}/"
                              for d in rows_to_dicts(v.shown))
            line = f"Host: {v.addr} ()\tPorts: {ports}"
            if v.folded:   # nmap names only one ignored state; the largest
                state, _, n, _ = max(v.folded, key=lambda f: f[2])
                line += f"\tIgnored State: {state} ({n})"
            g = self.os_guesses.get(v.addr)
            if g is not None:
                line += f"\tOS: {g.name}"
            out.append(line)
        out.append("# " + done_line(self.info, summary, len(views)))
        self.file.write("\n".join(out) + "\n")

    def _service(self, addr: str, d: dict) -> str:
        """service//version/ of a Ports entry; nmap writes "/" inside a field as "|"."""
        svc = self.services.get((addr, d["proto"], d["port"])) if self.services else None
        if svc is None:
            return f"{service_name(d['port'], d['proto'])}//"
        name = f"ssl|{svc.name}" if svc.tunnel == "ssl" else svc.name
        return f"{name}//{escape_for_screen(svc.version_text, newline=False).replace('/', '|')}"


class XmlWriter(Writer):
    """-oX: nmap's XML (valid against nmap.dtd), read by ndiff, python-libnmap, Metasploit & co."""
    option = "-oX"
    grouped = True

    def header(self):
        i = self.info
        start = int(i.start)
        self.file.write(
            '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE nmaprun>\n'
            f"<!-- {i.scanner} {i.version} scan initiated {nmap_time(i.start)} as: {_comment(i.command)} -->\n"
            f'<nmaprun scanner="nmap" args={quoteattr(i.command)} start="{start}" '
            f'startstr={quoteattr(nmap_time(i.start))} version={quoteattr(i.version)} xmloutputversion="1.05">\n'
            + "".join(f'<scaninfo type="{kind}" protocol="{proto}" numservices="{len(set(ports))}" '
                      f'services="{port_ranges(ports)}"/>\n'
                      for kind, proto, ports in (i.scaninfo or ((i.scan_type, i.protocol, i.ports),)))
            + '<verbose level="0"/>\n<debugging level="0"/>\n')

    def footer(self, summary):
        i = self.info
        start, end = int(i.start), int(i.start + summary.elapsed)
        views, _ = host_views(self.buffer.rows(), self.show_all, self.info.assume_up)
        out = io.StringIO()
        w = out.write
        for v in views:
            reason, ttl = v.status_reason
            w(f'<host starttime="{start}" endtime="{end}"><status state="up" reason="{reason}" '
              f'reason_ttl="{ttl}"/>\n<address addr="{v.addr}" addrtype="{"ipv6" if v.ipv6 else "ipv4"}"/>\n'
              '<hostnames>\n</hostnames>\n<ports>')
            for state, proto, n, why in v.folded:
                w(f'<extraports state="{state}" count="{n}">\n')
                for r, c, ports in why:
                    w(f'<extrareasons reason="{r}" count="{c}" proto="{proto}" ports="{port_ranges(ports)}"/>\n')
                w("</extraports>\n")
            for d in rows_to_dicts(v.shown):
                w(f'<port protocol="{d["proto"]}" portid="{d["port"]}"><state state="{d["state"]}" '
                  f'reason="{d["reason"]}" reason_ttl="{d["ttl"] or 0}"/>'
                  f'{service_xml(self.services.get((v.addr, d["proto"], d["port"])), d["port"], d["proto"])}</port>\n')
            w("</ports>\n")
            if v.addr in self.os_guesses:
                w(os_xml(self.os_guesses[v.addr], v.rows))
            w("</host>\n")
        n = i.n_hosts
        summ = done_line(i, summary, len(views))
        exit_attr = 'exit="error" errormsg="interrupted"' if summary.interrupted else 'exit="success"'
        w(f'<runstats><finished time="{end}" timestr={quoteattr(nmap_time(i.start + summary.elapsed))} '
          f'summary={quoteattr(summ)} elapsed="{summary.elapsed:.2f}" {exit_attr}/>'
          f'<hosts up="{len(views)}" down="{max(0, n - len(views))}" total="{n}"/>\n</runstats>\n</nmaprun>\n')
        self.file.write(out.getvalue())


def _comment(text: str) -> str:
    return text.replace("--", "-\u2010")     # "--" may not appear inside an XML comment


# ---------------------------------------------------------------- terminal

class OpenPortLines:
    """masscan-style: a line per open port, printed as soon as it is found."""
    grouped = False
    error = None

    def __init__(self, file=sys.stdout, show_all: bool = False):
        self.file, self.show_all = file, show_all

    def write(self, rows: np.ndarray) -> None:
        if not self.show_all:
            rows = rows[rows["state"] == OPEN]
        self.file.write("".join(
            f"Discovered {d['state']} port {d['port']}/{d['proto']} on {d['ip']} ({d['reason']} ttl {d['ttl']})\n"
            for d in rows_to_dicts(rows)))
        self.file.flush()

    def close(self, summary=None) -> None:
        pass


class HostTable:
    """nmap-like: at the end, a port table for every host that answered anything."""
    grouped = True
    error = None
    services: dict = {}
    os_guesses: dict = {}
    set_details = Writer.set_details

    def __init__(self, file=sys.stdout, show_all: bool = False, reason: bool = True,
                 buffer: Optional[RowBuffer] = None, assume_up: bool = False):
        self.file, self.show_all, self.reason, self.assume_up = file, show_all, reason, assume_up
        self.buffer, self._own_buffer = (buffer, False) if buffer is not None else (RowBuffer(), True)

    def write(self, rows: np.ndarray) -> None:
        if self._own_buffer:
            self.buffer.append(rows)

    def close(self, summary=None) -> None:
        rows = self.buffer.rows()
        if not len(rows):
            return
        views, silent = host_views(rows, self.show_all, self.assume_up)
        for v in views:
            block = host_block(v, self.reason, services=self.services, os_guess=self.os_guesses.get(v.addr))
            if len(v.up):
                why, ttl = v.status_reason
                block.insert(1, f"Host is up ({why}" + (f" ttl {ttl})" if ttl else ")"))
            self.file.write("\n" + "\n".join(block) + "\n")
        if silent:
            self.file.write(f"{silent} host(s) sent no reply to any probe.\n")
        self.file.flush()


# ---------------------------------------------------------------- all outputs of one scan

FILE_WRITERS = {"-oN": NormalWriter, "-oX": XmlWriter, "-oG": GrepableWriter, "-oJ": NdjsonWriter,
                "--csv": CsvWriter, "-oL": ListWriter}
FORMATS = {"normal": "-oN", "xml": "-oX", "grepable": "-oG", "json": "-oJ", "csv": "--csv", "list": "-oL"}
ALL_BASENAME = {"-oN": ".nmap", "-oX": ".xml", "-oG": ".gnmap"}


def plan_outputs(options: dict, all_basename: Optional[str] = None) -> list:
    """[(option, path)] from {option: path or None} and -oA BASENAME; checks the paths can be
    told apart (one stdout, no file twice). Raises InputError."""
    plan = [(opt, path) for opt, path in options.items() if path]
    if all_basename:
        if all_basename == "-":
            raise InputError("-oA needs a base file name, not '-' (use -oN/-oX/-oG - for stdout)")
        plan += [(opt, all_basename + ext) for opt, ext in ALL_BASENAME.items()]
    if sum(path == "-" for _, path in plan) > 1:
        raise InputError("only one output can go to stdout ('-'): "
                         + ", ".join(opt for opt, path in plan if path == "-"))
    seen = {}
    for opt, path in plan:
        if path == "-":
            continue
        real = os.path.realpath(path)
        if real in seen:
            raise InputError(f"{seen[real]} and {opt} both write '{path}'")
        seen[real] = opt
    return plan


def make_writer(option: str, path: str, info: ScanInfo, buffer: Optional[RowBuffer] = None,
                show_all: bool = False, reason: bool = False, append: bool = False, details: bool = False):
    """details: -sV/-O results will be set (set_details) before close()."""
    cls = FILE_WRITERS[option]
    kwargs = {"reason": reason} if cls is NormalWriter else {}
    if cls is CsvWriter and details:
        kwargs["details"] = True
    return cls(path, info, buffer, show_all=show_all, append=append, **kwargs)


class Outputs:
    """Every output of a scan behind one write(rows)/close(summary). Never raises on a failed
    write: errors() lists what failed, so the scan goes on and the store keeps everything."""

    def __init__(self, plan: list, info: ScanInfo, show_all: bool = False, reason: bool = False,
                 terminal: bool = True, table: bool = True, resumed: Optional[np.ndarray] = None,
                 details: bool = False):
        """resumed: the rows an interrupted run already wrote; streams append after them.
        details: -sV/-O results will come (set_details) before close(): NDJSON and CSV hold
        their open ports back to write them with the service and OS."""
        self.buffer = RowBuffer()
        if resumed is not None:
            self.buffer.append(resumed)
        self.writers = []
        try:
            for opt, path in plan:
                self.writers.append(make_writer(opt, path, info, self.buffer, show_all, reason,
                                                append=resumed is not None, details=details))
        except InputError:
            self.close(None)
            raise
        self.to_stdout = any(path == "-" for _, path in plan)
        if terminal and not self.to_stdout:
            self.writers.append(HostTable(show_all=show_all, reason=reason, buffer=self.buffer,
                                          assume_up=info.assume_up) if table
                                else OpenPortLines(show_all=show_all))
        self._buffered = any(w.grouped for w in self.writers)
        for w in self.writers:
            if isinstance(w, NdjsonWriter) and details:
                w.details = True

    def set_details(self, services=None, os_guesses=None) -> None:
        """-sV's {(addr, proto, port): ServiceInfo} and -O's {addr: OsGuess}, before close()."""
        for w in self.writers:
            if hasattr(w, "set_details"):
                w.set_details(services, os_guesses)

    def write(self, rows: np.ndarray) -> None:
        if self._buffered:
            self.buffer.append(rows)
        for w in self.writers:
            if not w.grouped:
                w.write(rows)

    def close(self, summary) -> None:
        for w in self.writers:
            w.close(summary)

    def errors(self) -> list:
        return [w.error for w in self.writers if w.error]


class BackgroundSink:
    """A scan's sink that hands each batch to a thread writing it to every consumer (the store,
    the outputs) in order: the capture thread never waits on a disk or a database. close()
    drains the queue; a bug in a consumer is re-raised there, not lost in the thread."""

    def __init__(self, consumers):
        import queue
        import threading
        self.consumers = [c for c in consumers if c is not None]
        self.queue = queue.SimpleQueue()
        self.exc = None
        self.thread = threading.Thread(target=self._run, name="outputs", daemon=True)
        self.thread.start()

    def __call__(self, rows: np.ndarray) -> None:
        self.queue.put(rows)

    def _run(self) -> None:
        while True:
            rows = self.queue.get()
            if rows is None:
                return
            if self.exc is not None:
                continue
            try:
                for c in self.consumers:
                    c.write(rows)
            except BaseException as e:      # noqa: B036 - re-raised by close()
                self.exc = e

    def close(self) -> None:
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        if self.exc is not None:
            exc, self.exc = self.exc, None
            raise exc
