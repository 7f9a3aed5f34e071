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
    run_scan(config, json_out, show_all, reason, quiet, connect, max_parallelism)


def run_scan(config, json_out, show_all, reason, quiet, connect=False, max_parallelism=None) -> None:
    from .connect import ConnectScan
    from .engine import Scan, install_interrupt_handler
    from .output import HostTable, NdjsonWriter, OpenPortLines

    writers = []
    if json_out:
        writers.append(NdjsonWriter(json_out))
    to_stdout = json_out == "-"
    if not to_stdout:
        small = config.space.n_hosts <= TABLE_UP_TO_HOSTS
        writers.append(HostTable(show_all=show_all, reason=reason) if small else OpenPortLines(show_all=show_all))
    scan = ConnectScan(config, max_parallelism) if connect else Scan(config)
    install_interrupt_handler(scan)

    def sink(rows):
        for w in writers:
            w.write(rows)
    try:
        summary = scan.run(sink)
    finally:
        for w in writers:
            w.close()
    if not quiet:
        print(summary_line(config, summary), file=sys.stderr)


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


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    app, args = (lab_app, argv[1:]) if argv[:1] == ["lab"] else (scan_app, argv)
    command = typer.main.get_command(app)
    try:
        command.main(args, prog_name="scanner lab" if app is lab_app else "scanner", standalone_mode=False)
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
