"""The other commands: scanner lab, history, show and diff (typer apps, loaded only when used)."""
from __future__ import annotations

import os
import shutil
import sys
from typing import Optional

import typer

from .errors import EnvironmentFault, InputError

lab_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


@lab_app.command(context_settings={"help_option_names": ["-h", "--help"]})
def lab(
    prefix: str = typer.Option("198.18.0.0/24", "--prefix", help="Target hosts (inside 198.18.0.0/15)."),
    live_every: int = typer.Option(16, "--live-every", help="One host in N is up (a power of two)."),
    rate: float = typer.Option(10000.0, "--rate", help="Packets per second."),
    show_all: bool = typer.Option(False, "--show-all", help="List closed and filtered ports too."),
    routers: int = typer.Option(0, "--routers", help="Router namespaces between scanner and targets (hops "
                                "for --traceroute)."),
    run: Optional[str] = typer.Option(None, "--run", help="Instead of the scan, run this command in the lab's "
                                      "scanner namespace (e.g. 'python3 my_scan.py', a program using the API)."),
):
    """Build a local lab of network namespaces, SYN-scan it for real (or run a command of yours in
    it), show the results, tear it down."""
    from .lab import Lab, LabSpec

    if os.geteuid() != 0:
        raise InputError("the lab creates network namespaces and needs root: run scanner lab as root")
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            raise EnvironmentFault(f"the lab needs '{tool}': apt-get install {'iproute2' if tool == 'ip' else 'nftables'}")
    try:
        spec = LabSpec(prefix=prefix, open_tcp=(22, 80, 443), drop_tcp=(8080,),
                       reject_tcp={8443: "admin-prohibited"}, live_every=live_every, routers=routers,
                       open_sctp=(2905,))
    except ValueError as e:
        raise InputError(f"bad lab: {e}") from None
    ports = "22,23,80,443,8080,8443"
    if run is not None:
        import shlex
        command = shlex.split(run)
        if not command:
            raise InputError("--run needs a command")
    print(f"Lab: {prefix}, one host in {live_every} up; ports 22,80,443 open, 23 closed, "
          f"8080 dropped, 8443 rejected (admin-prohibited); SCTP 2905 open, other SCTP ports closed"
          f"{f'; {routers} router(s) on the way' if routers else ''}. "
          f"{'Running' if run else 'Scanning'} from its own namespace:", flush=True)
    argv = [sys.executable, "-m", "scanner", prefix, "-p", ports, "--rate", str(rate), "--reason"]
    with Lab(spec) as the_lab:
        if run is not None:
            print(f"$ {run}", flush=True)
            result = the_lab.run(command)
        else:
            print("$ scanner " + " ".join(argv[3:]), flush=True)
            # This very installation of scanner, not a source tree that the current directory may hold.
            env = dict(os.environ, PYTHONSAFEPATH="1")
            result = the_lab.run(argv + (["--show-all"] if show_all else []), env=env)
    sys.exit(result.returncode)


history_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
show_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
diff_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
DB_HELP = "The scan database (default: $XDG_DATA_HOME/scanner/scans.db)."


@history_app.command(context_settings={"help_option_names": ["-h", "--help"]})
def history(
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
    limit: int = typer.Option(20, "-n", "--limit", min=0, help="Show the N latest scans (0: all)."),
):
    """List the recorded scans, latest first."""
    from .store import Store, history_lines
    store = Store(db, create=False)
    print("\n".join(history_lines(store, limit or None)))


@show_app.command(context_settings={"help_option_names": ["-h", "--help"]})
def show(
    scan_id: str = typer.Argument(..., help="Scan ID from scanner history ('last': the latest)."),
    fmt: str = typer.Option("normal", "-f", "--format", help="normal, xml, grepable, json, csv or list."),
    out: str = typer.Option("-", "-o", "--output", help="Write here instead of stdout."),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
    show_all: bool = typer.Option(False, "--show-all", help="List closed and filtered ports too."),
    reason: bool = typer.Option(False, "--reason", help="Show why each port has its state (normal)."),
):
    """Print a recorded scan in any output format."""
    import errno
    from .output import FORMATS
    from .store import Store, scan_info, summary_of
    if fmt not in FORMATS:
        raise InputError(f"bad --format '{fmt}': one of {', '.join(FORMATS)}")
    store = Store(db, create=False)
    record = store.scan(scan_id)
    services, os_guesses = store.details(record.id)        # -sV / -O results, if any
    writer = FORMATS[fmt](out, scan_info(record), show_all=show_all, reason=reason,
                          details=bool(services or os_guesses))
    writer.set_details(services, os_guesses, traces=store.traces(record.id))
    # Streamed: a batch at a time, or host by host for nmap's formats (memory stays flat).
    if writer.grouped:
        writer.set_more_hosts(lambda: store.host_rows(record.id))
    else:
        for batch in store.row_batches(record.id):
            writer.write(batch)
    writer.close(summary_of(record))
    if writer.error and writer.errno == errno.EPIPE:    # e.g. | head: not worth a message
        sys.exit(1)
    if writer.error:
        print(f"scanner: error: {writer.error}", file=sys.stderr)
        sys.exit(1)


@diff_app.command(context_settings={"help_option_names": ["-h", "--help"]})
def diff(
    scan_a: str = typer.Argument(..., help="The older scan's ID."),
    scan_b: str = typer.Argument(..., help="The newer scan's ID."),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
):
    """What changed between two recorded scans: new, gone and changed hosts and ports (like ndiff).
    Exit code 0: no differences, 1: differences."""
    from .store import Store, diff_lines, diff_rows
    store = Store(db, create=False)
    a, b = store.scan(scan_a), store.scan(scan_b)
    d = diff_rows(store.rows(a.id), store.rows(b.id))
    print("\n".join(diff_lines(a, b, d)))
    sys.stdout.flush()
    if not d.empty:
        sys.exit(1)

