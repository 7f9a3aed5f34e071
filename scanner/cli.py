"""The command line: nmap's option names where nmap has one, masscan/zmap's where it does not."""
from __future__ import annotations

import dataclasses
import ipaddress
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


def dry_run(config, out=sys.stdout) -> None:
    """Prints the probes a scan would send, in the order it would send them: "address port",
    with "/udp" after UDP ports and the probe's name for discovery ones."""
    from .states import addresses
    space = config.space
    names = [f"{t.flag}{port or ''}" if t.flag.startswith("-P") else "" for t, port in space.probes.slots]
    for indices in config.indices():
        rows = space.rows(indices)
        _, slots = space.locate(indices)
        out.write("".join(
            f"{addr} {names[slot] or port}{'/udp' if proto == 17 else ''}\n"
            for addr, port, proto, slot in zip(addresses(rows), rows["port"].tolist(),
                                               rows["proto"].tolist(), slots.tolist())))


def on_local_link(targets) -> bool:
    """Whether IPv4 targets are neighbours on an Ethernet link (nmap then pings with ARP)."""
    from . import netinfo
    if targets.family != 4:
        return False
    try:
        return netinfo.route_to(targets.address(targets.ranges()[0][0])).on_link
    except InputError:
        return False         # no route: the scan itself will say so


def discovery_probes(echo, timestamp, syn, ack, udp, arp=False, family=4, local_link=False):
    """nmap's -PE -PP -PS -PA -PU -PR as probes; nmap's default set when none is chosen (ARP
    alone on the local link; no timestamp request for IPv6, which has none)."""
    from .techniques import DEFAULT_DISCOVERY, DISCOVERY, DISCOVERY_DEFAULT_PORTS, LOCAL_LINK_DISCOVERY, Probes
    chosen = [("PE", 0)] * echo + [("PP", 0)] * timestamp + [("PR", 0)] * arp
    for key, ports in (("PS", syn), ("PA", ack), ("PU", udp)):
        if ports is not None:
            tcp, udp_ports = port_lists(ports or str(DISCOVERY_DEFAULT_PORTS[key]), None,
                                        tcp=key != "PU", udp=key == "PU")
            chosen += [(key, int(p)) for p in (udp_ports if key == "PU" else tcp)]
    default = [(key, port) for key, port in (LOCAL_LINK_DISCOVERY if local_link else DEFAULT_DISCOVERY)
               if family == 4 or key != "PP"]
    return Probes([(DISCOVERY[key], port) for key, port in (chosen or default)])


@scan_app.command(context_settings={"help_option_names": ["-h", "--help"]})
def scan(
    targets: Optional[List[str]] = typer.Argument(None, help="Addresses, CIDR blocks, ranges, hostnames."),
    ports: Optional[str] = typer.Option(None, "-p", help="Ports: 22,80,1000-2000, - for all, T:/U: per protocol."),
    top_ports: Optional[int] = typer.Option(None, "--top-ports", help="Scan the N most common ports."),
    input_file: Optional[str] = typer.Option(None, "-iL", help="Read targets from a file (- for stdin)."),
    exclude: Optional[List[str]] = typer.Option(None, "--exclude", help="Targets to skip (comma-separated)."),
    exclude_file: Optional[str] = typer.Option(None, "--excludefile", help="Targets to skip, from a file "
                                               "(needed to scan 0.0.0.0/0 or ::/0; may be /dev/null)."),
    no_default_exclude: bool = typer.Option(False, "--no-default-exclude", help="Scan IANA special-purpose "
                                            "ranges (private, multicast, ...) inside larger target blocks too."),
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
    ping_arp: bool = typer.Option(False, "-PR", help="Discovery: ARP (the default on the local link)."),
    max_parallelism: Optional[int] = typer.Option(None, "--max-parallelism",
                                                  help="Connections open at once (-sT)."),
    rate: float = typer.Option(10000.0, "--rate", help="Packets per second (0: as fast as possible)."),
    retries: int = typer.Option(1, "--retries", help="Resends of probes still unanswered."),
    max_udp_rounds: int = typer.Option(30, "--max-udp-rounds",
                                       help="Slower rounds for hosts that rate-limit ICMP (-sU); 0: none."),
    wait: float = typer.Option(2.0, "--wait", help="Seconds to wait for late replies."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the probe order."),
    shard: str = typer.Option("1/1", "--shard", help="K/N: scan this machine's slice K of N."),
    interface: Optional[str] = typer.Option(None, "-e", "--interface", help="Send on this interface."),
    dry: bool = typer.Option(False, "--dry-run", help="Print the probes instead of sending them."),
    send_path: str = typer.Option("auto", "--send-path", help="packet (sendmmsg), xdp (AF_XDP) or auto "
                                  "(AF_XDP where the kernel and interface allow it)."),
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
    show_all: bool = typer.Option(False, "--show-all", help="List unanswered ports too (all outputs)."),
    reason: bool = typer.Option(False, "--reason", help="Show why each port has its state."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No notes or summary on stderr."),
    version_scan: bool = typer.Option(False, "-sV", help="Service/version detection of open ports."),
    os_scan: bool = typer.Option(False, "-O", help="OS detection from the SYN-ACKs and RSTs seen."),
    aggressive: bool = typer.Option(False, "-A", help="-sV and -O together."),
    version_intensity: int = typer.Option(7, "--version-intensity", help="-sV: 0 (light) to 9 (all probes)."),
    service_db: Optional[str] = typer.Option(None, "--service-db", help="-sV: probes and matches from this "
                                             "file (ours, or nmap's nmap-service-probes)."),
):
    """Scan TARGETS: host discovery, then a port scan with one TCP technique and/or UDP.

    Ctrl-C (or SIGTERM) stops the scan, keeps every result and writes scanner-resume.json in the
    current directory; `scanner --resume scanner-resume.json` goes on from where it stopped.

    Other commands: scanner lab (scan a local namespace lab), scanner history, scanner show ID,
    scanner diff A B (recorded scans); each has its own --help."""
    from .engine import SEND_PATHS, ScanConfig
    from .space import ScanSpace
    from .targets import TargetSet
    from .techniques import SYN_SCAN, TCP_TECHNIQUES, UDP_SCAN, Probes, parse_scanflags, with_flags

    if rate < 0:
        raise InputError(f"bad --rate {rate:g}: must be 0 (unlimited) or positive")
    if retries < 0 or wait < 0 or max_udp_rounds < 0:
        raise InputError("--retries, --wait and --max-udp-rounds cannot be negative")
    if max_parallelism is not None and max_parallelism < 1:
        raise InputError("--max-parallelism must be at least 1")
    if stats_every is not None and stats_every <= 0:
        raise InputError(f"bad --stats-every {stats_every:g}: must be a positive number of seconds")
    if db is not None and no_db:
        raise InputError("--db and --no-db contradict each other")
    if send_path not in SEND_PATHS:
        raise InputError(f"bad --send-path {send_path!r}: choose one of {', '.join(SEND_PATHS)}")
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

    target_set = TargetSet.from_specs(targets or [], exclude or [], input_file, exclude_file, ipv6,
                                      default_exclude=not no_default_exclude)
    if target_set.special_note():
        notes.append(target_set.special_note())
    tcp_ports, udp_ports = port_lists(ports, top_ports, tcp=technique is not None, udp=udp)
    discovery = None if no_ping else discovery_probes(
        ping_echo, ping_timestamp, ping_syn, ping_ack, ping_udp, ping_arp, target_set.family,
        on_local_link(target_set))
    shard_k_n = parse_shard(shard)
    outputs = {"-oJ": json_out, "-oN": normal_out, "-oX": xml_out, "-oG": grepable_out, "--csv": csv_out,
               "-oL": list_out}
    # Unanswered probes are listed for the per-host views (tables, -oN/-oX/-oG) and --show-all.
    grouped = any(outputs[o] for o in ("-oN", "-oX", "-oG")) or all_out
    table = target_set.count <= TABLE_UP_TO_HOSTS
    common = dict(rate=rate, retries=retries, wait=wait, seed=seed, shard=shard_k_n, interface=interface,
                  udp_rounds=max_udp_rounds, send_path=send_path,
                  list_unanswered=bool(show_all or grouped or table))
    # One raw scan for the raw techniques (e.g. -sS -sU in one pass); the connect scan apart.
    jobs = []
    if not ping_only:
        if technique is not None and not technique.raw:
            jobs.append(("connect", Probes.ports(technique, tcp_ports)))
            if udp:
                jobs.append(("raw", Probes.ports(UDP_SCAN, (), udp_ports)))
        else:
            jobs.append(("raw", Probes.ports(technique, tcp_ports if technique else (), udp_ports)))
    if not 0 <= version_intensity <= 9:
        raise InputError(f"bad --version-intensity {version_intensity}: must be 0 to 9")
    first = ScanSpace(target_set, discovery if ping_only else jobs[0][1])
    if not quiet:
        for note in notes:
            print(f"scanner: {note}", file=sys.stderr)
    if dry:
        dry_run(ScanConfig(space=first, **common))
        return
    post = None
    if (version_scan or os_scan or aggressive) and not ping_only:
        from .service import PostScan
        post = PostScan(version_scan or aggressive, os_scan or aggressive, version_intensity, service_db,
                        concurrency=max_parallelism or 128)
    run_scan(target_set, discovery, jobs, common, outputs, all_out, show_all=show_all, reason=reason,
             quiet=quiet, max_parallelism=max_parallelism, table=table, db=db, no_db=no_db,
             stats_every=stats_every, resume=_RESUME, post=post)


def run_scan(targets, discovery, jobs, common, outputs, all_basename=None, show_all=False, reason=False,
             quiet=False, max_parallelism=None, table=True, db=None, no_db=False, stats_every=None,
             resume=None, post=None) -> None:
    """Host discovery (unless skipped), then each scan job over the hosts found up, with every
    output (files, terminal, the store, progress). Output paths and the store are opened before
    the first probe; a write that fails mid-scan stops only that output, is reported at the end,
    and makes the exit code 1. Interrupted, it writes a resume file; `resume` (a ResumeState)
    goes on from one."""
    from .connect import ConnectScan
    from .engine import Scan, ScanConfig, ScanSummary, discover_hosts, install_interrupt_handler
    from .output import BackgroundSink, Outputs, ScanInfo, plan_outputs
    from .progress import Progress
    from .resume import ResumeState
    from .space import ScanSpace
    from .store import Recorder, Store
    from .targets import TargetSet

    # One seed for every stage: a resumed scan must walk the same permutations.
    common = dict(common, seed=resume.seed if resume else
                  (common["seed"] if common["seed"] is not None else int.from_bytes(os.urandom(8), "little")))
    plan = plan_outputs(outputs, all_basename)
    scaninfo = tuple((probes.slots[0][0].key if kind == "connect" else t.key, t.proto,
                      tuple(int(p) for tt, p in probes.slots if tt is t))
                     for kind, probes in jobs for t in dict.fromkeys(tt for tt, _ in probes.slots))
    first = scaninfo[0] if scaninfo else ("ping", "ip", ())
    info = ScanInfo(command=command_line(), scan_type=first[0], protocol=first[1], ports=first[2],
                    n_hosts=targets.count, scaninfo=scaninfo, assume_up=discovery is None)
    store = None if no_db else Store(db)
    outs = Outputs(plan, info, show_all=show_all, reason=reason, table=table,
                   resumed=resume.rows if resume else None, details=post is not None)
    record = scan_record_config(common, info, show_all)
    # Unanswered probes (possibly millions) are stored one by one only with --show-all.
    recorder = (Recorder(store, info, record, unanswered=show_all, scan_id=resume.scan_id if resume else None)
                if store else None)
    # Written off the capture thread; the store first: it must survive a failing output.
    sink = BackgroundSink([recorder, outs, post.collector if post else None])  # post: -sV/-O
    if post is not None and resume is not None and resume.rows is not None:
        post.collector.write(resume.rows)
    total = ScanSummary(**(resume.summary if resume else {}))
    total.interrupted = False
    stages = ([("discovery", discovery)] if discovery is not None else []) + list(jobs)
    at = {"stage": resume.stage if resume else 0, "scan": None, "started": False}

    def run(scan, consumer, count_states=True):
        at["scan"] = scan
        install_interrupt_handler(scan)
        progress = Progress(scan, live=not quiet, every=stats_every)
        progress.start()
        try:
            summary = scan.run(consumer)
            at["started"] = True
        finally:
            progress.stop()
        merge_summary(total, summary, count_states)
        return summary

    if resume and resume.up is not None:
        targets = TargetSet(resume.up, resume.family)
    try:
        for number, (kind, probes) in enumerate(stages):
            if number < at["stage"] or targets is None:
                continue
            at["stage"] = number
            checkpoint = resume.checkpoint if resume and number == resume.stage else None
            # Before a port scan every shard discovers every host: its slice needs their status.
            config = ScanConfig(space=ScanSpace(targets, probes),
                                **(dict(common, shard=(1, 1)) if kind == "discovery" and jobs else common))
            if kind == "discovery":
                # With a port scan to follow, discovery rows only feed the host views ("Host is up").
                up, summary = discover_hosts(config, probes, sink if not jobs else outs.buffer.append,
                                             runner=lambda scan, consumer: run(scan, consumer, not jobs),
                                             resume=checkpoint)
                if not quiet:
                    print(f"scanner: host discovery: {up.count if up else 0} of {targets.count} hosts up "
                          f"({summary.elapsed:.2f}s)", file=sys.stderr)
                if not summary.interrupted:
                    targets = up
            else:
                scan = (ConnectScan(config, max_parallelism, resume=checkpoint) if kind == "connect"
                        else Scan(config, checkpoint))
                summary = run(scan, sink)
                if not quiet:
                    print(summary_line(config, summary), file=sys.stderr)
            if summary.interrupted:
                break
        if post is not None and not total.interrupted:
            sink.close()                 # every row in: then -sV / -O
            if post.os_detect and os.geteuid() == 0:
                os_probe(post, targets, common)
            post.run(outs, recorder, quiet, stats_every)
            total.elapsed += post.elapsed
    except InputError:
        if recorder and not at["started"] and not resume:   # refused before sending: nothing to record
            store.discard(recorder.scan_id)
            recorder = None
        raise
    finally:
        try:
            sink.close()
        finally:
            outs.close(total)
            if recorder:
                recorder.close(total)
            if store:
                store.close()
    if total.interrupted:
        up = targets.ranges() if targets is not None and at["stage"] > 0 else None
        state = ResumeState(list(_ARGV or []), common["seed"], at["stage"], at["scan"].checkpoint(), up,
                            targets.family if targets is not None else 4, outs.buffer.rows(),
                            dataclasses.asdict(total), recorder.scan_id if recorder else None)
        print(f"scanner: scan interrupted; results so far are written. Resume with: "
              f"scanner --resume {state.save()}", file=sys.stderr)
    elif resume and os.path.exists(resume.path):
        os.remove(resume.path)           # done: the resume file has served
    problems = outs.errors()
    kept = (f" (all results are kept in the store: scanner show {recorder.scan_id}"
            f"{' --db ' + str(db) if db else ''})") if recorder and not recorder.error else ""
    for problem in problems:
        print(f"scanner: error: {problem}{kept}", file=sys.stderr)
    if recorder and recorder.error:
        print(f"scanner: error: {recorder.error}", file=sys.stderr)
    if at["started"] and (problems or (recorder and recorder.error)):
        sys.exit(1)


def os_probe(post, targets, common) -> None:
    """-O's extra probe: a SYN to a (nearly always) closed port of each host that has an open
    port but showed no RST, whose reply goes to the OS guess only, not to the port results."""
    from .engine import Scan, ScanConfig
    from .osguess import CLOSED_PROBE_PORT, hosts_without_rst
    from .space import ScanSpace
    from .targets import TargetSet
    from .techniques import SYN_SCAN, Probes
    hosts = hosts_without_rst(post.collector.rows())
    if not hosts or targets is None:
        return
    probe_targets = TargetSet([(int(ipaddress.ip_address(a)),) * 2 for a in hosts], targets.family)
    space = ScanSpace(probe_targets, Probes.ports(SYN_SCAN, [CLOSED_PROBE_PORT]))
    Scan(ScanConfig(space=space, **dict(common, shard=(1, 1), list_unanswered=False))).run(post.collector.write)


def merge_summary(total, summary, count_states=True) -> None:
    """Adds one scan's summary to the command's (what the store and the output footers see);
    host discovery before a port scan adds its time and packets, not its states."""
    for name in ("probes", "sent", "replies", "duplicates", "bad_cookie", "elapsed", "sending"):
        setattr(total, name, getattr(total, name) + getattr(summary, name))
    total.interrupted |= summary.interrupted
    for state, n in (summary.states.items() if count_states else ()):
        total.states[state] = total.states.get(state, 0) + n


_ARGV: Optional[List[str]] = None
_RESUME = None          # the ResumeState of `scanner --resume FILE`


def command_line() -> str:
    """The command as the user typed it, for output headers and the store."""
    import shlex
    argv = _ARGV if _ARGV is not None else sys.argv[1:]
    return " ".join(["scanner", *map(shlex.quote, argv)])


def scan_record_config(common, info, show_all) -> dict:
    """What the store keeps of a scan's configuration (JSON)."""
    from .output import port_ranges
    return {"scan_type": info.scan_type, "protocol": info.protocol, "ports": port_ranges(info.ports),
            "scans": [[kind, proto, port_ranges(ports)] for kind, proto, ports in info.scaninfo],
            "n_hosts": info.n_hosts, "rate": common["rate"], "retries": common["retries"],
            "wait": common["wait"], "seed": common["seed"], "shard": list(common["shard"]),
            "interface": common["interface"], "show_all": show_all, "version": info.version}


def summary_line(config, summary) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.states.items()))
    pps = summary.sent / summary.sending if summary.sending else 0
    line = (f"scanner: {config.space.n_hosts} hosts x {config.space.n_slots} ports"
            f"{' (interrupted)' if summary.interrupted else ''}: {counts or 'no results'}; "
            f"{summary.sent} probes sent in {summary.elapsed:.2f}s ({pps:,.0f}/s while sending)")
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
    services, os_guesses = store.details(record.id)        # -sV / -O results, if any
    writer = make_writer(FORMATS[fmt], out, scan_info(record), show_all=show_all, reason=reason,
                         details=bool(services or os_guesses))
    writer.set_details(services, os_guesses)
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


def nmap_style_args(argv: List[str]) -> List[str]:
    """nmap glues port lists to some options (-PS22,80): split them for the option parser."""
    out = []
    for arg in argv:
        m = re.fullmatch(r"-P([SAU])(.*)", arg)
        out += [f"-P{m.group(1)}", m.group(2)] if m else [arg]
    return out


def main(argv: Optional[List[str]] = None) -> None:
    global _ARGV, _RESUME
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["--resume"]:
            # The interrupted command again, with its state: nothing else may change.
            from .resume import ResumeState
            if len(argv) != 2:
                raise InputError("--resume takes the resume file and nothing else: scanner --resume FILE")
            _RESUME = ResumeState.load(argv[1])
            argv = _RESUME.argv
        _ARGV = list(argv)
        argv = nmap_style_args(argv)
        sub = argv[0] if argv[:1] and argv[0] in SUBCOMMANDS else None
        app, args = (SUBCOMMANDS[sub], argv[1:]) if sub else (scan_app, argv)
        command = typer.main.get_command(app)
        code = command.main(args, prog_name=f"scanner {sub}" if sub else "scanner", standalone_mode=False)
        if isinstance(code, int) and code:       # typer.Exit(code) comes back as a return value here
            sys.exit(code)
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
