"""The writers' common ground: what the headers say about a scan (ScanInfo), rows as dicts, the
buffer of rows the host-grouped formats render from, and Writer, the one small interface every
format implements and registers with (register)."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Type

import numpy as np

from .. import __version__
from ..errors import InputError
from ..ports import format_ports as port_ranges   # 22,80,1000-2000
from ..states import PROTO_NAMES, REASON_NAMES, STATE_NAMES, STATES, addresses, host_keys

OPEN = STATES["open"]
UP = STATES["up"]
# nmap folds a state into "Not shown: N <state> ports" once more than this many ports share it.
FOLD_ABOVE = 25
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
    version: str = __version__
    scanner: str = "scanner"
    scaninfo: tuple = ()     # ((type, protocol, ports), ...) when a scan has several; else the above
    assume_up: bool = False  # -Pn: every target is up, answered or not (nmap: reason user-set)

    @property
    def services(self) -> str:
        return port_ranges(self.ports)


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


def nmap_time(t: float) -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(t))


def rows_to_dicts(rows: np.ndarray):
    for ip, port, proto, state, reason, ttl in zip(
            addresses(rows), rows["port"].tolist(), rows["proto"].tolist(), rows["state"].tolist(),
            rows["reason"].tolist(), rows["ttl"].tolist()):
        yield {"ip": ip, "port": port, "proto": PROTO_NAMES[proto],
               "state": STATE_NAMES[state], "reason": REASON_NAMES[reason], "ttl": ttl or None}


class RowBuffer:
    """All rows of a scan, for the formats that group them by host; sorted once, on demand."""

    def __init__(self):
        self.batches, self._sorted = [], None

    def append(self, rows: np.ndarray) -> None:
        if len(rows):
            self.batches.append(rows.copy())
            self._sorted = None

    write = append          # a consumer of a scan's sink, like the writers

    def rows(self) -> np.ndarray:
        if self._sorted is None:
            from ..states import concatenate, take
            rows = concatenate(self.batches)
            self._sorted = take(rows, np.lexsort((rows["port"], rows["proto"], host_keys(rows))))
            self.batches = [self._sorted]
        return self._sorted


def done_line(info: ScanInfo, summary, n_up: int, what: str = "Nmap done at") -> str:
    end = info.start + summary.elapsed
    n = info.n_hosts
    return (f"{what} {nmap_time(end)} -- {n} IP address{'' if n == 1 else 'es'} ({n_up} host{'' if n_up == 1 else 's'}"
            f" up) scanned in {summary.elapsed:.2f} seconds")


class Writer:
    """A file (or stdout for '-') written as results arrive. Subclasses: header(), write_rows(),
    footer(summary), and the class attributes that register them (name, option, suffix). A
    failed write stops this writer; `error` says why."""
    name = ""                # scanner show -f NAME
    option = "-o?"           # the command-line option
    suffix = ""              # its file under -oA BASENAME (nmap's three formats only)
    grouped = False          # renders from a RowBuffer at the end
    carries_details = False  # a stream that writes -sV/-O results (in rows that follow the ports)
    errno = None
    services: dict = {}      # -sV: {(addr, proto, port): ServiceInfo}, set before close()
    os_guesses: dict = {}    # -O: {addr: OsGuess}
    names: dict = {}         # -R: {addr: name}
    traces: dict = {}        # --traceroute: {addr: Trace}
    traces_written = False   # a stream wrote them (else it writes them at the end: scanner show)
    details = False          # -sV/-O on: this stream has room for their results

    def __init__(self, path: str, info: Optional[ScanInfo] = None, buffer: Optional[RowBuffer] = None,
                 show_all: bool = False, append: bool = False, reason: bool = False, details: bool = False,
                 append_output: bool = False):
        """append: a resumed scan's streaming output goes on after what the first run wrote
        (the formats grouped by host are written anew, from every row). reason: show why each
        port has its state (normal output). details: -sV/-O results will be set (set_details)
        before close()."""
        self.path, self.info, self.show_all, self.reason = path, info or ScanInfo(), show_all, reason
        self.details = details and self.carries_details
        self.error: Optional[str] = None
        self.buffer, self._own_buffer = (buffer, False) if buffer is not None else (RowBuffer(), True)
        append = append and not self.grouped
        self._streamed = append  # rows written already (by this or the interrupted run): details follow
        if path == "-":
            if sys.stdout is None:           # started with its standard output closed
                raise InputError(f"cannot write {self.option} output to stdout: it is closed")
            self.file, self._close = sys.stdout, False
        else:
            try:
                mode = "a" if append or append_output else "w"
                self.file, self._close = open(path, mode, encoding="utf-8", newline=""), True
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
        if len(rows) and not self.grouped:
            self._streamed = True
            self._guard(self.write_rows, rows)

    more_hosts = None        # makes more hosts' rows, one host at a time (hosts.all_host_views)

    def set_more_hosts(self, more) -> None:
        """Hosts whose rows are made when the output is written rather than held: a -Pn scan's
        silent hosts, a stored scan read back host by host."""
        self.more_hosts = more

    def views(self):
        """The hosts to show, in address order (streamed: see hosts.all_host_views)."""
        from .hosts import all_host_views
        return all_host_views(self.buffer.rows(), self.show_all, self.info.assume_up, self.more_hosts)

    def set_details(self, services=None, os_guesses=None, names=None, traces=None) -> None:
        """-sV/-O results, known once the port scan is over. Grouped formats render them at the
        end; a stream that wrote its ports already (as it must, to lose nothing if the scan is
        killed) appends them in rows of their own; one that has not (scanner show) puts them
        inline. names: -R's {addr: name}; traces: --traceroute's {addr: Trace}."""
        if services is not None:
            self.services = services
        if os_guesses is not None:
            self.os_guesses = os_guesses
        if names is not None:
            self.names = names
        if traces is not None:
            self.traces = traces
            if self.carries_details and self._streamed and traces:
                self._guard(self.write_traces, traces)
                self.traces_written = True
        if self.carries_details and self._streamed and (services or os_guesses):
            self._guard(self.write_details, services or {}, os_guesses or {})

    def close(self, summary=None) -> None:
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

    def write_details(self, services: dict, os_guesses: dict) -> None:
        """Streams: the -sV/-O results of ports already written, appended."""

    def write_traces(self, traces: dict) -> None:
        """Streams: --traceroute's hops of each host, appended."""

    def footer(self, summary) -> None:
        pass


FORMATS: Dict[str, Type[Writer]] = {}     # name -> writer class, in the order they registered


def register(cls: Type[Writer]) -> Type[Writer]:
    """A class decorator: the format is then known to -o options, -oA, show -f and the outputs."""
    FORMATS[cls.name] = cls
    return cls
