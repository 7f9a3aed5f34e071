"""What a scan hands on: NDJSON streamed as results arrive, and the terminal report (an nmap-like
table per host for small scans, one line per open port as it is found for large ones)."""
from __future__ import annotations

import ipaddress
import json
import sys
from collections import defaultdict

import numpy as np

from .errors import InputError
from .ports import service_name
from .states import PROTO_NAMES, REASON_NAMES, STATE_NAMES, STATES

OPEN = STATES["open"]
# nmap folds a state into "Not shown: N <state> ports" once more than this many ports share it.
FOLD_ABOVE = 25


def rows_to_dicts(rows: np.ndarray):
    for ip, port, proto, state, reason, ttl in zip(
            rows["ip"].tolist(), rows["port"].tolist(), rows["proto"].tolist(), rows["state"].tolist(),
            rows["reason"].tolist(), rows["ttl"].tolist()):
        yield {"ip": str(ipaddress.IPv4Address(ip)), "port": port, "proto": PROTO_NAMES[proto],
               "state": STATE_NAMES[state], "reason": REASON_NAMES[reason], "ttl": ttl or None}


class NdjsonWriter:
    """One JSON object per port, flushed per batch so that an interrupted scan keeps its results."""

    def __init__(self, path: str):
        if path == "-":
            self.file, self._close = sys.stdout, False
        else:
            try:
                self.file, self._close = open(path, "w", encoding="utf-8"), True
            except OSError as e:
                raise InputError(f"cannot write -oJ output '{path}': {e.strerror}") from None

    def write(self, rows: np.ndarray) -> None:
        self.file.write("".join(json.dumps(d) + "\n" for d in rows_to_dicts(rows)))
        self.file.flush()

    def close(self) -> None:
        if self._close:
            self.file.close()


class OpenPortLines:
    """masscan-style: a line per open port, printed as soon as it is found."""

    def __init__(self, file=sys.stdout, show_all: bool = False):
        self.file, self.show_all = file, show_all

    def write(self, rows: np.ndarray) -> None:
        if not self.show_all:
            rows = rows[rows["state"] == OPEN]
        self.file.write("".join(
            f"Discovered {d['state']} port {d['port']}/{d['proto']} on {d['ip']} ({d['reason']} ttl {d['ttl']})\n"
            for d in rows_to_dicts(rows)))
        self.file.flush()

    def close(self) -> None:
        pass


class HostTable:
    """nmap-like: at the end, a port table for every host that answered anything."""

    def __init__(self, file=sys.stdout, show_all: bool = False, reason: bool = True):
        self.file, self.show_all, self.reason = file, show_all, reason
        self.batches = []

    def write(self, rows: np.ndarray) -> None:
        self.batches.append(rows.copy())

    def close(self) -> None:
        if not self.batches:
            return
        rows = np.concatenate(self.batches)
        rows = rows[np.lexsort((rows["port"], rows["ip"]))]
        no_response = rows["reason"] == NO_RESPONSE
        answering = np.unique(rows["ip"][~no_response])
        for ip in answering.tolist():
            self._host(ip, rows[rows["ip"] == ip])
        silent = len(np.unique(rows["ip"])) - len(answering)
        if silent:
            self.file.write(f"{silent} host(s) sent no reply to any probe.\n")
        self.file.flush()

    def _host(self, ip: int, rows: np.ndarray) -> None:
        out = [f"\nScan report for {ipaddress.IPv4Address(ip)}"]
        states, counts = np.unique(rows["state"], return_counts=True)
        folded = set()
        if not self.show_all:
            folded = {s for s, n in zip(states.tolist(), counts.tolist()) if s != OPEN and n > FOLD_ABOVE}
        for state in sorted(folded):
            mine = rows[rows["state"] == state]
            reasons, rcounts = np.unique(mine["reason"], return_counts=True)
            why = ", ".join(f"{n} {REASON_NAMES[r]}" for r, n in zip(reasons.tolist(), rcounts.tolist()))
            out.append(f"Not shown: {len(mine)} {STATE_NAMES[state]} tcp ports ({why})")
        shown = rows[~np.isin(rows["state"], list(folded))] if folded else rows
        if len(shown):
            out.append(f"{'PORT':<9} {'STATE':<15} {'SERVICE':<15} REASON" if self.reason else
                       f"{'PORT':<9} {'STATE':<15} SERVICE")
            for d in rows_to_dicts(shown):
                line = f"{str(d['port']) + '/' + d['proto']:<9} {d['state']:<15} {service_name(d['port']):<15}"
                if self.reason:
                    line += f" {d['reason']}" + (f" ttl {d['ttl']}" if d["ttl"] else "")
                out.append(line.rstrip())
        self.file.write("\n".join(out) + "\n")


NO_RESPONSE = next(code for code, name in REASON_NAMES.items() if name == "no-response")
