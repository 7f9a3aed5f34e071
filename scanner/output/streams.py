"""The streaming formats, written batch by batch as results arrive: NDJSON (-oJ), CSV (--csv) and
masscan's list format (-oL). -sV/-O results come after the port scan: each stream appends them as
rows of their own that name the port they describe (NDJSON: "details": true; CSV: a row with the
detail columns and no state; the list format: masscan's "banner" lines), so that a port is on
disk as soon as it is found, whatever happens to the scan later."""
from __future__ import annotations

import csv
import io
import json
import time

import numpy as np

from ..ports import service_name
from ..states import PROTO_NAMES, REASON_NAMES, STATE_NAMES, dotted
from .base import OPEN, Writer, escape_for_screen, register, rows_to_dicts


@register
class NdjsonWriter(Writer):
    """-oJ: one JSON object per port, flushed per batch so that an interrupted scan keeps its results."""
    name, option, carries_details = "json", "-oJ", True

    def write_rows(self, rows):
        if not self.services and not self.os_guesses and not rows["ip6"].any():
            self.file.write(ndjson_ipv4(rows))
            return
        self.file.write("".join(json.dumps(self._details(d)) + "\n" for d in rows_to_dicts(rows)))

    def write_details(self, services, os_guesses):
        self.file.write("".join(json.dumps(d) + "\n" for d in detail_rows(services, os_guesses)))

    def write_traces(self, traces):
        """One row per traced host: {"ip", "details": true, "trace": {"proto", "port", "hops": [{"ttl",
        "ip", "rtt"}, ...]}} (what a topology view needs)."""
        self.file.write("".join(json.dumps({"ip": ip, "details": True, "trace": t.to_dict()}) + "\n"
                                for ip, t in traces.items()))

    def footer(self, summary):
        if self.traces and not self.traces_written:     # set before any row (scanner show)
            self.write_traces(self.traces)

    def _details(self, d: dict) -> dict:
        return self.details_of(d, self.services, self.os_guesses)

    @staticmethod
    def details_of(d: dict, services: dict, os_guesses: dict) -> dict:
        """An NDJSON row with its -sV service and -O guess, when known."""
        svc = services.get((d["ip"], d["proto"], d["port"])) if services else None
        if svc is not None:
            d["service"] = svc.to_dict()
        g = os_guesses.get(d["ip"]) if os_guesses and d["state"] == "open" else None
        if g is not None:
            d["os"] = g.to_dict()
        return d


def ipv4_lines(rows, render) -> str:
    """The lines of IPv4 rows (no -sV/-O details) in a format where only the address varies
    from row to row and the rest takes few distinct values (port, proto, state, reason, ttl):
    render(port, proto name, state name, reason name, ttl or None) -> (text before the address,
    text after it) is called once per distinct value, not per row; the addresses are joined in
    from octet tables. Over a million rows a second."""
    if not len(rows):
        return ""
    u64 = np.uint64
    key = (rows["port"].astype(u64) | rows["proto"].astype(u64) << u64(16) | rows["state"].astype(u64) << u64(24)
           | rows["reason"].astype(u64) << u64(32) | rows["ttl"].astype(u64) << u64(40))
    keys, which = np.unique(key, return_inverse=True)
    parts = [render(k & 0xFFFF, PROTO_NAMES[k >> 16 & 0xFF], STATE_NAMES[k >> 24 & 0xFF],
                    REASON_NAMES[k >> 32 & 0xFF], (k >> 40) or None) for k in keys.tolist()]
    heads, tails = [h for h, _ in parts], [t for _, t in parts]
    return "".join([heads[k] + ip + tails[k] for ip, k in zip(dotted(rows["ip"]), which.ravel().tolist())])


def _ndjson_parts(port, proto, state, reason, ttl):
    tail = {"port": port, "proto": proto, "state": state, "reason": reason, "ttl": ttl}
    return '{"ip": "', '", ' + json.dumps(tail)[1:] + "\n"


def ndjson_ipv4(rows) -> str:
    """The NDJSON lines of IPv4 rows without -sV/-O details, as json.dumps writes them, at over a
    million rows a second (a cluster's coordinator merges that fast)."""
    return ipv4_lines(rows, _ndjson_parts)


def detail_rows(services: dict, os_guesses: dict):
    """One dict per port that -sV described ({"ip", "port", "proto", "details": true, "service",
    and "os" when -O guessed the host}), then one per host that only -O described."""
    described = set()
    for (ip, proto, port), svc in sorted(services.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        d = {"ip": ip, "port": port, "proto": proto, "details": True, "service": svc.to_dict()}
        if ip in os_guesses:
            d["os"] = os_guesses[ip].to_dict()
            described.add(ip)
        yield d
    for ip, g in sorted(os_guesses.items()):
        if ip not in described:
            yield {"ip": ip, "details": True, "os": g.to_dict()}


@register
class CsvWriter(Writer):
    """--csv: ip,port,proto,state,reason,ttl,service with a header row (RFC 4180, csv module)."""
    name, option, carries_details = "csv", "--csv", True
    FIELDS = ["ip", "port", "proto", "state", "reason", "ttl", "service"]
    DETAIL_FIELDS = ["product", "version", "extrainfo", "tunnel", "cpe", "os", "os_accuracy"]   # -sV/-O

    def header(self):
        csv.writer(self.file, lineterminator="\n").writerow(self.FIELDS + (self.DETAIL_FIELDS if self.details else []))

    def write_rows(self, rows):
        if not self.services and not self.os_guesses and not self.details and not rows["ip6"].any():
            self.file.write(ipv4_lines(rows, self._parts))
            return
        out = []
        for d in rows_to_dicts(rows):
            svc = self.services.get((d["ip"], d["proto"], d["port"])) if self.services else None
            row = [d["ip"], d["port"], d["proto"], d["state"], d["reason"], "" if d["ttl"] is None else d["ttl"],
                   svc.display_name if svc else service_name(d["port"], d["proto"])]
            row += self._detail_fields(svc, self.os_guesses.get(d["ip"]) if d["state"] == "open" else None)
            out.append(row)
        csv.writer(self.file, lineterminator="\n").writerows(out)

    @staticmethod
    def _parts(port, proto, state, reason, ttl):
        tail = io.StringIO()
        csv.writer(tail, lineterminator="\n").writerow(
            [port, proto, state, reason, "" if ttl is None else ttl, service_name(port, proto)])
        return "", "," + tail.getvalue()

    def write_details(self, services, os_guesses):
        out = [[ip, port, proto, "", "", "", svc.display_name] + self._detail_fields(svc, os_guesses.get(ip))
               for (ip, proto, port), svc in sorted(services.items())]
        out += [[ip, "", "", "", "", "", ""] + self._detail_fields(None, g)
                for ip, g in sorted(os_guesses.items()) if not any(k[0] == ip for k in services)]
        csv.writer(self.file, lineterminator="\n").writerows(out)

    def _detail_fields(self, svc, g) -> list:
        if not self.details:
            return []
        return (([svc.product, svc.version, svc.extrainfo, svc.tunnel, " ".join(svc.cpes)] if svc else [""] * 5)
                + ([g.name, g.accuracy] if g else ["", ""]))


@register
class ListWriter(Writer):
    """-oL: masscan's list format ("open tcp 80 192.0.2.1 1700000000"), a line per result; -sV
    results as masscan's banner lines ("banner tcp 22 192.0.2.1 1700000000 ssh OpenSSH 9.2p1")."""
    name, option, carries_details = "list", "-oL", True

    def header(self):
        self.file.write("#masscan\n")

    def write_rows(self, rows):
        if not self.show_all:
            rows = rows[rows["state"] == OPEN]
        now = int(time.time())
        if not rows["ip6"].any():
            self.file.write(ipv4_lines(rows, lambda port, proto, state, reason, ttl:
                                       (f"{state} {proto} {port} ", f" {now}\n")))
            return
        self.file.write("".join(f"{d['state']} {d['proto']} {d['port']} {d['ip']} {now}\n"
                                for d in rows_to_dicts(rows)))

    def write_details(self, services, os_guesses):
        now = int(time.time())
        self.file.write("".join(
            f"banner {proto} {port} {ip} {now} {svc.name} {escape_for_screen(svc.version_text, newline=False)}".rstrip()
            + "\n"
            for (ip, proto, port), svc in sorted(services.items()) if not svc.guess))

    def footer(self, summary):
        self.file.write("# end\n")
