"""Scans started from the web: a request validated exactly as the command line validates it
(ScanRequest.from_argv / from_json, then the Session's plan), run as a library Session in a
thread, its events kept in order for any number of live viewers (Server-Sent Events), stoppable
at any time."""
from __future__ import annotations

import dataclasses
import itertools
import json
import shlex
import threading
import time
from typing import Callable, Optional

from ..errors import InputError, ScannerError

MAX_PORT_EVENTS = 5000       # beyond this a sweep's viewers get counts, not every port
EVENT_LOG_LIMIT = 20000      # events kept per scan (progress and the end always are)

# Request fields a web request may not set: they read or write files on the server's machine,
# or take the scan out of the web's store.
FORBIDDEN = {"normal_out": "-oN", "xml_out": "-oX", "grepable_out": "-oG", "json_out": "-oJ",
             "csv_out": "--csv", "list_out": "-oL", "binary_out": "-oB", "readscan": "--readscan",
             "all_out": "-oA", "db": "--db", "no_db": "--no-db",
             "input_file": "-iL", "exclude_file": "--excludefile", "service_db": "--service-db",
             "dry_run": "--dry-run"}


def parse_request(body):
    """A ScanRequest from {"argv": [...]}, {"command": "scanner ..."} or a ScanRequest's JSON.
    Raises InputError with the command line's one-line message."""
    from ..request import ScanRequest
    if not isinstance(body, dict):
        raise InputError('expected a JSON object: {"argv": [...]}, {"command": "..."} or a scan request')
    if "command" in body and "argv" not in body:
        try:
            words = shlex.split(str(body["command"]))
        except ValueError as e:
            raise InputError(f"bad command line: {e}") from None
        body = {"argv": words[1:] if words[:1] == ["scanner"] else words}
    if "argv" in body:
        argv = body["argv"]
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise InputError("argv must be a non-empty list of strings")
        if argv[0] in ("--resume", "-h", "--help"):
            raise InputError(f"{argv[0]} is not available from the web")
        req = ScanRequest.from_argv(list(argv))
    else:
        req = ScanRequest.from_json(json.dumps(body))
    for field, option in FORBIDDEN.items():
        if getattr(req, field):
            raise InputError(f"{option} is not available from the web (outputs, inputs and the store are the "
                             "server's: use the pages, or `scanner show`)")
    return req


class Run:
    """One scan started from the web, and the events seen so far (dicts with a "kind": started,
    stage, progress, host, ports, note, warning, details, done)."""

    def __init__(self, command: str):
        self.id: Optional[int] = None
        self.command = command
        self.status = "starting"
        self.error: Optional[str] = None
        self.events: list = []
        self.cond = threading.Condition()
        self.started = time.time()
        self.progress: dict = {"stage": "", "percent": 0.0}
        self.n_ports = 0
        self.hosts: set = set()
        self._stop: Optional[Callable[[], None]] = None

    def emit(self, kind: str, **data) -> None:
        with self.cond:
            if len(self.events) < EVENT_LOG_LIMIT:
                self.events.append(dict(kind=kind, **data))
            elif kind in ("progress", "stage"):      # past the limit only the latest progress is kept
                if self.events[-1]["kind"] == kind == "progress":
                    self.events[-1] = dict(kind=kind, **data)
                else:
                    self.events.append(dict(kind=kind, **data))
            self.cond.notify_all()

    def stop(self) -> None:
        if self._stop is not None and self.status in ("starting", "running"):
            self.status = "stopping"
            self._stop()
            self.emit("note", text="stopping: every result received is kept")

    def port_rows(self, rows: list) -> None:
        """rows: [{"ip", "port", "proto", "state", "reason"}] as they arrive."""
        new_hosts = []
        for r in rows:
            if r["reason"] != "no-response" and r["ip"] not in self.hosts:
                self.hosts.add(r["ip"])
                new_hosts.append(r["ip"])
        if new_hosts:
            self.emit("host", ips=new_hosts[:1000], up=len(self.hosts))
        shown = [r for r in rows if r["state"] != "up" and r["reason"] != "no-response"]
        if shown and self.n_ports < MAX_PORT_EVENTS:
            self.emit("ports", rows=shown[:MAX_PORT_EVENTS - self.n_ports])
        self.n_ports += len(shown)

    def finish(self, status: str, error: Optional[str] = None, summary: Optional[dict] = None) -> None:
        with self.cond:
            self.status = status
            self.error = error
            self.events.append({"kind": "done", "status": status, "error": error, "id": self.id,
                                "summary": summary or {}, "ports": self.n_ports, "hosts_up": len(self.hosts)})
            self.cond.notify_all()

    def info(self) -> dict:
        return {"id": self.id, "command": self.command, "status": self.status, "error": self.error,
                "progress": self.progress, "ports": self.n_ports, "hosts_up": len(self.hosts)}


def _rows(rows) -> list:
    """RESULT_DTYPE rows as dicts with the NDJSON keys."""
    from ..states import PROTO_NAMES, REASON_NAMES, STATE_NAMES, addresses
    return [{"ip": ip, "port": port, "proto": PROTO_NAMES.get(pr, str(pr)), "state": STATE_NAMES.get(st, "?"),
             "reason": REASON_NAMES.get(why, "?")}
            for ip, port, pr, st, why in zip(addresses(rows), rows["port"].tolist(), rows["proto"].tolist(),
                                             rows["state"].tolist(), rows["reason"].tolist())]


def _summary(summary) -> dict:
    return dataclasses.asdict(summary) if dataclasses.is_dataclass(summary) and not isinstance(summary, type) else {}


class Runs:
    """The scans this server started (running and finished), by store scan id."""

    def __init__(self, db_path: str):
        self.db_path = str(db_path)
        self.by_id: dict = {}
        self._names = itertools.count(1)

    def running_ids(self) -> frozenset:
        return frozenset(i for i, r in list(self.by_id.items()) if r.status in ("starting", "running", "stopping"))

    def stop_all(self, timeout: float = 10.0) -> None:
        """On shutdown: stop the running scans and give them time to record what they have."""
        running = [r for r in list(self.by_id.values()) if r.status in ("starting", "running", "stopping")]
        for run in running:
            run.stop()
        deadline = time.monotonic() + timeout
        for run in running:
            with run.cond:
                run.cond.wait_for(lambda run=run: run.status not in ("starting", "running", "stopping"),
                                  max(0.0, deadline - time.monotonic()))

    def get(self, scan_id: int) -> Optional[Run]:
        return self.by_id.get(scan_id)

    def start(self, req, started_timeout: float = 30.0) -> Run:
        """Plans the session here (bad input raises InputError before anything is sent), runs it in a
        thread, and returns once the store has its record (the scan's id)."""
        from ..session import Session
        req = dataclasses.replace(req, db=self.db_path, quiet=True)
        run = Run(req.command_line())
        session = Session(req, on_event=lambda event: self._on_event(run, event), keep_rows=False)
        run._stop = session.stop

        def main() -> None:
            try:
                result = session.run()
                run.id = run.id if run.id is not None else result.scan_id
                run.finish("interrupted" if result.interrupted else "done", summary=_summary(result.summary),
                           error="; ".join(result.errors) or None)
            except ScannerError as e:
                run.finish("failed", error=str(e))
            except Exception as e:          # the server lives on; the viewers see why
                run.finish("failed", error=f"{type(e).__name__}: {e}")

        threading.Thread(target=main, name=f"scan-{next(self._names)}", daemon=True).start()
        with run.cond:
            run.cond.wait_for(lambda: run.id is not None or run.status in ("done", "failed", "interrupted"),
                              started_timeout)
        if run.id is None:
            raise InputError(run.error or "the scan did not start") if run.status == "failed" else \
                RuntimeError("the scan did not start in time")
        self.by_id[run.id] = run
        return run

    @staticmethod
    def _on_event(run: Run, event) -> None:
        """Library events (scanner.events) as the web's, from the session's threads."""
        kind = event.kind
        if kind == "scan-started":
            with run.cond:
                run.id = event.scan_id
                run.status = "running"
                run.cond.notify_all()
            run.emit("started", id=event.scan_id, command=event.command)
        elif kind == "stage-started":
            run.progress = {"stage": event.stage, "percent": 0.0}
            run.emit("stage", stage=event.stage, hosts=event.hosts, probes=event.probes,
                     text=f"{event.stage}: {event.hosts} hosts")
        elif kind in ("hosts-up", "port-results"):
            run.port_rows(_rows(event.rows))
        elif kind == "progress":
            snap = event.snapshot or {}
            done, total = snap.get("sent", snap.get("done", 0)), snap.get("total") or 0
            run.progress = {"stage": event.stage, "percent": min(100.0, 100.0 * done / total) if total else 0.0,
                            "done": done, "total": total}
            run.emit("progress", elapsed=event.elapsed, **run.progress)
        elif kind in ("note", "warning"):
            run.emit(kind, text=event.text)
        elif kind == "stage-ended":
            up = f", {event.up} hosts up" if event.up is not None else ""
            run.emit("stage", stage=event.stage, ended=True, text=f"{event.stage} done{up}")
        elif kind == "details":
            run.emit("details", services=len(event.services or {}), os_guesses=len(event.os_guesses or {}))
