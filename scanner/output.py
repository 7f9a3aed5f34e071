"""What a scan hands on: NDJSON streamed as results arrive, and the terminal report (an nmap-like
table per host for small scans, one line per open port as it is found for large ones)."""
from __future__ import annotations

import json
import sys
from collections import defaultdict

import numpy as np

from .errors import InputError
from .ports import service_name
from .states import PROTO_NAMES, REASON_NAMES, STATE_NAMES, STATES, addresses

OPEN = STATES["open"]
UP = STATES["up"]
# nmap folds a state into "Not shown: N <state> ports" once more than this many ports share it.
FOLD_ABOVE = 25


def rows_to_dicts(rows: np.ndarray):
    for ip, port, proto, state, reason, ttl in zip(
            addresses(rows), rows["port"].tolist(), rows["proto"].tolist(), rows["state"].tolist(),
            rows["reason"].tolist(), rows["ttl"].tolist()):
        yield {"ip": ip, "port": port, "proto": PROTO_NAMES[proto],
               "state": STATE_NAMES[state], "reason": REASON_NAMES[reason], "ttl": ttl or None}


class NdjsonWriter:
    """One JSON object per answered port (every port with show_all), flushed per batch so that
    an interrupted scan keeps its results."""

    def __init__(self, path: str, show_all: bool = False):
        self.show_all = show_all
        if path == "-":
            self.file, self._close = sys.stdout, False
        else:
            try:
                self.file, self._close = open(path, "w", encoding="utf-8"), True
            except OSError as e:
                raise InputError(f"cannot write -oJ output '{path}': {e.strerror}") from None

    def write(self, rows: np.ndarray) -> None:
        if not self.show_all:
            rows = rows[rows["reason"] != NO_RESPONSE]
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
        # One key per host, bytes in network order: sorts like the addresses themselves.
        keys = np.concatenate([rows["ip"].astype(">u4").view(np.uint8).reshape(-1, 4), rows["ip6"]], axis=1)
        keys = np.ascontiguousarray(keys).view(np.dtype((np.void, 20))).ravel()
        rows, keys = rows[np.lexsort((rows["port"], rows["proto"], keys))], np.sort(keys)
        hosts, first = np.unique(keys, return_index=True)
        silent = 0
        for start, end in zip(first.tolist(), first[1:].tolist() + [len(rows)]):
            mine = rows[start:end]
            if (mine["reason"] == NO_RESPONSE).all():
                silent += 1
            else:
                self._host(mine)
        if silent:
            self.file.write(f"{silent} host(s) sent no reply to any probe.\n")
        self.file.flush()

    def _host(self, rows: np.ndarray) -> None:
        out = [f"\nScan report for {addresses(rows[:1])[0]}"]
        up = rows[rows["state"] == UP]
        if len(up):
            d = next(rows_to_dicts(up[:1]))
            out.append(f"Host is up ({d['reason']}" + (f" ttl {d['ttl']})" if d["ttl"] else ")"))
            rows = rows[rows["state"] != UP]
        groups = {}
        for state, proto in zip(rows["state"].tolist(), rows["proto"].tolist()):
            groups[(state, proto)] = groups.get((state, proto), 0) + 1
        folded = set()
        if not self.show_all:
            folded = {g for g, n in groups.items() if g[0] != OPEN and n > FOLD_ABOVE}
        for state, proto in sorted(folded):
            mine = rows[(rows["state"] == state) & (rows["proto"] == proto)]
            reasons, rcounts = np.unique(mine["reason"], return_counts=True)
            why = ", ".join(f"{n} {REASON_NAMES[r]}" for r, n in zip(reasons.tolist(), rcounts.tolist()))
            out.append(f"Not shown: {len(mine)} {STATE_NAMES[state]} {PROTO_NAMES[proto]} ports ({why})")
        keep = np.array([(s, p) not in folded for s, p in zip(rows["state"].tolist(), rows["proto"].tolist())],
                        dtype=bool)
        shown = rows[keep] if len(rows) else rows
        if len(shown):
            out.append(f"{'PORT':<9} {'STATE':<15} {'SERVICE':<15} REASON" if self.reason else
                       f"{'PORT':<9} {'STATE':<15} SERVICE")
            for d in rows_to_dicts(shown):
                line = (f"{str(d['port']) + '/' + d['proto']:<9} {d['state']:<15} "
                        f"{service_name(d['port'], d['proto']):<15}")
                if self.reason:
                    line += f" {d['reason']}" + (f" ttl {d['ttl']}" if d["ttl"] else "")
                out.append(line.rstrip())
        self.file.write("\n".join(out) + "\n")


NO_RESPONSE = next(code for code, name in REASON_NAMES.items() if name == "no-response")
