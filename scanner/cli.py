"""The command line: argv -> ScanRequest (ScanRequest.from_argv, nmap's language), a Session run
with the terminal view of its events, and the other commands (lab, history, show, diff)."""
from __future__ import annotations

import errno
import os
import sys
import time
from typing import Any, List, Optional

from .errors import InputError, ScannerError


class TerminalView:
    """Renders a session's events on the terminal as scanner always has: notes and stage summaries
    on stderr (not with -q), a progress line, and on stdout the nmap-like table per host (small
    scans) or a line per open port as found (large ones), unless an output goes to stdout."""

    def __init__(self, request, stdout_taken: bool):
        from .progress import StatusLine
        self.request = request
        self.quiet = request.quiet
        self.status = StatusLine(live=not request.quiet, every=request.stats_every)
        self.screen: Any = None         # the terminal writer, set once the session is planned
        self.stdout_taken = stdout_taken

    def attach(self, session) -> None:
        from .output import HostTable, OpenPortLines
        r = self.request
        self.session = session
        # nmap's running commentary (-v, --packet-trace, -d) goes to stdout, unless an output does.
        self.talk = sys.stderr if self.stdout_taken or sys.stdout is None else sys.stdout
        if not self.stdout_taken and sys.stdout is not None:    # None: started with stdout closed
            # -vv shows why each port has its state, as nmap's does.
            self.screen = (HostTable(show_all=r.show_all, reason=r.reason or r.verbose >= 2,
                                     assume_up=session.discovery is None)
                           if session.table else OpenPortLines(show_all=r.show_all))

    def say(self, text: str) -> None:
        self.talk.write(text + "\n")
        self.talk.flush()

    def stage_name(self, stage: str) -> str:
        """nmap's name of a stage ("SYN Stealth Scan", "Ping Scan", ...)."""
        if stage == "discovery":
            return "Ping Scan"
        if stage == "service":
            return "Service scan"
        for kind, probes in getattr(self.session, "jobs", ()):
            if kind == stage:
                return " and ".join(dict.fromkeys(t.name for t, *_ in probes.kinds))
        return stage

    def note(self, text: str) -> None:
        if not self.quiet:
            print(f"scanner: {text}", file=sys.stderr, flush=True)

    def __call__(self, event) -> None:
        kind = event.kind
        if kind == "progress":
            self.status.update(event.stage, event.snapshot, event.elapsed)
        elif kind == "port-results":
            if self.screen is not None:
                self.screen.write(event.rows)
            if self.request.verbose and not event.replayed and (self.screen is None or self.screen.grouped):
                self.discovered(event.rows)
        elif kind == "hosts-up":
            if self.screen is not None and self.screen.grouped and not self.request.open_only:
                self.screen.write(event.rows)
        elif kind == "packet":
            self.status.end()
            self.say(f"{event.direction} ({event.elapsed:.4f}s) {event.text}")
        elif kind == "debug":
            if self.request.debug >= event.level or (self.request.verbose >= 2 and event.level <= 1):
                self.status.end()
                self.say(event.text)
        elif kind == "list-scan":
            sys.stdout.write(event.text)
        elif kind == "dry-run":
            sys.stdout.write(event.text)
        elif kind == "note":
            self.status.end()
            self.note(event.text)
        elif kind == "warning":
            self.status.end()
            print(f"scanner: {event.text}", file=sys.stderr, flush=True)
        elif kind == "stage-ended":
            self.status.end()
            if self.request.verbose and event.stage != "os-probe":
                self.say(f"Completed {self.stage_name(event.stage)} at {time.strftime('%H:%M')}, "
                         f"{event.summary.elapsed:.2f}s elapsed ("
                         + (f"{event.hosts} total hosts)" if event.stage == "discovery" else
                            f"{event.hosts * event.slots} total ports)"))
            if event.stage == "discovery":
                self.note(f"host discovery: {event.up} of {event.hosts} hosts up ({event.summary.elapsed:.2f}s)")
            elif event.stage in ("raw", "connect"):
                self.note(summary_line(event).removeprefix("scanner: "))
        elif kind == "stage-started":
            self.status.end()
            if self.request.verbose and event.stage != "os-probe":
                self.say(f"Initiating {self.stage_name(event.stage)} at {time.strftime('%H:%M')}")
                if event.stage in ("raw", "connect"):
                    self.say(f"Scanning {event.hosts} host{'s' if event.hosts != 1 else ''} "
                             f"[{event.probes // max(event.hosts, 1)} ports/host]")
        elif kind == "details":
            if self.screen is not None and hasattr(self.screen, "set_details"):
                self.screen.set_details(event.services, event.os_guesses, event.names, event.traces)
        elif kind == "finished":
            self.status.end()
            if self.screen is not None:
                self.screen.close(event.result.summary)


    def discovered(self, rows) -> None:
        """-v: nmap's "Discovered open port 22/tcp on 198.18.0.5" as each is found."""
        from .output import rows_to_dicts
        from .states import STATES
        opened = rows[rows["state"] == STATES["open"]]
        if len(opened):
            self.status.end()
            self.talk.write("".join(f"Discovered open port {d['port']}/{d['proto']} on {d['ip']}\n"
                                    for d in rows_to_dicts(opened)))
            self.talk.flush()


def summary_line(event) -> str:
    summary = event.summary
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.states.items()))
    pps = summary.sent / summary.sending if summary.sending else 0
    line = (f"scanner: {event.hosts} hosts x {event.slots} ports"
            f"{' (interrupted)' if summary.interrupted else ''}: {counts or 'no results'}; "
            f"{summary.sent} probes sent in {summary.elapsed:.2f}s ({pps:,.0f}/s while sending)")
    if summary.pcap_dropped is not None:
        line += (f"; {summary.bad_cookie} replies failed the cookie check;"
                 f" {summary.pcap_dropped} dropped by capture")
        if summary.suspected_forgeries:
            line += f"; {summary.suspected_forgeries} suspected forgeries dropped"
    return line


_early_stop: list = []


def install_early_handler() -> None:
    """From the first moment: a Ctrl-C/SIGTERM before the session exists still ends in a resume
    file (the session stops as soon as it starts), not in a traceback or a lost signal."""
    import signal

    def handler(signum, frame):
        if _early_stop:
            raise KeyboardInterrupt
        _early_stop.append(signum)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def install_interrupt_handler(session) -> None:
    """First Ctrl-C/SIGTERM: stop the session (it keeps collecting and writing); the second: exit now."""
    import signal

    def handler(signum, frame):
        if session.stopping:
            raise KeyboardInterrupt
        session.stop()
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def run_scan(request, resume=None) -> int:
    """Runs one scan request with the terminal view; returns the exit code. Interrupted, it
    writes a resume file; resume (a Checkpoint loaded from one) goes on from it."""
    import gc

    from .session import Session
    stdout_taken = any(path == "-" for path in request.outputs.values())
    view = TerminalView(request, stdout_taken)
    session = Session(request, on_event=view, resume=resume, keep_rows=None)
    # Planned: what is loaded by now (numpy, the modules, the plan) lives as long as the process,
    # so the collector leaves it alone (a full collection walks it: tens of ms that would stall
    # the capture thread mid-scan). main() turned the collector off until here.
    gc.freeze()
    gc.enable()
    view.attach(session)
    install_interrupt_handler(session)
    if _early_stop:                     # Ctrl-C/SIGTERM while the scan was being planned
        session.stop()
    result = session.run()
    if request.dry_run:
        return 0
    checkpoint = session.checkpoint()
    problems = list(result.errors)
    if checkpoint is not None:
        try:
            path = checkpoint.save()
            print(f"scanner: scan {'failed' if result.failure else 'interrupted'}; results so far are written. "
                  f"Resume with: scanner --resume {path}", file=sys.stderr)
        except ScannerError as e:
            problems.append(str(e))
    elif resume is not None and resume.path and os.path.exists(resume.path):
        os.remove(resume.path)           # done: the resume file has served
    # A reader that went away (| head) is not worth a message, as with any Unix filter.
    problems = [p for p in problems if not p.endswith(f"output '-' failed: {os.strerror(errno.EPIPE)}")]
    kept = f" (all results are kept in the store: {result.store_kept})" if result.store_kept else ""
    for problem in problems:
        print(f"scanner: error: {problem}{kept if 'recording scan' not in problem else ''}", file=sys.stderr)
    if result.failure:
        print(f"scanner: error: {result.failure}", file=sys.stderr)
    return 1 if problems or result.failure else 0


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] and argv[0] in SUBCOMMANDS:
            sys.exit(run_command(argv[0], argv[1:]))
        if not argv or argv[0] in ("-h", "--help"):
            from .request import help_text
            sys.stdout.write(help_text())
            sys.exit(0)
        if argv[0] == "--completion":
            from .completion import completion_script
            if len(argv) != 2:
                raise InputError("--completion takes a shell: scanner --completion bash|zsh")
            sys.stdout.write(completion_script(argv[1]))
            sys.exit(0)
        if argv[0] in ("-V", "--version"):
            from . import __version__
            print(f"scanner version {__version__}")
            sys.exit(0)
        install_early_handler()
        # Until the scan is planned: no cyclic garbage collection (planning allocates many small
        # objects and no cycles; each collection would walk every module loaded). run_scan
        # turns it back on.
        import gc
        gc.disable()
        resume = None
        if argv[0] == "--resume":
            # The interrupted scan again, with its state: nothing else may change.
            import dataclasses

            from .resume import Checkpoint
            if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--cluster"):
                raise InputError("--resume takes the resume file and nothing else (but --cluster ADDR|none): "
                                 "scanner --resume FILE")
            resume = Checkpoint.load(argv[1])
            request = resume.request
            if len(argv) == 4:              # go on with another scheduler, or on this machine alone
                request = dataclasses.replace(request, cluster=None if argv[3] == "none" else argv[3])
                resume.request = request
        else:
            from .request import ScanRequest
            request = ScanRequest.from_argv(argv)
            if request.iflist:
                from .netinfo import iflist_text
                sys.stdout.write(iflist_text())
                sys.exit(0)
            if request.readscan is not None:         # masscan's --readscan: no scan, a file into outputs
                from .output.binary import readscan
                sys.exit(readscan(request))
        sys.exit(run_scan(request, resume))
    except ScannerError as e:
        print(f"scanner: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:             # e.g. | head: not worth a message
        try:
            sys.stdout = open(os.devnull, "w")
        finally:
            sys.exit(1)
    finally:
        import gc
        gc.unfreeze()
        gc.enable()


def entry() -> None:
    """The process's entry point (the `scanner` command, python -m scanner): main(), then, after
    a scan, an exit without the interpreter's teardown. Every output, the store and the resume
    file are closed by then; tearing down numpy and the modules would only add 30-100 ms to
    every scan's wall time. Other commands (web, worker, ...) exit normally."""
    if sys.argv[1:2] and sys.argv[1] in SUBCOMMANDS:
        main()
        return
    try:
        main()
        code: Any = 0
    except SystemExit as e:
        code = e.code
    if "distributed" in sys.modules:    # --cluster: let Dask's exit handlers close the client
        sys.exit(code)
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (BrokenPipeError, ValueError):   # a reader that went away; a stream already closed
        code = code or 1
    os._exit(code or 0)


# The other commands: typer apps as "module:attribute", imported only when used.
SUBCOMMANDS = {
    "lab": "scanner.commands:lab_app",
    "history": "scanner.commands:history_app",
    "show": "scanner.commands:show_app",
    "diff": "scanner.commands:diff_app",
    "web": "scanner.web.cli:web_app",
    "worker": "scanner.cluster.worker:worker_app",
    "bench": "scanner.benchmark.cli:bench_app",
}


def run_command(name: str, args: List[str]) -> int:
    import importlib

    import typer
    module, attribute = SUBCOMMANDS[name].split(":")
    app = getattr(importlib.import_module(module), attribute)
    try:
        code = typer.main.get_command(app).main(args, prog_name=f"scanner {name}", standalone_mode=False)
        return code if isinstance(code, int) else 0    # typer.Exit(code) comes back as a value here
    except typer.Exit as e:
        return e.exit_code
    except typer.TyperException as e:   # usage errors from the option parser
        print(f"scanner: error: {e.format_message()} (see scanner {name} --help)", file=sys.stderr)
        return 2
    except typer.Abort:
        return 130
