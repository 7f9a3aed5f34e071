"""The streaming formats, written batch by batch as results arrive: NDJSON (-oJ), CSV (--csv) and
masscan's list format (-oL)."""
from __future__ import annotations

import csv
import json
import time

from ..ports import service_name
from .base import OPEN, Writer, register, rows_to_dicts


@register
class NdjsonWriter(Writer):
    """-oJ: one JSON object per port, flushed per batch so that an interrupted scan keeps its results."""
    name, option, carries_details = "json", "-oJ", True

    def write_rows(self, rows):
        self.file.write("".join(json.dumps(self._details(d)) + "\n" for d in rows_to_dicts(rows)))

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


@register
class CsvWriter(Writer):
    """--csv: ip,port,proto,state,reason,ttl,service with a header row (RFC 4180, csv module)."""
    name, option, carries_details = "csv", "--csv", True
    FIELDS = ["ip", "port", "proto", "state", "reason", "ttl", "service"]
    DETAIL_FIELDS = ["product", "version", "extrainfo", "tunnel", "cpe", "os", "os_accuracy"]   # -sV/-O

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


@register
class ListWriter(Writer):
    """-oL: masscan's list format ("open tcp 80 192.0.2.1 1700000000"), a line per result."""
    name, option = "list", "-oL"

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
