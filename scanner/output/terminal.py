"""The terminal report, which the CLI feeds with a session's events: an nmap-like table per host at
the end (small scans), or a line per open port as it is found (large ones)."""
from __future__ import annotations

import sys
from typing import Optional

import numpy as np

from .base import OPEN, RowBuffer, Writer, rows_to_dicts
from .hosts import host_block, host_views


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
    carries_details = False
    names: dict = {}
    traces: dict = {}
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
        traced: dict = {}
        for v in views:
            trace = self.traces.get(v.addr)
            block = host_block(v, self.reason, services=self.services, os_guess=self.os_guesses.get(v.addr),
                               name=self.names.get(v.addr, ""), trace=trace, earlier=traced)
            if trace is not None:
                traced[v.addr] = trace
            if len(v.up):
                why, ttl = v.status_reason
                block.insert(1, f"Host is up ({why}" + (f" ttl {ttl})" if ttl else ")"))
            self.file.write("\n" + "\n".join(block) + "\n")
        if silent:
            self.file.write(f"{silent} host(s) sent no reply to any probe.\n")
        self.file.flush()
