"""The host-grouped view that nmap's formats and the terminal table share: one HostView per host
that answered, its ports listed or folded ("Not shown: ..."), and the lines of one host."""
from __future__ import annotations

import heapq
import ipaddress
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np

from ..ports import service_name
from ..states import PROTO_NAMES, REASON_NAMES, STATE_NAMES, addresses, host_keys, take
from .base import FOLD_ABOVE, NO_RESPONSE, OPEN, UP, escape_for_screen, rows_to_dicts


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
        answered = self.up if len(self.up) else take(self.rows, self.rows["reason"] != NO_RESPONSE)
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
        is_up = mine["state"] == UP
        up, mine = take(mine, is_up), take(mine, ~is_up)
        folded, keep = [], np.ones(len(mine), dtype=bool)
        if not show_all:
            # One integer key per (state, proto): np.unique on a structured view is slow.
            # (np.bincount rather than np.unique: the latter hashes, 10+ ms for a -p- host)
            keys = mine["state"].astype(np.int32) * 256 + mine["proto"]
            counts = np.bincount(keys)
            groups = np.flatnonzero(counts)
            counts = counts[groups]
            for (st, proto), n in zip(((g >> 8, g & 255) for g in groups.tolist()), counts.tolist()):
                if st == OPEN or n <= FOLD_ABOVE:
                    continue
                mask = (mine["state"] == st) & (mine["proto"] == proto)
                these = take(mine, mask)
                keep &= ~mask
                rcounts = np.bincount(these["reason"])
                reasons = np.flatnonzero(rcounts)
                rcounts = rcounts[reasons]
                why = [(REASON_NAMES[r], n, these["port"][these["reason"] == r].tolist())
                       for r, n in zip(reasons.tolist(), rcounts.tolist())]
                folded.append((STATE_NAMES[st], PROTO_NAMES[proto], len(these), why))
        views.append(HostView(addresses(rows[s:s + 1])[0], mine, take(mine, keep), folded, up))
    return views, silent


def all_host_views(rows: np.ndarray, show_all: bool, assume_up: bool = False,
                   more: Optional[Callable[[], Iterator[np.ndarray]]] = None) -> Iterator[HostView]:
    """The hosts to show, in address order: those in rows, and those whose rows more() makes
    one host at a time (a -Pn scan's hosts that never answered, made from the scan's space; a
    stored scan read back host by host), so that memory does not grow with them."""
    views, _ = host_views(rows, show_all, assume_up)
    if more is None:
        return iter(views)

    def streamed() -> Iterator[HostView]:
        for host_rows in more():
            yield from host_views(host_rows, show_all, assume_up)[0]
    return heapq.merge(views, streamed(), key=_address_key)


def _address_key(view: HostView) -> tuple:
    a = ipaddress.ip_address(view.addr)
    return a.version, int(a)


def host_block(view: HostView, reason: bool, title: str = "Scan report for", services=None, os_guess=None,
               name: str = "", trace=None, earlier=None) -> list:
    """The nmap-like lines of one host: the one home of that layout (terminal and -oN).
    services: {(addr, proto, port): ServiceInfo} from -sV (adds nmap's VERSION column and script
    lines); os_guess: this host's OsGuess from -O (adds nmap's OS lines); trace: its traceroute.Trace
    (nmap's TRACEROUTE section; earlier: {addr: Trace} of the hosts shown before, whose shared
    hops are abbreviated)."""
    out = [f"{title} {name} ({view.addr})" if name else f"{title} {view.addr}"]
    for state, proto, n, why in view.folded:
        out.append(f"Not shown: {n} {state} {proto} ports ({', '.join(f'{c} {r}' for r, c, _ in why)})")
    services = services or {}
    versions = bool(services) and any((view.addr, d["proto"], d["port"]) in services
                                      for d in rows_to_dicts(view.shown))
    if len(view.shown):
        protocols = all(d["proto"] == "ip" for d in rows_to_dicts(view.shown[:1]))    # -sO, as nmap
        head = f"{'PROTOCOL' if protocols else 'PORT':<9} {'STATE':<15} {'SERVICE':<15}"
        if reason:
            head += f" {'REASON':<20}" if versions else " REASON"
        out.append((head + (" VERSION" if versions else "")).rstrip())
        for d in rows_to_dicts(view.shown):
            svc = services.get((view.addr, d["proto"], d["port"]))
            label = str(d["port"]) if d["proto"] == "ip" else f"{d['port']}/{d['proto']}"
            line = (f"{label:<9} {d['state']:<15} "
                    f"{svc.display_name if svc else service_name(d['port'], d['proto']):<15}")
            if reason:
                why = f"{d['reason']}" + (f" ttl {d['ttl']}" if d["ttl"] else "")
                line += f" {why:<20}" if versions else f" {why}"
            if svc is not None and versions:
                line += f" {svc.version_text}"
            out.append(line.rstrip())
            for sid, text in sorted((svc.scripts if svc else {}).items()):
                lines = text.rstrip("\n").split("\n")     # as nmap: no empty last line
                for j, t in enumerate(lines):
                    lead = "|_" if j == len(lines) - 1 else "| "
                    out.append(f"{lead}{sid + ': ' if j == 0 else ''}{t}")
    if os_guess is not None:
        out += os_lines(os_guess)
    info = service_info_line(view.addr, services)
    if info:
        out.append(info)
    if trace is not None:
        from ..traceroute import trace_lines
        out += trace_lines(view.addr, trace, earlier or {})
    return [escape_for_screen(line, newline=False) for line in out]   # script output was split above


def os_lines(g) -> list:
    """nmap's OS section of a host (normal output)."""
    if g.matches is not None:           # nmap's database: the lines as nmap writes them
        return list(g.lines)
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
