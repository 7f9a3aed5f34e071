"""The command line: nmap's option names where nmap has one, masscan/zmap's where it does not."""
from __future__ import annotations

import os
import re
import shutil
import sys
from typing import List, Optional

import typer

from .errors import InputError
from .ports import port_lists

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
    """Prints the probes a scan would send, in the order it would send them: "address port",
    with "/udp" after UDP ports and the probe's name for ICMP ones."""
    from ._ext.permutation import Permutation
    from .states import PROTO_NAMES, addresses
    perm = Permutation(space.size, seed)
    k, n = shard
    count = max(0, (space.size - (k - 1) + n - 1) // n)
    names = [f"{t.flag}{port or ''}" if t.flag.startswith("-P") else "" for t, port in space.probes.slots]
    for offset in range(0, count, 1 << 16):
        indices = perm.fill(k - 1 + offset * n, min(1 << 16, count - offset), n)
        rows = space.rows(indices)
        _, slots = space.locate(indices)
        out.write("".join(
            f"{addr} {names[slot] or port}{'/udp' if proto == 17 else ''}\n"
            for addr, port, proto, slot in zip(addresses(rows), rows["port"].tolist(),
                                               rows["proto"].tolist(), slots.tolist())))


def discovery_probes(echo, timestamp, syn, ack, udp):
    """nmap's -PE -PP -PS -PA -PU as probes; nmap's default set when none is chosen."""
    from .techniques import DEFAULT_DISCOVERY, DISCOVERY, DISCOVERY_DEFAULT_PORTS, Probes
    chosen = [("PE", 0)] * echo + [("PP", 0)] * timestamp
    for key, ports in (("PS", syn), ("PA", ack), ("PU", udp)):
        if ports is not None:
            tcp, udp_ports = port_lists(ports or str(DISCOVERY_DEFAULT_PORTS[key]), None,
                                        tcp=key != "PU", udp=key == "PU")
            chosen += [(key, int(p)) for p in (udp_ports if key == "PU" else tcp)]
    return Probes([(DISCOVERY[key], port) for key, port in (chosen or DEFAULT_DISCOVERY)])


@scan_app.command(context_settings={"help_option_names": ["-h", "--help"]})
def scan(
    targets: Optional[List[str]] = typer.Argument(None, help="Addresses, CIDR blocks, ranges, hostnames."),
    ports: Optional[str] = typer.Option(None, "-p", help="Ports: 22,80,1000-2000, - for all, T:/U: per protocol."),
    top_ports: Optional[int] = typer.Option(None, "--top-ports", help="Scan the N most common ports."),
    input_file: Optional[str] = typer.Option(None, "-iL", help="Read targets from a file (- for stdin)."),
    exclude: Optional[List[str]] = typer.Option(None, "--exclude", help="Targets to skip (comma-separated)."),
    exclude_file: Optional[str] = typer.Option(None, "--excludefile", help="Targets to skip, from a file."),
    ipv6: bool = typer.Option(False, "-6", help="Resolve hostnames to IPv6 (IPv6 addresses need no flag)."),
    syn: bool = typer.Option(False, "-sS", help="SYN (half-open) scan, the default as root."),
    connect: bool = typer.Option(False, "-sT", help="TCP connect scan, the default without root."),
    ack: bool = typer.Option(False, "-sA", help="ACK scan: filtered or unfiltered."),
    window: bool = typer.Option(False, "-sW", help="Window scan."),
    null: bool = typer.Option(False, "-sN", help="Null scan (no flags)."),
    fin: bool = typer.Option(False, "-sF", help="FIN scan."),
    xmas: bool = typer.Option(False, "-sX", help="Xmas scan (FIN, PSH, URG)."),
    maimon: bool = typer.Option(False, "-sM", help="Maimon scan (FIN, ACK)."),
    scanflags: Optional[str] = typer.Option(None, "--scanflags", help="Custom TCP flags, e.g. URGPSHFIN."),
    udp: bool = typer.Option(False, "-sU", help="UDP scan (with protocol payloads)."),
    ping_only: bool = typer.Option(False, "-sn", help="Host discovery only, no port scan."),
    no_ping: bool = typer.Option(False, "-Pn", help="Skip host discovery: treat every host as up."),
    ping_echo: bool = typer.Option(False, "-PE", help="Discovery: ICMP echo."),
    ping_timestamp: bool = typer.Option(False, "-PP", help="Discovery: ICMP timestamp."),
    ping_syn: Optional[str] = typer.Option(None, "-PS", help="Discovery: TCP SYN to these ports (-PS22,80)."),
    ping_ack: Optional[str] = typer.Option(None, "-PA", help="Discovery: TCP ACK to these ports."),
    ping_udp: Optional[str] = typer.Option(None, "-PU", help="Discovery: UDP to these ports."),
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
    show_all: bool = typer.Option(False, "--show-all", help="List unanswered ports too (all outputs)."),
    reason: bool = typer.Option(False, "--reason", help="Show why each port has its state."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No notes or summary on stderr."),
):
    """Scan TARGETS: host discovery, then a port scan with one TCP technique and/or UDP."""
    from .engine import ScanConfig
    from .space import ScanSpace
    from .targets import TargetSet
    from .techniques import SYN_SCAN, TCP_TECHNIQUES, UDP_SCAN, Probes, parse_scanflags, with_flags

    if rate < 0:
        raise InputError(f"bad --rate {rate:g}: must be 0 (unlimited) or positive")
    if retries < 0 or wait < 0:
        raise InputError("--retries and --wait cannot be negative")
    if max_parallelism is not None and max_parallelism < 1:
        raise InputError("--max-parallelism must be at least 1")
    chosen = [flag for flag, on in (("-sS", syn), ("-sT", connect), ("-sA", ack), ("-sW", window),
                                    ("-sN", null), ("-sF", fin), ("-sX", xmas), ("-sM", maimon)) if on]
    if len(chosen) > 1:
        raise InputError(f"choose one TCP scan technique, not {' and '.join(chosen)}")
    if ping_only and (chosen or udp):
        raise InputError("-sn is host discovery only: it takes no port scan technique")
    if ping_only and no_ping:
        raise InputError("-sn and -Pn together leave nothing to do")
    root = os.geteuid() == 0
    technique = TCP_TECHNIQUES[chosen[0]] if chosen else None
    notes = []
    if technique is None and not udp and not ping_only:
        technique = SYN_SCAN if root or dry else TCP_TECHNIQUES["-sT"]
        if technique.key == "connect":
            no_ping = True
            notes.append("not running as root: using the TCP connect scan (-sT), without host discovery")
    if scanflags is not None:
        if technique is None or not technique.raw:
            raise InputError("--scanflags needs a raw TCP scan (-sS, -sA, ...)")
        technique = with_flags(technique, parse_scanflags(scanflags))
    raw = ping_only or udp or (technique is not None and technique.raw) or not no_ping
    if raw and not root and not dry:
        wanted = " ".join(chosen + ["-sU"] * udp + ["-sn"] * ping_only) or "host discovery (use -Pn to skip it)"
        raise InputError(f"{wanted} sends raw packets and needs root: run as root, or use -sT")

    target_set = TargetSet.from_specs(targets or [], exclude or [], input_file, exclude_file, ipv6)
    tcp_ports, udp_ports = port_lists(ports, top_ports, tcp=technique is not None, udp=udp)
    discovery = None if no_ping else discovery_probes(ping_echo, ping_timestamp, ping_syn, ping_ack, ping_udp)
    shard_k_n = parse_shard(shard)
    # Unanswered probes are listed for the nmap-like table and for --show-all, else only counted.
    common = dict(rate=rate, retries=retries, wait=wait, seed=seed, shard=shard_k_n, interface=interface,
                  list_unanswered=show_all or (json_out != "-" and target_set.count <= TABLE_UP_TO_HOSTS))
    # One raw scan for the raw techniques (e.g. -sS -sU in one pass); the connect scan apart.
    jobs = []
    if not ping_only:
        if technique is not None and not technique.raw:
            jobs.append(("connect", Probes.ports(technique, tcp_ports)))
            if udp:
                jobs.append(("raw", Probes.ports(UDP_SCAN, (), udp_ports)))
        else:
            jobs.append(("raw", Probes.ports(technique, tcp_ports if technique else (), udp_ports)))
    first = ScanSpace(target_set, discovery if ping_only else jobs[0][1])
    if dry:
        dry_run(first, ScanConfig(space=first, **common).seed, shard_k_n)
        return
    if not quiet:
        for note in notes:
            print(f"scanner: {note}", file=sys.stderr)
    run_scan(target_set, discovery, jobs, common, json_out, show_all, reason, quiet, max_parallelism)


def run_scan(targets, discovery, jobs, common, json_out, show_all, reason, quiet, max_parallelism=None):
    """Host discovery (unless skipped), then each scan job over the hosts found up, all results
    going to the same outputs."""
    from .connect import ConnectScan
    from .engine import Scan, ScanConfig, discover_hosts, install_interrupt_handler
    from .output import HostTable, NdjsonWriter, OpenPortLines
    from .space import ScanSpace
    from .states import REASONS

    writers, table = [], None
    if json_out:
        writers.append(NdjsonWriter(json_out, show_all))
    if json_out != "-":
        table = (HostTable(show_all=show_all, reason=reason) if targets.count <= TABLE_UP_TO_HOSTS
                 else OpenPortLines(show_all=show_all))
        writers.append(table)

    def sink(rows):
        for w in writers:
            w.write(rows)
    try:
        if discovery is not None:
            config = ScanConfig(space=ScanSpace(targets, discovery), **common)
            up, summary = discover_hosts(config, discovery, sink if not jobs else table.write if table else None)
            if not quiet:
                print(f"scanner: host discovery: {up.count if up else 0} of {targets.count} hosts up "
                      f"({summary.elapsed:.2f}s)", file=sys.stderr)
            if up is None:
                return
            targets = up
        for kind, probes in jobs:
            config = ScanConfig(space=ScanSpace(targets, probes), **common)
            scan = ConnectScan(config, max_parallelism) if kind == "connect" else Scan(config)
            install_interrupt_handler(scan)
            summary = scan.run(sink)
            if not quiet:
                print(summary_line(config, summary), file=sys.stderr)
            if summary.interrupted:
                break
    finally:
        for w in writers:
            w.close()


def summary_line(config, summary) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.states.items()))
    pps = summary.sent / summary.elapsed if summary.elapsed else 0
    line = (f"scanner: {config.space.n_hosts} hosts x {config.space.n_slots} ports"
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


def nmap_style_args(argv: List[str]) -> List[str]:
    """nmap glues port lists to some options (-PS22,80): split them for the option parser."""
    out = []
    for arg in argv:
        m = re.fullmatch(r"-P([SAU])(.*)", arg)
        out += [f"-P{m.group(1)}", m.group(2)] if m else [arg]
    return out


def main(argv: Optional[List[str]] = None) -> None:
    argv = nmap_style_args(sys.argv[1:] if argv is None else argv)
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
