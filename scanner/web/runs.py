"""Scans started from the web: a request validated exactly as the command line validates it, run
as a library session in a thread, its events kept in order for any number of live viewers
(Server-Sent Events), stoppable at any time.

Until the library (scanner.ScanRequest / scanner.Session) is there, a scan runs as the `scanner`
command in a child process whose NDJSON and progress lines become the same events."""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from typing import Optional

from ..errors import InputError

# Options a web request may not use: they read or write files of the server's machine, or take
# the scan away from the web's store.
FORBIDDEN = {"-oJ", "-oN", "-oX", "-oG", "-oA", "-oL", "--csv", "--db", "--no-db", "--resume", "-iL",
             "--excludefile", "--service-db", "--dry-run", "-h", "--help"}
MAX_PORT_EVENTS = 5000       # beyond this a sweep's viewers get counts, not every port
EVENT_LOG_LIMIT = 20000


def _library():
    import scanner
    return scanner if hasattr(scanner, "Session") and hasattr(scanner, "ScanRequest") else None


def check_argv(argv: list) -> None:
    for arg in argv:
        if not isinstance(arg, str):
            raise InputError("argv must be a list of strings")
        if "\x00" in arg or "\n" in arg:
            raise InputError(f"bad argument {arg!r}: control characters")
        name = arg.split("=", 1)[0]
        if name in FORBIDDEN or re.fullmatch(r"-o[A-Z].*", arg):
            raise InputError(f"{name} is not available from the web (outputs, inputs and the store are the "
                             "server's: use the pages or `scanner show`)")


def parse_request(body) -> tuple:
    """(request, argv) from {"argv": [...]}, {"command": "scanner ..."} or a ScanRequest's JSON.
    Raises InputError with the CLI's one-line message."""
    if not isinstance(body, dict):
        raise InputError("expected a JSON object: {\"argv\": [...]} or a scan request")
    lib = _library()
    if "command" in body and "argv" not in body:
        try:
            words = shlex.split(str(body["command"]))
        except ValueError as e:
            raise InputError(f"bad command line: {e}") from None
        body = {"argv": words[1:] if words[:1] == ["scanner"] else words}
    if "argv" in body:
        argv = body["argv"]
        if not isinstance(argv, list) or not argv:
            raise InputError("argv must be a non-empty list of strings")
        check_argv(argv)
        if lib is not None:
            req = lib.ScanRequest.from_argv(list(argv))
            return req, req.to_argv()
        validate_with_cli(argv)
        return None, list(argv)
    if lib is None:
        raise InputError("scan requests as JSON need the scanner library; send {\"argv\": [...]}")
    req = lib.ScanRequest.from_json(json.dumps(body))
    argv = req.to_argv()
    check_argv(argv)
    return req, argv


def _cli_argv(argv: list) -> list:
    return [sys.executable, "-m", "scanner", *argv]


def validate_with_cli(argv: list, timeout: float = 30.0) -> None:
    """The command line's own checks, without sending anything: `scanner ARGV --dry-run` fails
    with its one-line error (exit 2) or starts printing probes, which is as far as it needs to go."""
    proc = subprocess.Popen(_cli_argv(list(argv) + ["--dry-run"]), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=_env())
    try:
        first = proc.stdout.readline()
        if first:
            return
        proc.wait(timeout)
        err = proc.stderr.read().decode(errors="replace").strip().splitlines()
        if proc.returncode:
            msg = err[-1] if err else f"exit code {proc.returncode}"
            raise InputError(msg.removeprefix("scanner: error: "))
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def _env() -> dict:
    """The child runs this very scanner package, wherever it is imported from."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class Run:
    """One scan started from the web, and the events seen so far."""

    def __init__(self, command: str):
        self.id: Optional[int] = None
        self.command = command
        self.status = "starting"
        self.error: Optional[str] = None
        self.events: list = []
        self.cond = threading.Condition()
        self.started = time.time()
        self.progress = {"stage": "", "percent": 0.0}
        self.n_ports = 0
        self.hosts: set = set()
        self._stop = None

    # Events are dicts with a "kind": started, stage, progress, host, ports, note, warning, done.
    def emit(self, kind: str, **data) -> None:
        with self.cond:
            if len(self.events) < EVENT_LOG_LIMIT or kind in ("done", "progress", "stage"):
                self.events.append(dict(kind=kind, **data))
            self.cond.notify_all()

    def wait_events(self, index: int, timeout: float) -> list:
        with self.cond:
            if len(self.events) <= index and self.status not in ("done", "failed"):
                self.cond.wait(timeout)
            return self.events[index:]

    def wait_started(self, timeout: float) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.id is not None or self.status in ("done", "failed"), timeout)

    def stop(self) -> None:
        if self._stop is not None and self.status in ("starting", "running"):
            self.status = "stopping"
            self._stop()
            self.emit("note", text="stopping: results received so far are kept")

    def port_rows(self, rows: list) -> None:
        """rows: [{"ip", "port", "proto", "state", "reason"}] as they arrive."""
        new_hosts = []
        for r in rows:
            if r.get("reason") != "no-response" and r["ip"] not in self.hosts:
                self.hosts.add(r["ip"])
                new_hosts.append(r["ip"])
        if new_hosts:
            self.emit("host", ips=new_hosts[:1000], up=len(self.hosts))
        shown = [r for r in rows if r.get("state") not in ("up",) and r.get("reason") != "no-response"]
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


def _rows_as_dicts(rows) -> list:
    """Library event rows (numpy RESULT_DTYPE or dicts) as dicts with the NDJSON keys."""
    if isinstance(rows, list):
        return rows
    from ..states import PROTO_NAMES, REASON_NAMES, STATE_NAMES, addresses
    return [{"ip": ip, "port": port, "proto": PROTO_NAMES.get(pr, str(pr)), "state": STATE_NAMES.get(st, "?"),
             "reason": REASON_NAMES.get(re_, "?")}
            for ip, port, pr, st, re_ in zip(addresses(rows), rows["port"].tolist(), rows["proto"].tolist(),
                                             rows["state"].tolist(), rows["reason"].tolist())]


class Runs:
    """The scans this server started (live and finished), by store scan id."""

    def __init__(self, db_path: str):
        self.db_path = str(db_path)
        self.by_id: dict = {}
        self.lock = threading.Lock()
        self._local = itertools.count(1)

    def running_ids(self) -> frozenset:
        return frozenset(i for i, r in self.by_id.items() if r.status in ("starting", "running", "stopping"))

    def get(self, scan_id: int) -> Optional[Run]:
        return self.by_id.get(scan_id)

    def start(self, req, argv: list, started_timeout: float = 30.0) -> Run:
        lib = _library()
        if lib is not None and req is not None:
            run = self._start_session(lib, req)
        else:
            run = self._start_process(argv)
        run.wait_started(started_timeout)
        if run.id is None:
            if run.status == "failed":
                raise InputError(run.error or "the scan failed to start")
            raise RuntimeError("the scan did not start in time")
        with self.lock:
            self.by_id[run.id] = run
        return run

    # ----------------------------------------------------------- the library's session

    def _start_session(self, lib, req) -> Run:
        req = dataclasses.replace(req, db=self.db_path, quiet=True)
        run = Run(req.command_line())

        def on_event(ev) -> None:
            kind = getattr(ev, "kind", type(ev).__name__)
            if kind in ("ScanStarted", "scan_started", "started"):
                with run.cond:
                    run.id = ev.scan_id
                    run.status = "running"
                    run.cond.notify_all()
                run.emit("started", id=ev.scan_id, command=ev.command)
            elif kind in ("StageStarted", "stage_started", "stage"):
                run.progress = {"stage": ev.stage, "percent": 0.0}
                run.emit("stage", stage=ev.stage, hosts=getattr(ev, "hosts", None), probes=getattr(ev, "probes", None))
            elif kind in ("HostsUp", "hosts_up"):
                run.port_rows(_rows_as_dicts(ev.rows))
            elif kind in ("PortResults", "port_results", "ports"):
                run.port_rows(_rows_as_dicts(ev.rows))
            elif kind in ("Progress", "progress"):
                snap = ev.snapshot or {}
                total = snap.get("total") or 0
                pct = min(100.0, 100.0 * snap.get("sent", 0) / total) if total else 0.0
                run.progress = {"stage": ev.stage, "percent": pct, **{k: snap.get(k) for k in ("sent", "total", "replies", "open")}}
                run.emit("progress", elapsed=ev.elapsed, **run.progress)
            elif kind in ("Note", "note", "Warning", "warning"):
                run.emit(kind.lower(), text=ev.text)
            elif kind in ("Details", "details"):
                run.emit("details", services=len(ev.services or {}), os_guesses=len(ev.os_guesses or {}))

        session = lib.Session(req, on_event=on_event)
        run._stop = session.stop

        def main() -> None:
            try:
                result = session.run()
                summary = getattr(result, "summary", None)
                summary = dataclasses.asdict(summary) if dataclasses.is_dataclass(summary) else {}
                if run.id is None:
                    run.id = getattr(result, "scan_id", None)
                run.finish("done", summary=summary)
            except lib.ScannerError as e:
                run.finish("failed", error=str(e))
            except Exception as e:          # the server lives on; the viewer sees why
                run.finish("failed", error=f"{type(e).__name__}: {e}")

        threading.Thread(target=main, name=f"scan-{next(self._local)}", daemon=True).start()
        return run

    # ----------------------------------------------------------- the command, until the library lands

    def _start_process(self, argv: list) -> Run:
        full = list(argv) + ["--db", self.db_path, "-oJ", "-", "--stats-every", "0.5"]
        command = " ".join(["scanner", *map(shlex.quote, full)])
        run = Run(" ".join(["scanner", *map(shlex.quote, argv)]))
        with sqlite3.connect(self.db_path) as db:
            last = db.execute("SELECT COALESCE(MAX(id), 0) FROM scans").fetchone()[0]
        cwd = tempfile.mkdtemp(prefix="scanner-web-")     # where an interrupted scan leaves its resume file
        proc = subprocess.Popen(_cli_argv(full), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=_env(), cwd=cwd, text=True, bufsize=1)
        run._stop = lambda: proc.send_signal(signal.SIGINT)
        stderr_lines = []

        def find_id() -> None:
            with sqlite3.connect(self.db_path, timeout=30) as db:
                while run.id is None and proc.poll() is None:
                    row = db.execute("SELECT id FROM scans WHERE id>? AND command=? ORDER BY id LIMIT 1",
                                     (last, command)).fetchone()
                    if row:
                        # The store keeps the command as typed, not the web's own plumbing options.
                        db.execute("UPDATE scans SET command=? WHERE id=?", (run.command, row[0]))
                        db.commit()
                        with run.cond:
                            run.id = row[0]
                            run.status = "running"
                            run.cond.notify_all()
                        run.emit("started", id=row[0], command=run.command)
                        return
                    time.sleep(0.05)

        def read_stdout() -> None:
            batch, t = [], time.monotonic()
            for line in proc.stdout:
                try:
                    batch.append(json.loads(line))
                except ValueError:
                    continue
                if len(batch) >= 256 or time.monotonic() - t > 0.2:
                    run.port_rows(batch)
                    batch, t = [], time.monotonic()
            if batch:
                run.port_rows(batch)

        def read_stderr() -> None:
            pct = re.compile(r"([\d.]+)% done")
            for line in proc.stderr:
                line = line.rstrip("\n")
                m = pct.search(line)
                if m:
                    run.progress = dict(run.progress, percent=float(m.group(1)))
                    run.emit("progress", text=line.removeprefix("scanner: "), **run.progress)
                elif line.startswith("scanner: host discovery"):
                    run.progress = {"stage": "ports", "percent": 0.0}
                    run.emit("stage", stage="ports", text=line.removeprefix("scanner: "))
                elif line:
                    stderr_lines.append(line)
                    run.emit("note", text=line.removeprefix("scanner: "))

        def main() -> None:
            readers = [threading.Thread(target=f, daemon=True) for f in (find_id, read_stdout, read_stderr)]
            for t in readers:
                t.start()
            code = proc.wait()
            for t in readers:
                t.join()
            proc.stdout.close()
            proc.stderr.close()
            if code == 0 or (code == 1 and run.status == "stopping") or (run.status == "stopping" and code in (130, -2)):
                run.finish("done")
            else:
                errors = [l for l in stderr_lines if "error" in l] or stderr_lines or [f"exit code {code}"]
                run.finish("failed", error=errors[-1].removeprefix("scanner: error: "))

        threading.Thread(target=main, name=f"scan-{next(self._local)}", daemon=True).start()
        return run
