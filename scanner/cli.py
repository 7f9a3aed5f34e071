"""The command line: nmap's option names where nmap has one, masscan/zmap's where it does not."""
from __future__ import annotations

import os
import shutil
import sys
from typing import List, Optional

import typer

from .errors import InputError

scan_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
lab_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)

# Above this many target addresses the terminal gets a line per open port as found, not a table.
TABLE_UP_TO_HOSTS = 4096


def parse_shard(text: str) -> tuple:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise InputError(f"bad --shard '{text}': expected K/N, e.g. 1/4") from None
    if not 1 <= k <= n:
        raise InputError(f"bad --shard '{text}': K must be between 1 and N")
    return k, n


def dry_run(space, seed: int, shard: tuple, out=sys.stdout) -> None:
    """Prints the probes a scan would send, in the order it would send them."""
    from ._ext.permutation import Permutation
    from .targets import int_to_ip
    perm = Permutation(space.size, seed)
    k, n = shard
    count = max(0, (space.size - (k - 1) + n - 1) // n)
    for offset in range(0, count, 1 << 16):
        addrs, ports = space.locate(perm.fill(k - 1 + offset * n, min(1 << 16, count - offset), n))
        out.write("".join(f"{int_to_ip(a)} {p}\n" for a, p in zip(addrs.tolist(), ports.tolist())))


@scan_app.command(context_settings={"help_option_names": ["-h", "--help"]})
def scan(
    targets: Optional[List[str]] = typer.Argument(None, help="Addresses, CIDR blocks, ranges, hostnames."),
    ports: Optional[str] = typer.Option(None, "-p", help="Ports: 22,80,1000-2000 or - for all."),
    top_ports: Optional[int] = typer.Option(None, "--top-ports", help="Scan the N most common ports."),
    input_file: Optional[str] = typer.Option(None, "-iL", help="Read targets from a file (- for stdin)."),
    exclude: Optional[List[str]] = typer.Option(None, "--exclude", help="Targets to skip (comma-separated)."),
    exclude_file: Optional[str] = typer.Option(None, "--excludefile", help="Targets to skip, from a file."),
    syn: bool = typer.Option(False, "-sS", help="SYN (half-open) scan, the default as root."),
    connect: bool = typer.Option(False, "-sT", help="TCP connect scan, the default without root."),
    max_parallelism: Optional[int] = typer.Option(None, "--max-parallelism",
                                                  help="Connections open at once (-sT)."),
    rate: float = typer.Option(10000.0, "--rate", help="Packets per second (0: as fast as possible)."),
    retries: int = typer.Option(1, "--retries", help="Resends of probes still unanswered."),
    wait: float = typer.Option(2.0, "--wait", help="Seconds to wait for late replies."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the probe order."),
    shard: str = typer.Option("1/1", "--shard", help="K/N: scan this machine's slice K of N."),
    interface: Optional[str] = typer.Option(None, "-e", "--interface", help="Send on this interface."),
    dry: bool = typer.Option(False, "--dry-run", help="Print the probes instead of sending them."),
    json_out: Optional[str] = typer.Option(None, "-oJ", help="Write NDJSON results here (- for stdout)."),
    normal_out: Optional[str] = typer.Option(None, "-oN", help="Write nmap's normal output here (- for stdout)."),
    xml_out: Optional[str] = typer.Option(None, "-oX", help="Write nmap's XML output here (- for stdout)."),
    grepable_out: Optional[str] = typer.Option(None, "-oG", help="Write nmap's grepable output here."),
    csv_out: Optional[str] = typer.Option(None, "--csv", help="Write CSV results here (- for stdout)."),
    list_out: Optional[str] = typer.Option(None, "-oL", help="Write masscan's list format here."),
    all_out: Optional[str] = typer.Option(None, "-oA", help="BASENAME: -oN, -oX and -oG to BASENAME.nmap/.xml/.gnmap."),
    db: Optional[str] = typer.Option(None, "--db", help="Record the scan in this SQLite file "
                                     "(default: $XDG_DATA_HOME/scanner/scans.db)."),
    no_db: bool = typer.Option(False, "--no-db", help="Do not record the scan."),
    stats_every: Optional[float] = typer.Option(None, "--stats-every", help="Log a progress line every SECONDS."),
    show_all: bool = typer.Option(False, "--show-all", help="List closed and filtered ports too."),
    reason: bool = typer.Option(False, "--reason", help="Show why each port has its state."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No summary on stderr."),
):
    """Scan TARGETS for open TCP ports (SYN scan as root, TCP connect scan otherwise)."""
    from .engine import ScanConfig
    from .ports import parse_ports
    from .space import ScanSpace
    from .targets import TargetSet

    if rate < 0:
        raise InputError(f"bad --rate {rate:g}: must be 0 (unlimited) or positive")
    if retries < 0 or wait < 0:
        raise InputError("--retries and --wait cannot be negative")
    target_set = TargetSet.from_specs(targets or [], exclude or [], input_file, exclude_file)
    space = ScanSpace(target_set, parse_ports(ports, top_ports))
    config = ScanConfig(space=space, rate=rate, retries=retries, wait=wait, seed=seed,
                        shard=parse_shard(shard), interface=interface,
                        list_unanswered=True if show_all else None)
    if dry:
        dry_run(space, config.seed, config.shard)
        return
    if syn and connect:
        raise InputError("choose one TCP scan technique: -sS or -sT")
    if not connect and os.geteuid() != 0:
        if syn:
            raise InputError("the SYN scan (-sS) sends raw packets and needs root: run as root, or use -sT")
        connect = True
        if not quiet:
            print("scanner: not running as root: using the TCP connect scan (-sT)", file=sys.stderr)
    if max_parallelism is not None and max_parallelism < 1:
        raise InputError("--max-parallelism must be at least 1")
    if stats_every is not None and stats_every <= 0:
        raise InputError(f"bad --stats-every {stats_every:g}: must be a positive number of seconds")
    if db is not None and no_db:
        raise InputError("--db and --no-db contradict each other")
    outputs = {"-oN": normal_out, "-oX": xml_out, "-oG": grepable_out, "--csv": csv_out, "-oL": list_out}
    run_scan(config, json_out, show_all, reason, quiet, connect, max_parallelism,
             outputs=outputs, all_basename=all_out, db=db, no_db=no_db, stats_every=stats_every)


def run_scan(config, json_out, show_all, reason, quiet, connect=False, max_parallelism=None,
             outputs=None, all_basename=None, db=None, no_db=False, stats_every=None) -> None:
    """Runs a scan with every output (files, terminal, the store, progress). Output paths and the
    store are opened before the first probe; a write that fails mid-scan stops only that output,
    is reported at the end, and makes the exit code 1."""
    from .connect import ConnectScan
    from .engine import Scan, install_interrupt_handler
    from .output import BackgroundSink, Outputs, ScanInfo, plan_outputs
    from .progress import Progress
    from .store import Recorder, Store

    plan = plan_outputs({"-oJ": json_out, **(outputs or {})}, all_basename)
    info = ScanInfo(command=command_line(), scan_type="connect" if connect else "syn",
                    ports=tuple(config.space.ports.tolist()), n_hosts=config.space.n_hosts)
    store = None if no_db else Store(db)
    outs = Outputs(plan, info, show_all=show_all, reason=reason,
                   table=config.space.n_hosts <= TABLE_UP_TO_HOSTS)
    # Unanswered probes (possibly millions) are stored one by one only with --show-all.
    recorder = Recorder(store, info, scan_record_config(config, info, show_all),
                        unanswered=show_all) if store else None
    scan = ConnectScan(config, max_parallelism) if connect else Scan(config)
    install_interrupt_handler(scan)
    progress = Progress(scan, live=not quiet, every=stats_every)

    # Written off the capture thread; the store first: it must survive a failing output.
    sink = BackgroundSink([recorder, outs])
    started = False
    try:
        progress.start()
        summary = scan.run(sink)
        started = True
    except InputError:
        if recorder:                 # refused before sending anything: nothing to record
            store.discard(recorder.scan_id)
            recorder = None
        raise
    finally:
        progress.stop()
        try:
            sink.close()
        finally:
            outs.close(scan.summary)
            if recorder:
                recorder.close(scan.summary)
            if store:
                store.close()
    if not quiet:
        print(summary_line(config, summary), file=sys.stderr)
    problems = outs.errors()
    kept = (f" (all results are kept in the store: scanner show {recorder.scan_id}"
            f"{' --db ' + str(db) if db else ''})") if recorder and not recorder.error else ""
    for problem in problems:
        print(f"scanner: error: {problem}{kept}", file=sys.stderr)
    if recorder and recorder.error:
        print(f"scanner: error: {recorder.error}", file=sys.stderr)
    if started and (problems or (recorder and recorder.error)):
        sys.exit(1)


_ARGV: Optional[List[str]] = None


def command_line() -> str:
    """The command as the user typed it, for output headers and the store."""
    import shlex
    argv = _ARGV if _ARGV is not None else sys.argv[1:]
    return " ".join(["scanner", *map(shlex.quote, argv)])


def scan_record_config(config, info, show_all) -> dict:
    """What the store keeps of a scan's configuration (JSON)."""
    from .output import port_ranges
    return {"scan_type": info.scan_type, "protocol": info.protocol, "ports": port_ranges(info.ports),
            "n_hosts": info.n_hosts, "rate": config.rate, "retries": config.retries, "wait": config.wait,
            "seed": config.seed, "shard": list(config.shard), "interface": config.interface,
            "show_all": show_all, "version": info.version}


def summary_line(config, summary) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.states.items()))
    pps = summary.sent / summary.elapsed if summary.elapsed else 0
    line = (f"scanner: {config.space.n_hosts} hosts x {len(config.space.ports)} ports"
            f"{' (interrupted)' if summary.interrupted else ''}: {counts or 'no results'}; "
            f"{summary.sent} probes sent in {summary.elapsed:.2f}s ({pps:,.0f}/s)")
    if summary.pcap_dropped is not None:
        line += (f"; {summary.bad_cookie} replies failed the cookie check;"
                 f" {summary.pcap_dropped} dropped by capture")
    return line


@lab_app.command(context_settings={"help_option_names": ["-h", "--help"]})
def lab(
    prefix: str = typer.Option("198.18.0.0/24", "--prefix", help="Target hosts (inside 198.18.0.0/15)."),
    live_every: int = typer.Option(16, "--live-every", help="One host in N is up (a power of two)."),
    rate: float = typer.Option(10000.0, "--rate", help="Packets per second."),
    show_all: bool = typer.Option(False, "--show-all", help="List closed and filtered ports too."),
):
    """Build a local lab of network namespaces, SYN-scan it for real, show the results, tear it down."""
    from .lab import Lab, LabSpec

    if os.geteuid() != 0:
        raise InputError("the lab creates network namespaces and needs root: run scanner lab as root")
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            raise InputError(f"the lab needs '{tool}': apt-get install {'iproute2' if tool == 'ip' else 'nftables'}")
    try:
        spec = LabSpec(prefix=prefix, open_tcp=(22, 80, 443), drop_tcp=(8080,),
                       reject_tcp={8443: "admin-prohibited"}, live_every=live_every)
    except ValueError as e:
        raise InputError(f"bad lab: {e}") from None
    ports = "22,23,80,443,8080,8443"
    print(f"Lab: {prefix}, one host in {live_every} up; ports 22,80,443 open, 23 closed, "
          f"8080 dropped, 8443 rejected (admin-prohibited). Scanning from its own namespace:", flush=True)
    argv = [sys.executable, "-m", "scanner", prefix, "-p", ports, "--rate", str(rate), "--reason"]
    with Lab(spec) as the_lab:
        print("$ scanner " + " ".join(argv[3:]), flush=True)
        result = the_lab.run(argv + (["--show-all"] if show_all else []))
    sys.exit(result.returncode)


history_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
show_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
diff_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
DB_HELP = "The scan database (default: $XDG_DATA_HOME/scanner/scans.db)."


@history_app.command(context_settings={"help_option_names": ["-h", "--help"]})
def history(
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
    limit: int = typer.Option(20, "-n", "--limit", help="Show the N latest scans (0: all)."),
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
    from .output import FORMATS, make_writer
    from .store import Store, scan_info, summary_of
    if fmt not in FORMATS:
        raise InputError(f"bad --format '{fmt}': one of {', '.join(FORMATS)}")
    store = Store(db, create=False)
    record = store.scan(scan_id)
    writer = make_writer(FORMATS[fmt], out, scan_info(record), show_all=show_all, reason=reason)
    writer.write(store.rows(record.id))
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


SUBCOMMANDS = {"lab": lab_app, "history": history_app, "show": show_app, "diff": diff_app}


def main(argv: Optional[List[str]] = None) -> None:
    global _ARGV
    argv = sys.argv[1:] if argv is None else argv
    _ARGV = list(argv)
    sub = argv[0] if argv[:1] and argv[0] in SUBCOMMANDS else None
    app, args = (SUBCOMMANDS[sub], argv[1:]) if sub else (scan_app, argv)
    command = typer.main.get_command(app)
    try:
        command.main(args, prog_name=f"scanner {sub}" if sub else "scanner", standalone_mode=False)
    except InputError as e:
        print(f"scanner: error: {e}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.TyperException as e:   # usage errors from the option parser
        print(f"scanner: error: {e.format_message()} (see scanner --help)", file=sys.stderr)
        sys.exit(2)
    except typer.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
