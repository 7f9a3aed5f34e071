"""Runs workloads: each workload's lab is built once; its variants x repetitions x tools run one
after another in it (never two tools at once: the target's kernel shares the cores)."""
from __future__ import annotations

import contextlib
from collections import Counter
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from ..lab import Lab
from ..ports import parse_ports, top_ports
from . import tools as T
from .measure import Parker, run_measured
from .workloads import SERVICE_PORTS, Workload

DROPS_RE = re.compile(r"(\d+) dropped by capture")
STATEFUL = ("scanner", "scanner-base", "nmap")     # the tools that report every port's state
ALWAYS = ("csend", "scanner-packet")    # peers that need nothing installed: they run whenever listed
CSEND_SOURCE = Path(__file__).resolve().parents[2] / "bench" / "csend.c"


class Progress:
    """A progress bar on stderr: [#####-----] done/total what."""

    def __init__(self, total: int, enabled: bool = True, width: int = 30):
        self.total, self.done, self.enabled, self.width = max(total, 1), 0, enabled, width

    def show(self, what: str) -> None:
        if self.enabled:
            filled = self.width * self.done // self.total
            bar = "#" * filled + "-" * (self.width - filled)
            sys.stderr.write(f"\r\x1b[K[{bar}] {self.done}/{self.total} {what}"[:200])
            sys.stderr.flush()

    def step(self, what: str) -> None:
        self.done += 1
        self.show(what)

    def end(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def tools_for(w: Workload, peers: list[str], baseline: Optional[Path] = None) -> list[str]:
    """The tools that run workload w, in order: scanner, the baseline checkout's scanner
    (--baseline), then its peers that were asked for (the C sender whenever the workload has it)."""
    return ["scanner", *(["scanner-base"] if baseline else []), *[p for p in w.peers if p in peers or p in ALWAYS]]


def plan(workloads: list[Workload], tools: list[str], quick: bool, repeat: int,
         baseline: Optional[Path] = None) -> list[tuple]:
    """[(workload, label, x, scan, tool)] for each run."""
    return [(w, label, x, scan, tool) for w in workloads for (label, x, scan) in w.variants(quick)
            for tool in tools_for(w, tools, baseline) for _ in range(repeat)]


def expected_open(lab: Lab, w: Workload, scan: T.Scan) -> set:
    """The (address, port) cells the lab answers as open (None: the technique has no "open")."""
    if scan.send_only or scan.technique not in ("sS", "sT", "sU"):
        return set()
    if w.servers:
        opened = set(SERVICE_PORTS)
    else:
        opened = set(lab.spec.open_udp if scan.technique == "sU" else lab.spec.open_tcp)
    return {(h, p) for h in lab.live_hosts() for p in set(scan_ports(scan)) & opened}


def scan_ports(scan: T.Scan) -> list[int]:
    proto = "udp" if scan.technique == "sU" else "tcp"
    return [int(p) for p in (top_ports(scan.top_ports, proto) if scan.top_ports else parse_ports(scan.ports))]


@contextlib.contextmanager
def servers(lab: Lab, tmp: Path):
    """nginx (80), sshd (22) and redis (6379) in the target namespace; stopped however it ends."""
    d = tmp / "servers"
    d.mkdir(exist_ok=True)
    (d / "www").mkdir(exist_ok=True)
    (d / "www" / "index.html").write_text("<html><head><title>bench</title></head><body>hi</body></html>\n")
    (d / "nginx.conf").write_text(
        f"daemon off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/nginx-error.log;\n"
        f"events {{ worker_connections 1024; }}\nhttp {{ access_log off; client_body_temp_path {d}/b; "
        f"proxy_temp_path {d}/p; fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n"
        f"  server {{ listen 80; root {d}/www; }} }}\n")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "hostkey")], check=True,
                   capture_output=True)
    (d / "sshd_config").write_text(f"Port 22\nHostKey {d}/hostkey\nPidFile {d}/sshd.pid\nUsePAM no\n"
                                   "PasswordAuthentication no\nMaxStartups 1000\n")
    Path("/run/sshd").mkdir(exist_ok=True)
    argvs = [["nginx", "-c", str(d / "nginx.conf"), "-p", str(d)],
             ["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")],
             ["redis-server", "--port", "6379", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "",
              "--appendonly", "no", "--dir", str(d), "--daemonize", "no", "--maxclients", "10000"]]
    procs = []
    try:
        for argv in argvs:
            procs.append(subprocess.Popen(["ip", "netns", "exec", lab.target_ns, *argv], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
        time.sleep(1.0)
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def build_csend(tmp: Path) -> Optional[Path]:
    if not CSEND_SOURCE.exists():
        return None
    exe = tmp / "csend"
    p = subprocess.run(["gcc", "-O2", "-o", str(exe), str(CSEND_SOURCE)], capture_output=True)
    return exe if p.returncode == 0 else None


def run_workloads(workloads: list[Workload], tools: list[str], quick: bool, repeat: int, tmp: Path,
                  progress: Progress, on_row: Callable[[dict], None] = lambda r: None,
                  baseline: Optional[Path] = None) -> tuple[list, list]:
    """(rows, notes): a row per run with its measurements and results."""
    rows: list[dict] = []
    notes: list[str] = []
    csend = build_csend(tmp) if any("csend" in w.peers for w in workloads) else None
    for w in workloads:
        with contextlib.ExitStack() as stack:
            progress.show(f"{w.name}: building the lab")
            lab = stack.enter_context(Lab(w.lab(quick)))
            # masscan's unused source address: routed back to the scanner's link (target ns only).
            lab.run_target(["ip", "route", "add", T.MASSCAN_SPARE_NET, "via", lab.scanner_addr], check=True)
            blocklist = tmp / "empty.blocklist"
            blocklist.write_text("")
            parker = Parker(lab)
            stack.callback(parker.close)
            if w.servers:
                stack.enter_context(servers(lab, tmp))
            for label, x, scan in w.variants(quick):
                expected = expected_open(lab, w, scan)
                for rep in range(repeat):
                    states: dict = {}
                    services: dict = {}
                    rep_rows = []
                    for tool in tools_for(w, tools, baseline):
                        progress.show(f"{w.name} {label} {tool} (run {rep + 1})")
                        row = run_one(lab, parker, w, label, x, scan, tool, rep, tmp, blocklist, csend,
                                      expected, states, services, baseline)
                        progress.step(f"{w.name} {label} {tool}")
                        if row is None:
                            continue
                        rows.append(row)
                        rep_rows.append(row)
                        on_row(row)
                    # agreement with nmap: the share of nmap's cells (services) where the tool says the same
                    if "nmap" in states:
                        for row in rep_rows:
                            if row["tool"] in STATEFUL and row["tool"] != "nmap" and scan.all_states and states["nmap"]:
                                mine = states[row["tool"]]
                                row["agree_nmap"] = (sum(mine.get(k) == v for k, v in states["nmap"].items())
                                                     / len(states["nmap"]))
                            if row["tool"] != "nmap" and scan.version and services.get("nmap"):
                                mine = services.get(row["tool"], {})
                                row["service_agree_nmap"] = (sum(mine.get(k) == v for k, v in services["nmap"].items())
                                                             / len(services["nmap"]))
    return rows, notes


def timeout(scan: T.Scan) -> float:
    """Seconds after which a run is stopped (SIGINT): generous, but a stuck tool must not hold the
    bench (UDP behind a rate limit and -sV are slow by nature)."""
    if scan.version or scan.technique == "sU":
        return 400.0
    return min(900.0, 60 + scan.probes * (scan.retries + 1) / 2000)


def run_one(lab: Lab, parker: Parker, w: Workload, label: str, x, scan: T.Scan, tool: str, rep: int, tmp: Path,
            blocklist: Path, csend: Optional[Path], expected: set, states: dict, services: dict,
            baseline: Optional[Path] = None) -> Optional[dict]:
    tag = f"{w.name}-{len(list(tmp.glob('*.log')))}-{tool}"
    out, log, meta = tmp / f"{tag}.out", tmp / f"{tag}.log", tmp / f"{tag}.meta"
    row: dict = {"workload": w.name, "variant": label, "x": x, "tool": tool, "rep": rep, "probes": scan.probes}
    env = None
    idle_kill = None
    cwd = None
    try:
        if tool == "scanner":
            argv, env = T.scanner_argv(scan, out), T.scanner_env()
        elif tool == "scanner-base":        # another checkout's scanner: before/after a change, one sitting
            argv, env, cwd = T.scanner_argv(scan, out), T.scanner_env(baseline), baseline
        elif tool == "scanner-packet":      # scanner's sendmmsg path, against the default (AF_XDP where it binds)
            argv, env = T.scanner_argv(scan, out, send_path="packet"), T.scanner_env()
        elif tool == "nmap":
            argv = T.nmap_argv(scan, out)
        elif tool == "masscan":
            argv = T.masscan_argv(scan, out, lab.scanner_if, lab.target_mac)
            idle_kill = max(1.0, scan.wait) + 0.5        # see measure: masscan waits for a packet
        elif tool == "zmap":
            argv = T.zmap_argv(scan, out, lab.scanner_if, lab.target_mac, blocklist, meta)
        elif tool == "csend":
            if csend is None:
                raise T.NotApplicable(f"no C sender ({CSEND_SOURCE} and gcc are needed)")
            import ipaddress
            net = ipaddress.ip_network(scan.targets)
            argv = [str(csend), lab.scanner_if, lab.target_mac, lab.scanner_mac, lab.scanner_addr,
                    str(net.network_address), str(net.prefixlen), scan.ports.split("-")[0], str(scan.port_count)]
        else:
            raise T.NotApplicable(f"unknown tool {tool}")
    except T.NotApplicable as e:
        row.update(skipped=str(e))
        return row if rep == 0 else None
    row["argv"] = argv
    row.update(run_measured(lab, parker, argv, log, env=env, idle_kill=idle_kill,
                            timeout=timeout(scan), cwd=cwd))
    text = log.read_text(errors="replace")
    if tool.startswith("scanner"):
        found, svc = T.parse_scanner(out)
        m = DROPS_RE.search(text)
        row["capture_drops"] = int(m.group(1)) if m else None
    elif tool == "nmap":
        found, svc = T.parse_nmap_xml(out)
    elif tool == "masscan":
        found, svc = T.parse_masscan(out, text)
    elif tool == "zmap":
        found, svc = T.parse_zmap(out, int(scan.ports.split(",")[0].split("-")[0]))
        row["capture_drops"] = T.zmap_drops(meta)
    else:
        found, svc = {}, {}
    states[tool], services[tool] = found, svc
    row["cpu_us_per_probe"] = row["cpu_s"] / scan.probes * 1e6 if scan.probes else None
    if found:
        row["states"] = dict(Counter(found.values()))
    if tool in STATEFUL and scan.all_states and scan.technique in ("sS", "sU") and not w.servers:
        # the lab's own model of what a SYN / UDP scan finds (Lab.expected): the ground truth
        model = lab.expected(scan_ports(scan), proto="udp" if scan.technique == "sU" else "tcp")
        row["agree_lab"] = sum(found.get(k) == v[0] for k, v in model.items()) / len(model)
    if expected and tool != "csend":
        opened = {k for k, v in found.items() if v == "open"}
        row["found"] = len(opened & expected)
        row["expected"] = len(expected)
        row["coverage"] = row["found"] / len(expected)
        row["false_pos"] = len(opened - expected)
    if row["rc"] != 0 or row["killed"] not in ("", "poked"):
        row["note"] = f"exit {row['rc']}{', ' + row['killed'] if row['killed'] else ''}: {text.strip()[-300:]}"
    return row
