"""A Session runs one ScanRequest: host discovery, then the raw and connect port scans, the extra
-O probe and -sV, with every output and the result store, telling its caller what happens through
events. It prints nothing and installs no signal handler: the CLI, the web GUI, the cluster
coordinator and Python users are all clients of this one class.

    session = Session(request, on_event=print)     # plans the scan: InputError on bad input
    result = session.run()                         # in this thread; stop() from any other
    if result.interrupted:
        Session(request, resume=session.checkpoint()).run()
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np

from . import events as ev
from .errors import EnvironmentFault, InputError, ScannerError
from .privileges import can_raw_scan
from .request import SCTP_SCAN_FLAG, ScanRequest
from .states import REASONS, RESULT_DTYPE, STATES

# Above this many target addresses the terminal shows a line per open port as found, not a table.
TABLE_UP_TO_HOSTS = 4096
PROGRESS_TICK = 0.25


@dataclass
class ScanResult:
    """What a finished (or interrupted) session found."""
    array: np.ndarray                       # RESULT_DTYPE rows, as the engine produced them
    summary: Any                            # engine.ScanSummary over every stage
    scan_id: Optional[int] = None           # the store's record (None with no_db)
    services: dict = field(default_factory=dict)     # -sV: {(addr, proto, port): ServiceInfo}
    os_guesses: dict = field(default_factory=dict)   # -O: {addr: OsGuess}
    errors: List[str] = field(default_factory=list)  # outputs or the store that failed mid-scan
    store_kept: str = ""                    # where the results are kept when an output failed
    failure: Optional[str] = None           # why the scan stopped early, if a fault stopped it
    traces: dict = field(default_factory=dict)       # --traceroute: {addr: traceroute.Trace}

    @property
    def interrupted(self) -> bool:
        return bool(self.summary.interrupted)

    def rows(self) -> list:
        """One dict per result with exactly the NDJSON keys (ip, port, proto, state, reason,
        ttl; service and os when -sV/-O found them)."""
        from .output import NdjsonWriter, rows_to_dicts
        details = NdjsonWriter.details_of
        return [details(d, self.services, self.os_guesses) for d in rows_to_dicts(self.array)]

    def hosts(self) -> list:
        """The addresses that answered anything (or were assumed up), in order."""
        from .states import addresses, host_keys
        rows = self.array[np.argsort(host_keys(self.array), kind="stable")]
        return list(dict.fromkeys(addresses(rows)))

    def to_pandas(self):
        """rows() as a pandas DataFrame (pandas is an optional extra: pip install 'scanner[pandas]')."""
        try:
            import pandas as pd
        except ImportError:
            raise InputError("to_pandas() needs pandas: pip install 'scanner[pandas]'") from None
        return pd.DataFrame(self.rows(), columns=None if len(self.array) else
                            ["ip", "port", "proto", "state", "reason", "ttl"])


class Session:
    def __init__(self, request: ScanRequest, on_event: Optional[Callable] = None, resume=None,
                 keep_rows: Optional[bool] = True):
        """Plans the scan (targets resolved, ports and probes chosen, every check that can fail
        before the first probe): raises InputError. resume: a Checkpoint of this request.
        keep_rows: keep every result in memory for ScanResult.array (False for huge scans; None:
        only for scans small enough for the terminal's table, which a resumed run must redraw)."""
        if resume is not None and resume.request != request:
            raise InputError("the checkpoint belongs to another scan request")
        self.request = request
        self.resume = resume
        self._on_event = on_event
        self._emit_lock = threading.Lock()
        self._stopped = threading.Event()
        self._current: Any = None         # the running stage's scan (stop() reaches it)
        self._checkpoint: Any = None
        self.scan_id: Optional[int] = None
        self.notes: List[str] = []
        self._plan()
        self.keep_rows = self.table if keep_rows is None else keep_rows

    # -- planning: the request made concrete
    def _plan(self) -> None:
        from .ports import port_lists
        from .targets import TargetSet
        from .techniques import SYN_SCAN, TCP_TECHNIQUES, UDP_SCAN, Probes, parse_scanflags, with_flags
        r = self.request
        from .timing import Timing
        self.timing = Timing.from_request(r)
        if r.list_scan:         # -sL: the targets are the whole plan
            self.targets = TargetSet.from_specs(list(r.targets), list(r.exclude), r.input_file, r.exclude_file,
                                                r.ipv6)
            self.discovery: Any = None
            self.jobs, self.post, self.table = [], None, False
            self.output_plan, self.grouped, self.seed = [], False, 0
            self.silent_made_late = False
            self.common: Dict[str, Any] = {}
            return
        root = can_raw_scan()               # root, or a user granted CAP_NET_RAW: not the uid
        technique: Any = TCP_TECHNIQUES[f"-s{_letter(r.tcp_scan)}"] if r.tcp_scan else None
        no_ping = r.no_ping
        # With --cluster the workers send (as root); this machine only coordinates.
        root = root or r.cluster is not None
        from .protocols.sctp import TECHNIQUES as SCTP_TECHNIQUES
        sctp: Any = SCTP_TECHNIQUES[SCTP_SCAN_FLAG[r.sctp_scan]] if r.sctp_scan else None
        if technique is None and not r.udp and not r.ping_only and sctp is None and not r.ip_scan:
            technique = SYN_SCAN if root or r.dry_run else TCP_TECHNIQUES["-sT"]
            if technique.key == "connect":
                no_ping = True
                self.notes.append("not running as root: using the TCP connect scan (-sT), without host discovery")
        if r.scanflags is not None:
            if technique is None or not technique.raw:
                raise InputError("--scanflags needs a raw TCP scan (-sS, -sA, ...)")
            technique = with_flags(technique, parse_scanflags(r.scanflags))
        raw = r.ping_only or r.udp or sctp is not None or r.ip_scan or (technique is not None and technique.raw) or not no_ping
        if raw and not root and not r.dry_run:
            chosen = [f"-s{_letter(r.tcp_scan)}"] if r.tcp_scan else []
            chosen += ([sctp.flag] if sctp is not None else []) + ["-sO"] * r.ip_scan
            wanted = " ".join(chosen + ["-sU"] * r.udp + ["-sn"] * r.ping_only) or \
                "host discovery (use -Pn to skip it)"
            raise InputError(f"{wanted} sends raw packets and needs root (or CAP_NET_RAW): run as root, "
                             "or use -sT")
        targets = TargetSet.from_specs(list(r.targets), list(r.exclude), r.input_file, r.exclude_file, r.ipv6,
                                       default_exclude=not r.no_default_exclude)
        if r.ip_scan and targets.family == 6:
            raise InputError("-sO (IP protocol scan) is for IPv4 targets in scanner")
        note = targets.special_note()
        if note:
            self.notes.append(note)
        top = 100 if r.fast else r.top_ports
        if r.ip_scan:
            from .protocols import ipproto
            lists: Any = ((), (), ())
        else:
            lists = port_lists(r.ports, top, tcp=technique is not None, udp=r.udp, sctp=sctp is not None)
        tcp_ports, udp_ports = lists[0], lists[1]
        sctp_ports = lists[2] if sctp is not None else ()
        self.discovery = None if no_ping else discovery_probes(r, targets.family, on_local_link(targets))
        jobs = []
        if r.ip_scan:
            jobs.append(("raw", Probes([(ipproto.IP_PROTO_SCAN, int(p)) for p in ipproto.protocols(r.ports)])))
        elif not r.ping_only:
            if technique is not None and not technique.raw:
                jobs.append(("connect", Probes.ports(technique, tcp_ports)))
                if r.udp or sctp is not None:
                    jobs.append(("raw", Probes.ports(UDP_SCAN, (), udp_ports, sctp, sctp_ports)))
            else:
                jobs.append(("raw", Probes.ports(technique, tcp_ports if technique else (), udp_ports, sctp,
                                                 sctp_ports)))
        if r.source_port and any(kind == "connect" for kind, _ in jobs):
            raise InputError("-g (a fixed source port) is for raw scans: the connect scan's ports are the kernel's")
        for _, probes in jobs:
            probes.shaped(r.ttl, r.data_length, r.source_port)
        if self.discovery is not None:
            self.discovery.shaped(r.ttl, r.data_length, r.source_port)
        self.targets, self.jobs = targets, jobs
        from .output import plan_outputs
        self.output_plan = plan_outputs(r.outputs, r.all_out)
        self.grouped = any(opt in ("-oN", "-oX", "-oG") for opt, _ in self.output_plan)
        self.table = targets.count <= TABLE_UP_TO_HOSTS
        seed = self.resume.seed if self.resume else r.seed
        # One seed for every stage: a resumed scan must walk the same permutations.
        self.seed = seed if seed is not None else int.from_bytes(os.urandom(8), "little")
        # -Pn into nmap's formats, a big raw scan: the hosts that never answered are made one at a
        # time when the outputs are written (silent_rows), not held as a row per probe.
        self.silent_made_late = bool(self.grouped and not r.show_all and not self.table and self.discovery is None
                                     and r.shard == (1, 1) and [kind for kind, _ in jobs] == ["raw"])
        t = self.timing
        self.common = dict(
            rate=t.rate, retries=t.retries, wait=t.wait or 0.0, seed=self.seed, shard=r.shard,
            interface=r.interface, udp_rounds=r.max_udp_rounds, timing=t, sequential=r.sequential,
            trace=self._trace if r.packet_trace else None, send_path=r.send_path,
            # Unanswered probes are listed for the per-host views and --show-all.
            list_unanswered=bool(r.show_all or self.grouped or self.table),
            list_silent=not self.silent_made_late)
        from .engine import ScanConfig, too_many_probes
        from .space import ScanSpace
        first_probes: Any = self.discovery if r.ping_only else jobs[0][1]
        self._first_config = ScanConfig(space=ScanSpace(targets, first_probes), **self.common)
        if self.discovery is not None and jobs:
            # Host discovery before a port scan covers every target, whatever the shard.
            try:
                too_many_probes(ScanConfig(space=ScanSpace(targets, self.discovery), **dict(self.common, shard=(1, 1))))
            except InputError:
                raise InputError(f"host discovery of {targets.count} addresses before a port scan is more than "
                                 "one machine's bitmap holds: skip it with -Pn, as masscan and zmap do") from None
        self.post = None
        scripts = r.script_scan or bool(r.scripts)          # scripts run inside -sV: they turn it on
        if (r.version_scan or r.os_scan or scripts) and not r.ping_only and not r.dry_run:
            from .service import PostScan
            self.post = PostScan(r.version_scan or scripts, r.os_scan, r.version_intensity, r.service_db,
                                 concurrency=r.max_parallelism or 128, os_db=r.os_db)
            if scripts:
                from .service.scripts import named, parse_args, select
                self.post.scripts = select(r.scripts, default=r.script_scan, versions=r.version_scan)
                self.post.script_named = named(r.scripts)
                self.post.script_args = parse_args(r.script_args)
            self.post.verbose = r.verbose
            self.post.os_limit, self.post.os_guess_more = r.osscan_limit, r.osscan_guess
            self.post.udp_scanned = r.udp

    # -- control
    def stop(self) -> None:
        """Stop sending (any thread): replies on their way are still collected and every result
        received is kept; the session then ends with an interrupted result and a checkpoint."""
        self._stopped.set()
        current = self._current
        if current is not None:
            current.stop()

    @property
    def stopping(self) -> bool:
        return self._stopped.is_set()

    def checkpoint(self):
        """After an interrupted run(): the Checkpoint a new Session resumes from (else None)."""
        return self._checkpoint

    def _trace(self, direction: str, elapsed: float, text: str) -> None:
        self.emit(ev.Packet(direction, elapsed, text))

    def emit(self, event) -> None:
        if self._on_event is not None:
            with self._emit_lock:
                self._on_event(event)

    # -- running
    def run(self) -> ScanResult:
        from .engine import ScanSummary
        r = self.request
        for note in self.notes:
            self.emit(ev.Note(note))
        if r.list_scan:
            return self._list_targets()
        if r.dry_run:
            # Every stage the real run would send, in its order: host discovery first.
            from .engine import ScanConfig
            from .space import ScanSpace
            stages = ([self.discovery] if self.discovery is not None else []) + [p for _, p in self.jobs]
            for probes in stages:
                config = ScanConfig(space=ScanSpace(self.targets, probes), **self.common)
                for text in dry_run_lines(config):
                    self.emit(ev.DryRun(text))
            result = ScanResult(np.zeros(0, dtype=RESULT_DTYPE), ScanSummary())
            self.emit(ev.Finished(result))
            return result
        return _Run(self).execute()


    def _list_targets(self) -> ScanResult:
        """-sL: each target as nmap lists it, nothing sent (names only with -R: nmap's -sL looks
        every address up, scanner never does so unasked)."""
        from .engine import ScanSummary
        began = time.monotonic()
        t = self.targets
        self.emit(ev.ScanStarted(None, self.request.command_line()))
        ranges = t.ranges()
        for lo, hi in ranges:
            for first in range(lo, hi + 1, 4096):
                addrs = [t.address(a) for a in range(first, min(hi, first + 4095) + 1)]
                names = reverse_names(addrs) if self.request.reverse_dns else {}
                self.emit(ev.Listed("".join(f"Nmap scan report for {names[a]} ({a})\n" if a in names
                                            else f"Nmap scan report for {a}\n" for a in addrs)))
                if self.stopping:
                    break
        summary = ScanSummary(elapsed=time.monotonic() - began)
        self.emit(ev.Listed(f"Nmap done: {t.count} IP address{'es' if t.count != 1 else ''} (0 hosts up) "
                            f"scanned in {summary.elapsed:.2f} seconds\n"))
        result = ScanResult(np.zeros(0, dtype=RESULT_DTYPE), summary)
        self.emit(ev.Finished(result))
        return result


def reverse_names(addrs, workers: int = 16, timeout: float = 5.0) -> dict:
    """-R: {address: name} of those that have a reverse DNS name (PTR), looked up in parallel."""
    import socket
    from concurrent.futures import ThreadPoolExecutor, wait

    def lookup(addr):
        try:
            return addr, socket.gethostbyaddr(addr)[0]
        except (OSError, UnicodeError):
            return addr, None
    pool = ThreadPoolExecutor(max_workers=workers)
    futures = [pool.submit(lookup, a) for a in addrs]
    done, _ = wait(futures, timeout=timeout)
    pool.shutdown(wait=False, cancel_futures=True)
    return {addr: name for addr, name in (f.result() for f in done) if name}


class _Run:
    """One run of a session: the outputs, the store and the stages, wired together. (Apart from
    Session so that a Session holds only its plan and its controls.)"""

    def __init__(self, session: Session):
        self.s = session

    def execute(self) -> ScanResult:
        from .engine import ScanSummary
        from .output import BackgroundSink, Outputs, RowBuffer
        s, r, resume = self.s, self.s.request, self.s.resume
        info = scan_info(s)
        if not r.no_db:
            from .store import Recorder, Store
        store = None if r.no_db else Store(r.db)
        outs = recorder = None
        try:
            outs = Outputs(s.output_plan, info, show_all=r.show_all, reason=r.reason,
                           resumed=resume.rows if resume else None, details=s.post is not None,
                           append_output=r.append_output)
            recorder = (Recorder(store, info, record_config(s, info), unanswered=r.show_all,
                                 scan_id=resume.scan_id if resume else None) if store else None)
        except BaseException:
            if outs is not None:
                outs.close(None)
            if store is not None:
                store.close()
            raise
        s.scan_id = recorder.scan_id if recorder else None
        kept = RowBuffer() if s.keep_rows else None
        kept_up = RowBuffer()           # discovery's "up" rows when a port scan follows (checkpoints)
        if kept is not None and resume is not None:
            discovered = (resume.rows["state"] == STATES["up"]) if s.jobs else np.zeros(len(resume.rows), bool)
            kept.append(resume.rows[~discovered])
            kept_up.append(resume.rows[discovered])
        events = _EventConsumer(s)
        # Written off the capture thread; the store first: it must survive a failing output.
        post = s.post
        answered = _Answered() if r.reverse_dns else None
        traced = None
        if r.traceroute and not r.dry_run:
            from .traceroute import TraceCollector
            traced = TraceCollector()
        traces: dict = {}               # --traceroute's, once the scan is done
        shown: List[Any] = [outs, events]
        if r.open_only:             # --open: every output and the events list open ports only
            shown = [_OpenOnly(c) for c in shown]
        sink = BackgroundSink([recorder, *shown, post.collector if post else None, kept, answered, traced])
        if post is not None and resume is not None:
            post.collector.write(resume.rows)
        if traced is not None and resume is not None:
            traced.write(resume.rows)       # hosts the interrupted run found are traced too
        total = ScanSummary(**(resume.summary if resume else {}))
        total.interrupted, total.error = False, None     # this run's own ending decides
        stages = ([("discovery", s.discovery)] if s.discovery is not None else []) + list(s.jobs)
        at: Dict[str, Any] = {"stage": resume.stage if resume else 0, "scan": None, "started": False}
        targets = s.targets
        if resume and resume.up is not None:
            from .targets import TargetSet
            targets = TargetSet(resume.up, resume.family)
        s.emit(ev.ScanStarted(s.scan_id, info.command))
        if resume is not None and len(resume.rows):
            up = resume.rows["port"] == 0
            if up.any():
                s.emit(ev.HostsUp(resume.rows[up], replayed=True))
            if (~up).any():
                s.emit(ev.PortResults(resume.rows[~up], replayed=True))

        def run_stage(name, scan, consumer, count_states=True):
            at["scan"], at["count_states"] = scan, count_states
            s._current = scan
            if s.stopping:
                scan.stop()
            s.emit(ev.StageStarted(name, scan.space.n_hosts, scan.space.size))
            if r.debug:
                s.emit(ev.Debug(s.timing.describe()))
            ticker = _Ticker(s, name, scan.progress)
            try:
                summary = scan.run(consumer)
                at["started"] = True
            finally:
                ticker.stop()
                s._current = None
            window = getattr(scan, "window", None)
            if r.debug and window is not None:
                w = window.snapshot()
                s.emit(ev.Debug(f"{name}: window ended at {w['window']}, {w['losses']} back-offs on loss; "
                                f"srtt {(w['srtt'] or 0) * 1000:.2f} ms, probe timeout {w['timeout'] * 1000:.0f} ms"))
            merge_summary(total, summary, count_states)
            return summary

        try:
            from .connect import ConnectScan
            from .engine import Scan, ScanConfig, discover_hosts
            from .space import ScanSpace
            engine: Any = Scan
            if r.cluster is not None:        # the raw stages run on the cluster's workers
                from .cluster.coordinator import engine_for
                engine = engine_for(r.cluster, lambda text: s.emit(ev.Note(text)))
            for number, (kind, probes) in enumerate(stages):
                if number < at["stage"] or targets is None:
                    continue
                at["stage"] = number
                checkpoint = resume.stage_checkpoint if resume and number == resume.stage else None
                # Before a port scan every shard discovers every host: its slice needs their status.
                config = ScanConfig(space=ScanSpace(targets, probes),
                                    **(dict(s.common, shard=(1, 1)) if kind == "discovery" and s.jobs
                                       else s.common))
                if kind == "discovery":
                    # With a port scan to follow, discovery rows only feed the host views.
                    up_sink = sink if not s.jobs else _HostsUpSink(s, outs, kept_up if kept else None,
                                                                    answered, traced)
                    up, summary = discover_hosts(
                        config, probes, up_sink,
                        runner=lambda scan, consumer: run_stage("discovery", scan, consumer, not s.jobs),
                        resume=checkpoint, engine=engine)
                    s.emit(ev.StageEnded("discovery", summary, targets.count, probes.n_slots,
                                         up=up.count if up else 0))
                    if not summary.interrupted:
                        targets = up
                else:
                    scan: Any = (ConnectScan(config, r.max_parallelism, resume=checkpoint) if kind == "connect"
                                 else engine(config, checkpoint))
                    summary = run_stage(kind, scan, sink)
                    if getattr(scan, "timed_out", False):
                        s.emit(ev.Warning(f"--host-timeout: gave up after {s.timing.host_timeout:g}s; "
                                          "ports not answered by then are not reported"))
                    s.emit(ev.StageEnded(kind, summary, config.space.n_hosts, config.space.n_slots))
                    if s.silent_made_late and not summary.interrupted:
                        heard = scan.answered_hosts()
                        outs.set_more_hosts(lambda scan=scan, heard=heard: scan.silent_rows(heard))
                if summary.interrupted:
                    break
            if post is not None and not total.interrupted:
                sink.close()                 # every row in: then -sV / -O
                if post.os_detect and can_raw_scan() and not post.os_limit and (
                        post.os_db_path is None or getattr(targets, "family", 4) == 6):   # nmap-os-db: IPv4 only
                    os_probe(s, post, targets)
                post.run(s, outs, recorder)
                total.elapsed += post.elapsed
            if traced is not None and not total.interrupted and targets is not None:
                sink.close()                 # every row in: then the traces
                from .traceroute import run_traceroute
                traces = run_traceroute(s, traced, targets.family)
                outs.set_details(traces=traces)
                if recorder:
                    recorder.set_traces(traces)
                s.emit(ev.Details(None, None, None, traces=traces))
            if answered is not None and not total.interrupted:
                sink.close()
                names = reverse_names(sorted(answered.addresses))
                outs.set_details(names=names)
                s.emit(ev.Details(None, None, names))
        except (ScannerError, OSError) as e:
            failing = at["scan"]
            if not (at["started"] or (failing is not None and failing.progress().get("sent", 0))):
                if recorder and not resume:      # refused before sending: nothing to record
                    store.discard(recorder.scan_id)   # type: ignore[union-attr]
                    recorder = None
                    s.scan_id = None
                if isinstance(e, OSError):
                    raise EnvironmentFault(fault_text(e)) from None
                raise
            # A fault mid-scan (interface down, network gone, ...): every result received is kept,
            # the outputs and the store say the scan failed, and a checkpoint is left to resume.
            if failing is not None and failing.summary is not None:
                merge_summary(total, failing.summary, at.get("count_states", True))
            total.interrupted, total.error = True, fault_text(e)
        finally:
            if "scanner.capture" in sys.modules:
                sys.modules["scanner.capture"].close_idle()
            try:
                sink.close()
            finally:
                outs.close(total)
                if recorder:
                    recorder.close(total)
                if store:
                    store.close()
        if total.interrupted and at["scan"] is not None:
            from .resume import Checkpoint
            up_ranges = targets.ranges() if targets is not None and at["stage"] > 0 else None
            # What the outputs and the result already hold, for the resumed session to go on from.
            if outs.buffered:
                held = outs.buffer.rows()
            elif kept is not None:
                held = np.concatenate([kept_up.rows(), kept.rows()])
            elif post is not None:          # what -sV/-O will need once the port scan is done
                held = post.collector.rows()
            else:
                held = outs.buffer.rows()
            s._checkpoint = Checkpoint(r, s.seed, at["stage"], at["scan"].checkpoint(), up_ranges,
                                       targets.family if targets is not None else 4, held,
                                       dataclasses.asdict(total), recorder.scan_id if recorder else None)
        errors = outs.errors() + ([recorder.error] if recorder and recorder.error else [])
        kept_in = (f"scanner show {recorder.scan_id}{' --db ' + str(r.db) if r.db else ''}"
                   if recorder and not recorder.error else "")
        array = kept.rows() if kept is not None else np.zeros(0, dtype=RESULT_DTYPE)
        result = ScanResult(array, total, s.scan_id, post.services if post else {},
                            post.os_guesses if post else {}, errors, kept_in, total.error, traces=traces)
        s.emit(ev.Finished(result))
        return result


class _EventConsumer:
    """A sink consumer that turns each batch into a PortResults event (on the outputs thread)."""
    grouped = False
    error = None

    def __init__(self, session: Session):
        self.session = session

    def write(self, rows) -> None:
        if len(rows):
            self.session.emit(ev.PortResults(rows))

    def close(self, summary=None) -> None:
        pass


class _OpenOnly:
    """--open: a consumer that only sees open (or open|filtered) ports."""
    grouped = False

    def __init__(self, consumer):
        self.consumer = consumer
        self.error = None

    def write(self, rows) -> None:
        state = rows["state"]
        self.consumer.write(rows[(state == STATES["open"]) | (state == STATES["open|filtered"])])

    def close(self, summary=None) -> None:
        pass


class _Answered:
    """-R: the addresses that answered anything (their names are looked up at the end)."""
    grouped = False
    error = None

    def __init__(self):
        self.addresses: set = set()

    def write(self, rows) -> None:
        from .states import addresses
        answered = rows[rows["reason"] != REASONS["no-response"]]
        if len(answered):
            self.addresses.update(addresses(answered))

    def close(self, summary=None) -> None:
        pass


class _HostsUpSink:
    """Discovery before a port scan: hosts found up go to the host views and as events
    (with --open, hosts show only through their open ports)."""

    def __init__(self, session: Session, outs, kept=None, answered=None, traced=None):
        self.session, self.outs, self.kept, self.answered = session, outs, kept, answered
        self.traced = traced        # --traceroute: hosts up by discovery alone are traced too

    def __call__(self, rows) -> None:
        if self.answered is not None:
            self.answered.write(rows)
        if self.traced is not None:
            self.traced.write(rows)
        if not self.session.request.open_only:
            self.outs.buffer.append(rows)
        if self.kept is not None:
            self.kept.append(rows)
        self.session.emit(ev.HostsUp(rows))


class _Ticker:
    """Progress events every PROGRESS_TICK seconds (or --stats-every, if shorter) while a stage runs."""

    def __init__(self, session: Session, stage: str, snapshot: Callable[[], dict]):
        self.session, self.stage, self.snapshot = session, stage, snapshot
        every = session.request.stats_every
        self.tick = min(PROGRESS_TICK, every) if every else PROGRESS_TICK
        self.began = time.monotonic()
        self._stop = threading.Event()
        self._thread = None
        if session._on_event is not None:
            self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            self.session.emit(ev.Progress(self.stage, self.snapshot(), time.monotonic() - self.began))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


# ---------------------------------------------------------------- helpers of planning and running

def _letter(key: str) -> str:
    from .request import TCP_SCAN_FLAG
    return TCP_SCAN_FLAG[key][2]


def on_local_link(targets) -> bool:
    """Whether IPv4 targets are neighbours on an Ethernet link (nmap then pings with ARP)."""
    from . import netinfo
    if targets.family != 4:
        return False
    try:
        return netinfo.route_to(targets.address(targets.ranges()[0][0])).on_link
    except ScannerError:
        return False         # no route: the scan itself will say so


def discovery_probes(r: ScanRequest, family: int = 4, local_link: bool = False):
    """nmap's -PE -PP -PS -PA -PU -PR as probes; nmap's default set when none is chosen (ARP
    alone on the local link; no timestamp request for IPv6, which has none)."""
    from .ports import port_lists
    from .techniques import DEFAULT_DISCOVERY, DISCOVERY, DISCOVERY_DEFAULT_PORTS, LOCAL_LINK_DISCOVERY, Probes
    chosen = [("PE", 0)] * r.ping_echo + [("PP", 0)] * r.ping_timestamp + [("PR", 0)] * r.ping_arp
    for key, ports in (("PS", r.ping_syn), ("PA", r.ping_ack), ("PU", r.ping_udp)):
        if ports is not None:
            tcp, udp_ports = port_lists(ports or str(DISCOVERY_DEFAULT_PORTS[key]), None,
                                        tcp=key != "PU", udp=key == "PU")
            chosen += [(key, int(p)) for p in (udp_ports if key == "PU" else tcp)]
    default = [(key, port) for key, port in (LOCAL_LINK_DISCOVERY if local_link else DEFAULT_DISCOVERY)
               if family == 4 or key != "PP"]
    return Probes([(DISCOVERY[key], port) for key, port in (chosen or default)])


SUFFIXES = {17: "/udp", 132: "/sctp", 255: "/ip"}     # dry-run lines: a row's proto -> after its port


def dry_run_lines(config) -> Iterator[str]:
    """The probes a scan would send, in the order it would send them, a chunk of lines at a time:
    "address port", with "/udp", "/sctp" after UDP and SCTP ports, "/ip" after -sO's protocols,
    and the probe's name for discovery ones."""
    from .states import addresses
    space = config.space
    names = [f"{t.flag}{port or ''}" if t.flag.startswith("-P") else "" for t, port in space.probes.slots]
    for indices in config.indices():
        rows = space.rows(indices)
        _, slots = space.locate(indices)
        yield "".join(
            f"{addr} {names[slot] or port}{SUFFIXES.get(proto, '')}\n"
            for addr, port, proto, slot in zip(addresses(rows), rows["port"].tolist(),
                                               rows["proto"].tolist(), slots.tolist()))


def scan_info(s: Session):
    """What the output headers say about the session's scan."""
    from .output import ScanInfo
    def ports_of(probes, t) -> tuple:
        kinds = [k for k, (tt, *_) in enumerate(probes.kinds) if tt is t]
        return tuple(probes.slot_port[np.isin(probes.slot_kind, kinds)].tolist())
    scaninfo = tuple((probes.kinds[0][0].key if kind == "connect" else t.key, t.proto, ports_of(probes, t))
                     for kind, probes in s.jobs for t in dict.fromkeys(tt for tt, *_ in probes.kinds))
    first = scaninfo[0] if scaninfo else ("ping", "ip", ())
    return ScanInfo(command=s.request.command_line(), scan_type=first[0], protocol=first[1], ports=first[2],
                    n_hosts=s.targets.count, scaninfo=scaninfo, assume_up=s.discovery is None)


def record_config(s: Session, info) -> dict:
    """What the store keeps of a scan's configuration (JSON)."""
    from .output import port_ranges
    c = s.common
    return {"scan_type": info.scan_type, "protocol": info.protocol, "ports": port_ranges(info.ports),
            "scans": [[kind, proto, port_ranges(ports)] for kind, proto, ports in info.scaninfo],
            "n_hosts": info.n_hosts, "rate": c["rate"], "retries": c["retries"],
            "wait": c["wait"], "seed": c["seed"], "shard": list(c["shard"]),
            "interface": c["interface"], "show_all": s.request.show_all, "version": info.version,
            "request": s.request.to_json()}


def fault_text(e: BaseException) -> str:
    """One line for a fault: an OSError's own words (the sender's "sending probes failed: ...")."""
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def merge_summary(total, summary, count_states=True) -> None:
    """Adds one stage's summary to the scan's (what the store and the output footers see);
    host discovery before a port scan adds its time and packets, not its states."""
    for name in ("probes", "sent", "replies", "duplicates", "bad_cookie", "suspected_forgeries", "elapsed",
                 "sending"):
        setattr(total, name, getattr(total, name) + getattr(summary, name))
    total.interrupted |= summary.interrupted
    for state, n in (summary.states.items() if count_states else ()):
        total.states[state] = total.states.get(state, 0) + n


def os_probe(s: Session, post, targets) -> None:
    """-O's extra probe: a SYN to a (nearly always) closed port of each host that has an open
    port but showed no RST, whose reply goes to the OS guess only, not to the port results."""
    from .engine import Scan, ScanConfig
    from .osguess import CLOSED_PROBE_PORT, hosts_without_rst
    from .space import ScanSpace
    from .targets import TargetSet
    from .techniques import SYN_SCAN, Probes
    hosts = hosts_without_rst(post.collector.rows())
    if not hosts or targets is None or s.stopping:
        return
    probe_targets = TargetSet([(int(ipaddress.ip_address(a)),) * 2 for a in hosts], targets.family)
    space = ScanSpace(probe_targets, Probes.ports(SYN_SCAN, [CLOSED_PROBE_PORT]))
    scan = Scan(ScanConfig(space=space, **dict(s.common, shard=(1, 1), list_unanswered=False)))
    s._current = scan
    try:
        s.emit(ev.StageStarted("os-probe", space.n_hosts, space.size))
        summary = scan.run(post.collector.write)
        s.emit(ev.StageEnded("os-probe", summary, space.n_hosts, space.n_slots))
    finally:
        s._current = None


# ---------------------------------------------------------------- the public shortcuts

def scan(request: ScanRequest, on_event: Optional[Callable] = None) -> ScanResult:
    """Runs a scan to completion in this thread and returns its result."""
    return Session(request, on_event).run()


def stream(request: ScanRequest, resume=None) -> Iterator:
    """Yields the scan's events while it runs (the session runs in a thread); the last one is
    Finished. Leaving the loop early stops the scan. Errors of planning raise before the first
    event; an error while running is raised from the generator."""
    events: queue.SimpleQueue = queue.SimpleQueue()
    session = Session(request, events.put, resume=resume)
    failure: list = []

    def work():
        try:
            session.run()
        except BaseException as e:      # noqa: BLE001 - handed to the consumer's thread
            failure.append(e)
        finally:
            events.put(None)
    thread = threading.Thread(target=work, name="scanner-session", daemon=True)
    thread.start()
    try:
        while True:
            event = events.get()
            if event is None:
                break
            yield event
        if failure:
            raise failure[0]
    finally:
        if thread.is_alive():
            session.stop()
            thread.join()
