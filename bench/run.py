"""Benchmarks scanner against zmap, masscan and a bare C sendmmsg loop, in the namespace lab.

    python bench/run.py [--quick]

1. sweep: a /16 with one host in 16 up (port 80 open), SYN-scanned on port 80 at several rates by
   scanner, zmap and masscan, one after another in the same lab. Per run: wall time, packets/s
   actually sent, hosts found / expected, false positives, CPU seconds of the tool process and
   CPU per probe, pcap drops (scanner).
2. sendpath: the same /16 x 16 ports (1M probes) at unlimited rate into a target that drops
   everything at netdev ingress: the send path alone, with bench/csend.c as the ceiling.

Every tool runs inside the lab's scanner namespace (Lab.popen -> ip netns exec); the lab is torn
down on any failure. Prints a markdown table, writes bench/results/<timestamp>.json.

How things are measured (the same way for every tool):
- packets sent and the send phase: a sampler thread reads the scanner veth's tx packet counter
  from /proc/<pid>/net/dev of an idle process parked in the scanner namespace, every 2 ms; the
  send phase runs from the last sample before the counter first moved to the last sample at which
  it moved; pps = packets / send phase.
- packets that arrived: Lab.target_counter() (nft counter at the target's ingress) before/after.
- CPU: os.wait4 on the tool's pid (ip netns exec execs the tool, so it is the tool's own rusage,
  threads and reaped children included; Python start-up included for scanner).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import ipaddress
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scanner.lab import Lab, LabSpec  # noqa: E402

BENCH = Path(__file__).resolve().parent
UNLIMITED = 0
_CLK_TCK = os.sysconf("SC_CLK_TCK")
MASSCAN_MAX_RATE = 100_000_000        # masscan has no "unlimited": a rate it can never reach
MASSCAN_SPARE_NET = "198.19.253.0/24"  # routed to the scanner ns inside the target ns only
MASSCAN_SPARE_SRC = "198.19.253.1"     # an address no kernel in the lab owns: no RSTs from it


# -- measuring one process -----------------------------------------------------------------------

class TxSampler(threading.Thread):
    """Samples an interface's tx packet counter in the scanner namespace, via /proc/<pid>/net/dev
    of a process parked there.

    Also a watchdog for the tool (by its pid): after idle_kill seconds without a new packet, once
    sending has started, it calls poke() (masscan 1.3.2 leaves its wait loop only when a packet
    arrives), then SIGINT twice and SIGKILL if the tool is still there; after timeout seconds in
    all it goes straight to SIGINT."""

    def __init__(self, ns_pid: int, ifname: str, period: float = 0.002):
        super().__init__(daemon=True)
        self.path = f"/proc/{ns_pid}/net/dev"
        self.ifname = ifname
        self.period = period
        self.samples: list[tuple[float, int]] = []
        self.cpu: list[float | None] = []          # the tool's CPU seconds at each sample
        self._halt = threading.Event()
        self.tool_pid = None
        self.idle_kill = None
        self.timeout = None
        self.poke = None
        self.killed = ""
        self.t_start = None

    def read(self) -> int:
        with open(self.path) as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name.strip() == self.ifname:
                    return int(rest.split()[9])
        raise RuntimeError(f"{self.ifname} not in {self.path}")

    def run(self) -> None:
        last_change = prev = None
        stage_at = None      # when the current watchdog stage began
        while not self._halt.is_set():
            t = time.monotonic()
            v = self.read()
            self.samples.append((t, v))
            self.cpu.append(self.tool_cpu())
            if prev is not None and v != prev:
                last_change = t
            prev = v
            if self.tool_pid is not None:
                if not self.killed:
                    idle = (self.idle_kill is not None and last_change is not None
                            and t - last_change > self.idle_kill)
                    late = self.timeout is not None and self.t_start is not None and t - self.t_start > self.timeout
                    if idle and self.poke is not None:
                        self.killed, stage_at = "poked", t
                        self.poke()
                    elif idle or late:
                        self.killed, stage_at = "sigint", t
                        _signal(self.tool_pid, signal.SIGINT)
                elif stage_at is not None and t - stage_at > 3:
                    if self.killed == "poked":
                        self.killed = "sigint"
                        _signal(self.tool_pid, signal.SIGINT)
                    elif self.killed == "sigint":
                        self.killed = "sigint2"
                        _signal(self.tool_pid, signal.SIGINT)
                    elif self.killed == "sigint2":
                        self.killed = "sigkill"
                        _signal(self.tool_pid, signal.SIGKILL)
                        stage_at = None
                    stage_at = t if stage_at is not None else None
            self._halt.wait(self.period)

    def tool_cpu(self) -> float | None:
        """user+sys CPU seconds of the tool so far (all its threads), from /proc/<pid>/stat."""
        if self.tool_pid is None:
            return None
        try:
            with open(f"/proc/{self.tool_pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / _CLK_TCK      # utime, stime
        except (OSError, IndexError, ValueError):
            return None

    def send_cpu(self) -> float | None:
        """The tool's CPU µs per packet over the send phase (1% to 99% of the packets): the cost
        of sending, without start-up and waits, and less sensitive than a rate to other work on
        the machine. (Kernel work done for the packets inside the tool's syscalls is included.)"""
        s = self.samples
        if len(s) < 2 or s[-1][1] - s[0][1] < 100:
            return None
        v0, total = s[0][1], s[-1][1] - s[0][1]
        a = next(i for i in range(len(s)) if s[i][1] - v0 >= 0.01 * total)
        b = next(i for i in range(len(s)) if s[i][1] - v0 >= 0.99 * total)
        if self.cpu[a] is None or self.cpu[b] is None or s[b][1] <= s[a][1]:
            return None
        return (self.cpu[b] - self.cpu[a]) / (s[b][1] - s[a][1]) * 1e6

    def halt(self) -> None:
        self._halt.set()
        self.join()

    def send_phase(self, t0: float) -> tuple[int, float, float]:
        """(packets sent, seconds, seconds from t0 to the start): the send phase is the time between
        the counter passing 1% and 99% of its total increase, scaled by 1/0.98 -- blind to ARP
        before the first probe and to stragglers (kernel RSTs to late SYN-ACKs) after the last."""
        s = self.samples
        if len(s) < 2:
            return 0, 0.0, 0.0
        v0, total = s[0][1], s[-1][1] - s[0][1]
        if total < 100:
            return total, 0.0, 0.0
        a = next(i for i in range(len(s)) if s[i][1] - v0 >= 0.01 * total)
        b = next(i for i in range(len(s)) if s[i][1] - v0 >= 0.99 * total)
        secs = (s[b][0] - s[a][0]) * (total / (s[b][1] - s[a][1])) if s[b][1] > s[a][1] else 0.0
        return total, secs, s[a][0] - t0

    def core_rate(self, lo: float = 0.1, hi: float = 0.9) -> float | None:
        """Packets/s between the moments the counter passed lo and hi of its total increase: the
        steady sending rate, blind to a slow start and to stragglers (kernel RSTs, ARP) at the end."""
        s = self.samples
        if len(s) < 2:
            return None
        v0, total = s[0][1], s[-1][1] - s[0][1]
        if total < 100:
            return None
        a = next(i for i in range(len(s)) if s[i][1] - v0 >= lo * total)
        b = next(i for i in range(len(s)) if s[i][1] - v0 >= hi * total)
        return (s[b][1] - s[a][1]) / (s[b][0] - s[a][0]) if s[b][0] > s[a][0] else None

    def timeline(self, t0: float, points: int = 400) -> list[tuple[float, int]]:
        """(seconds since t0, packets since start) at the counter's changes, thinned to ~points."""
        s, v0 = self.samples, self.samples[0][1] if self.samples else 0
        ch = [(round(t - t0, 4), v - v0) for i, (t, v) in enumerate(s) if i == 0 or v != s[i - 1][1]]
        step = max(1, len(ch) // points)
        return ch[::step] + ([ch[-1]] if ch and (len(ch) - 1) % step else [])


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def machine_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat), to tell how busy the machine was."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")     # all but idle and iowait


def run_tool(lab: Lab, parker: subprocess.Popen, argv: list[str], log: Path, idle_kill: float | None = None,
             timeout: float = 300.0, cwd: str | None = None, poke=None) -> dict:
    """Runs argv in the scanner namespace; returns timing, tx, arrivals, CPU."""
    rx0 = lab.target_counter()
    busy0 = machine_busy_s()
    sampler = TxSampler(parker.pid, lab.scanner_if)
    sampler.start()
    time.sleep(0.05)
    with open(log, "w") as err:
        t0 = time.monotonic()
        p = lab.popen(argv, stdout=err, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd)
        sampler.idle_kill, sampler.timeout, sampler.t_start, sampler.poke = idle_kill, timeout, t0, poke
        sampler.tool_pid = p.pid
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    time.sleep(0.05)
    sampler.halt()
    busy = machine_busy_s() - busy0
    rx1 = lab.target_counter()
    sent, send_s, first_s = sampler.send_phase(t0)
    return {"wall_s": wall, "tx": sent, "send_s": send_s, "pps": sent / send_s if send_s > 0 else None,
            "first_probe_s": first_s,
            "pps_10_90": sampler.core_rate(), "tx_timeline": sampler.timeline(t0),
            "send_cpu_us_per_packet": sampler.send_cpu(),
            "arrived": rx1 - rx0, "cpu_s": ru.ru_utime + ru.ru_stime, "cpu_user_s": ru.ru_utime,
            "cpu_sys_s": ru.ru_stime, "rc": p.returncode, "killed": sampler.killed,
            # Busy CPU beyond the tool's own (the lab's kernel work for its packets, and whatever
            # else runs on this shared machine), as a share of both cores over the run.
            "others_cpu_share": max(0.0, busy - ru.ru_utime - ru.ru_stime) / (wall * (os.cpu_count() or 1))}


# -- the tools ----------------------------------------------------------------------------------

SUMMARY_RE = re.compile(r"(\d+) (?:packets|probes) sent in ([\d.]+)s \(([\d,]+)/s(?: while sending)?\)"
                        r"(?:; (\d+) replies failed the cookie check; (\d+) dropped by capture)?")


# scanner variants: tool name -> --send-path (None: the option is not passed, e.g. to a baseline
# checkout that predates it).
SCANNER_TOOLS = {"scanner": "packet", "scanner-xdp": "xdp", "scanner-base": None}


def scanner_argv(prefix, ports, rate, wait, out=None, send_path=None):
    # -Pn: no host discovery, like zmap and masscan; --no-db: benchmark runs stay out of the store.
    argv = [sys.executable, "-m", "scanner", prefix, "-Pn", "--no-db", "-p", ports, "--rate", str(rate),
            "--wait", str(wait), "--retries", "0"]
    if send_path:
        argv += ["--send-path", send_path]
    # -q would hide the stderr summary, which is where the pcap drop count is: not passed.
    return argv + (["-oJ", str(out)] if out else [])


def parse_scanner(out: Path | None, log: Path, row: dict) -> set[str]:
    text = log.read_text(errors="replace")
    m = SUMMARY_RE.search(text)
    if m:
        row["tool_sent"] = int(m.group(1))
        row["tool_elapsed_s"] = float(m.group(2))
        if m.group(5) is not None:
            row["bad_cookie"] = int(m.group(4))
            row["pcap_dropped"] = int(m.group(5))
    else:
        row["note"] = (row.get("note", "") + " no summary line in stderr").strip()
    found = set()
    if out and out.exists():
        with open(out) as f:
            for line in f:
                d = json.loads(line)
                if d.get("state") == "open" and d.get("port") == 80:
                    found.add(d["ip"])
    return found


def zmap_argv(lab, prefix, rate, cooldown, out, blocklist, meta, probes=1):
    argv = ["zmap", "-p", "80", "-i", lab.scanner_if, "-G", lab.target_mac, "-b", str(blocklist),
            "-r", str(rate), "-c", str(int(round(cooldown))), "-m", str(meta)]
    if probes > 1:
        argv += ["-P", str(probes)]
    argv += ["-o", str(out) if out else "/dev/null", prefix]
    return argv


def parse_zmap(out: Path, meta: Path, row: dict) -> set[str]:
    found = set()
    if out.exists():
        for line in out.read_text().split():
            try:
                found.add(str(ipaddress.IPv4Address(line.strip().split(",")[0])))
            except ValueError:
                pass   # a csv header
    try:
        md = json.loads(meta.read_text())
        row["tool_sent"] = md.get("packets_sent")
        row["tool_recv"] = md.get("packets_received")
        row["pcap_dropped"] = md.get("pcap_drop")
    except (OSError, ValueError):
        pass
    return found


def masscan_argv(lab, prefix, ports, rate, wait, out, src):
    r = MASSCAN_MAX_RATE if rate == UNLIMITED else rate
    return ["masscan", prefix, f"-p{ports}", "--interface", lab.scanner_if, "--router-mac", lab.target_mac,
            "--source-ip", src, "--rate", str(r), "--wait", str(wait), "-oL", str(out)]


def parse_masscan(out: Path, row: dict) -> set[str]:
    found = set()
    if out.exists():
        for line in out.read_text().splitlines():
            f = line.split()
            if len(f) >= 4 and f[0] == "open" and f[2] == "80":
                found.add(f[3])
    return found


# -- the benchmarks -----------------------------------------------------------------------------

_POKE = ("import socket, sys; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind((sys.argv[1], 0)); "
         "s.send(bytes.fromhex(sys.argv[2].replace(':', '')) * 2 + bytes([8, 0]) + bytes(46))")


def poker(lab: Lab):
    """One frame to the scanner's interface, sent from the target's side of the link: masscan 1.3.2
    leaves its wait loop only when a packet arrives. (There is no ping binary here.)"""
    def poke():
        threading.Thread(target=lab.run_target, daemon=True, kwargs=dict(
            argv=[sys.executable, "-c", _POKE, lab.target_if, lab.scanner_mac], capture_output=True)).start()
    return poke


def park(lab: Lab) -> subprocess.Popen:
    """An idle process in the scanner namespace, whose /proc/<pid>/net/dev the sampler reads."""
    return lab.popen(["sleep", "100000"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def unpark(p: subprocess.Popen) -> None:
    p.terminate()
    p.wait()


@contextlib.contextmanager
def bench_lab(spec: LabSpec, tmp: Path):
    """(lab, parker, empty zmap blocklist): the lab with masscan's spare source routed back to
    the scanner's link (the target ns only) and a parked process for the packet sampler."""
    with Lab(spec) as lab:
        # masscan's unused source address: the target routes it back to the scanner's link; the
        # scanner ns kernel does not own it, so it sends no RST for the SYN-ACKs masscan sees.
        lab.run_target(["ip", "route", "add", MASSCAN_SPARE_NET, "via", lab.scanner_addr], check=True)
        blocklist = tmp / "empty.blocklist"
        blocklist.write_text("")
        parker = park(lab)
        try:
            wait_for_ns(lab, parker)
            yield lab, parker, blocklist
        finally:
            unpark(parker)


def wait_for_ns(lab: Lab, p: subprocess.Popen) -> None:
    for _ in range(200):
        try:
            with open(f"/proc/{p.pid}/net/dev") as f:
                if lab.scanner_if in f.read():
                    return
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError("parked process never entered the scanner namespace")


def fill_quality(row: dict, found: set[str], expected: set[str], probes: int) -> None:
    row["found"] = len(found & expected)
    row["expected"] = len(expected)
    row["false_pos"] = len(found - expected)
    row["coverage"] = row["found"] / len(expected) if expected else None
    row["probes"] = probes
    row["cpu_us_per_probe"] = row["cpu_s"] / probes * 1e6 if probes else None


def tool_cwd(tool: str, baseline: Path | None) -> str:
    """Where a tool runs: scanner-base from the baseline checkout (python -m scanner imports the
    scanner package of its working directory), everything else from this one."""
    return str(baseline if tool == "scanner-base" else ROOT)


def sweep(prefix: str, rates: list[int], wait: float, tmp: Path, tools: list[str], repeat: int = 1,
          baseline: Path | None = None) -> list[dict]:
    rows = []
    spec = LabSpec(prefix=prefix, live_every=16, open_tcp=(80,), open_udp=(), drop_tcp=(), reject_tcp={})
    n = ipaddress.ip_network(prefix).num_addresses
    with bench_lab(spec, tmp) as (lab, parker, blocklist):
        expected = set(lab.live_hosts())
        for rate, run_no, tool in ((r, i, t) for r in rates for i in range(repeat) for t in tools):
            tag = f"sweep-{tool}-{rate}"
            out, log, meta = tmp / f"{tag}.out", tmp / f"{tag}.log", tmp / f"{tag}.meta"
            out.unlink(missing_ok=True)
            if tool in SCANNER_TOOLS:
                argv = scanner_argv(prefix, "80", rate, wait, out, SCANNER_TOOLS[tool])
            elif tool == "zmap":
                argv = zmap_argv(lab, prefix, rate, wait, out, blocklist, meta)
            elif tool == "masscan":
                argv = masscan_argv(lab, prefix, "80", rate, max(1, round(wait)), out, MASSCAN_SPARE_SRC)
            elif tool == "masscan-ownip":
                argv = masscan_argv(lab, prefix, "80", rate, max(1, round(wait)), out, lab.scanner_addr)
            else:
                raise ValueError(tool)
            print(f"  {tag} ...", end="", flush=True, file=sys.stderr)
            row = {"bench": "sweep", "tool": tool, "rate": rate, "run": run_no, "argv": argv}
            masscan = tool.startswith("masscan")
            row.update(run_tool(lab, parker, argv, log, idle_kill=wait + 0.5 if masscan else None,
                                poke=poker(lab) if masscan else None, timeout=120,
                                cwd=tool_cwd(tool, baseline)))
            if tool in SCANNER_TOOLS:
                found = parse_scanner(out, log, row)
            elif tool == "zmap":
                found = parse_zmap(out, meta, row)
            else:
                found = parse_masscan(out, row)
            fill_quality(row, found, expected, n)
            row["log_tail"] = log.read_text(errors="replace")[-1500:]
            print(f" {fmt_rate(row['pps'])} pps, {row['found']}/{row['expected']}, "
                  f"cpu {row['cpu_s']:.2f}s, rc {row['rc']} {row['killed']}", file=sys.stderr)
            rows.append(row)
    return rows


def build_csend(tmp: Path) -> Path:
    exe = tmp / "csend"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(BENCH / "csend.c")], check=True)
    return exe


def sendpath(prefix: str, nports: int, tmp: Path, tools: list[str], repeat: int = 1,
             baseline: Path | None = None) -> list[dict]:
    rows = []
    spec = LabSpec(prefix=prefix, live_every=16, open_tcp=(80,), open_udp=(), drop_tcp=(), reject_tcp={},
                   ingress_drop_all=True)
    net = ipaddress.ip_network(prefix)
    probes = net.num_addresses * nports
    ports = f"80-{80 + nports - 1}"
    csend = build_csend(tmp) if "csend" in tools else None
    with bench_lab(spec, tmp) as (lab, parker, blocklist):
        # The scanner resolves the target's MAC itself (ARP passes the ingress drop); that
        # time shows in "1st probe s", not in the send phase.
        # Repeats interleave the tools, so that a busy spell on the machine hits all of them.
        for run_no, tool in ((i, t) for i in range(repeat) for t in tools):
            tag = f"sendpath-{tool}"
            out, log, meta = tmp / f"{tag}.out", tmp / f"{tag}.log", tmp / f"{tag}.meta"
            idle = None
            if tool in SCANNER_TOOLS:
                argv = scanner_argv(prefix, ports, UNLIMITED, 0, send_path=SCANNER_TOOLS[tool])
            elif tool == "zmap":
                # zmap scans one port per run: -P N sends N probes per address (same packet count).
                argv = zmap_argv(lab, prefix, UNLIMITED, 0, None, blocklist, meta, probes=nports)
            elif tool == "masscan":
                # masscan 1.3.2 waits for a packet before it exits, and none comes here: the
                # watchdog pings the scanner from the target 1 s after masscan's last packet.
                argv = masscan_argv(lab, prefix, ports, UNLIMITED, 0, out, MASSCAN_SPARE_SRC)
                idle = 1.0
            elif tool == "csend":
                argv = [str(csend), lab.scanner_if, lab.target_mac, lab.scanner_mac, lab.scanner_addr,
                        str(net.network_address), str(net.prefixlen), "80", str(nports)]
            else:
                raise ValueError(tool)
            print(f"  {tag} ...", end="", flush=True, file=sys.stderr)
            row = {"bench": "sendpath", "tool": tool, "rate": UNLIMITED, "run": run_no, "argv": argv}
            row.update(run_tool(lab, parker, argv, log, idle_kill=idle, timeout=180, cwd=tool_cwd(tool, baseline),
                                poke=poker(lab) if idle else None))
            text = log.read_text(errors="replace")
            if tool in SCANNER_TOOLS:
                parse_scanner(None, log, row)
            elif tool == "zmap":
                parse_zmap(tmp / "none", meta, row)
            elif tool == "csend":
                try:
                    own = json.loads(text.strip().splitlines()[-1])
                    row["tool_sent"] = own["sent"]
                    row["tool_pps"] = own["pps"]
                    row["tool_send_s"] = own["seconds"]
                except (ValueError, IndexError, KeyError):
                    row["note"] = "no JSON line from csend"
            row["probes"] = probes
            row["cpu_us_per_probe"] = row["cpu_s"] / probes * 1e6
            row["arrived_frac"] = row["arrived"] / probes
            row["log_tail"] = text[-1500:]
            print(f" {fmt_rate(row['pps'])} pps, tx {row['tx']}, arrived {row['arrived']}, "
                  f"cpu {row['cpu_s']:.2f}s, rc {row['rc']}{' killed:' + row['killed'] if row['killed'] else ''}",
                  file=sys.stderr)
            rows.append(row)
    return rows


# -- report -------------------------------------------------------------------------------------

def fmt_rate(r) -> str:
    if r is None:
        return "-"
    if r == 0:
        return "unlimited"
    return f"{r / 1000:.0f}k" if r >= 1000 else f"{r:.0f}"


def fmt(v, spec="{:.2f}") -> str:
    return "-" if v is None else spec.format(v)


def _median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    m = len(values) // 2
    return values[m] if len(values) % 2 else (values[m - 1] + values[m]) / 2


def medians(rows: list[dict]) -> list[dict]:
    """One row per (bench, tool, rate): medians over its repeated runs (the extremes of pps, the
    worst coverage, false positives and drops)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["bench"], r["tool"], r["rate"]), []).append(r)
    out = []
    for (bench, tool, rate), rs in groups.items():
        m = {"bench": bench, "tool": tool, "rate": rate, "runs": len(rs)}
        for key in ("wall_s", "first_probe_s", "tx", "send_s", "pps", "arrived", "cpu_s", "cpu_us_per_probe",
                    "others_cpu_share", "send_cpu_us_per_packet"):
            m[key] = _median(r.get(key) for r in rs)
        pps = [r["pps"] for r in rs if r.get("pps")]
        m["pps_min"], m["pps_max"] = (min(pps), max(pps)) if pps else (None, None)
        if any("found" in r for r in rs):
            worst = min(rs, key=lambda r: r.get("coverage") or 0)
            m.update(found=worst["found"], expected=worst["expected"], coverage=worst["coverage"],
                     false_pos=max(r.get("false_pos", 0) for r in rs))
        drops = [r["pcap_dropped"] for r in rs if r.get("pcap_dropped") is not None]
        m["pcap_dropped"] = max(drops) if drops else None
        out.append(m)
    return out


def add_ratios(summary: list[dict]) -> None:
    """Ratios of median rates (and CPU per probe) of the scanner variants against their peers in
    the same bench and rate: zmap, the C sendmmsg ceiling (send path), the sendmmsg variant of
    scanner (for scanner-xdp), and the baseline checkout (scanner-base)."""
    by = {(r["bench"], r["tool"], r["rate"]): r for r in summary}
    ceiling = by.get(("sendpath", "csend", UNLIMITED))
    for r in summary:
        if r["tool"] not in SCANNER_TOOLS or not r.get("pps"):
            continue
        z = by.get((r["bench"], "zmap", r["rate"]))
        if z and z.get("pps"):
            r["pps_vs_zmap"] = r["pps"] / z["pps"]
        if z and z.get("cpu_us_per_probe") and r.get("cpu_us_per_probe"):
            r["cpu_vs_zmap"] = r["cpu_us_per_probe"] / z["cpu_us_per_probe"]
        if r["bench"] == "sendpath" and ceiling and ceiling.get("pps"):
            r["pps_vs_ceiling"] = r["pps"] / ceiling["pps"]
            if ceiling.get("send_cpu_us_per_packet") and r.get("send_cpu_us_per_packet"):
                # packets per CPU second against the ceiling's: > 1 means cheaper per packet
                r["cpu_eff_vs_ceiling"] = ceiling["send_cpu_us_per_packet"] / r["send_cpu_us_per_packet"]
        if z and z.get("send_cpu_us_per_packet") and r.get("send_cpu_us_per_packet"):
            r["cpu_eff_vs_zmap"] = z["send_cpu_us_per_packet"] / r["send_cpu_us_per_packet"]
        for peer, key in (("scanner", "pps_vs_packet"), ("scanner-base", "pps_vs_base")):
            other = by.get((r["bench"], peer, r["rate"]))
            if peer != r["tool"] and other and other.get("pps"):
                r[key] = r["pps"] / other["pps"]


def table(summary: list[dict]) -> str:
    head = ["bench", "tool", "rate", "runs", "wall s", "1st probe s", "sent", "send s", "pps sent (median)",
            "pps min-max", "arrived", "found/expected", "coverage", "false +", "CPU s", "CPU µs/probe",
            "pcap drops", "others' CPU", "send CPU µs/pkt", "pps vs zmap", "pps vs ceiling", "pps vs packet",
            "pps vs base", "CPU/probe vs zmap", "pkts/CPU s vs zmap", "pkts/CPU s vs ceiling"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary:
        cov = r.get("coverage")
        lines.append("| " + " | ".join([
            r["bench"], r["tool"], fmt_rate(r["rate"]), str(r["runs"]), fmt(r["wall_s"]), fmt(r.get("first_probe_s")),
            fmt(r["tx"], "{:.0f}"), fmt(r["send_s"], "{:.3f}"), fmt(r.get("pps"), "{:,.0f}"),
            f"{fmt(r['pps_min'], '{:,.0f}')}-{fmt(r['pps_max'], '{:,.0f}')}", fmt(r["arrived"], "{:.0f}"),
            f"{r['found']}/{r['expected']}" if "found" in r else "-",
            "-" if cov is None else f"{cov * 100:.2f}%", str(r.get("false_pos", "-")),
            fmt(r["cpu_s"]), fmt(r.get("cpu_us_per_probe")), str(r.get("pcap_dropped", "-")),
            fmt(r.get("others_cpu_share"), "{:.0%}"), fmt(r.get("send_cpu_us_per_packet"), "{:.3f}"),
            fmt(r.get("pps_vs_zmap")), fmt(r.get("pps_vs_ceiling")),
            fmt(r.get("pps_vs_packet")), fmt(r.get("pps_vs_base")), fmt(r.get("cpu_vs_zmap")),
            fmt(r.get("cpu_eff_vs_zmap")), fmt(r.get("cpu_eff_vs_ceiling")),
        ]) + " |")
    return "\n".join(lines)


def best_rates(summary: list[dict]) -> str:
    out = []
    for tool in dict.fromkeys(r["tool"] for r in summary if r["bench"] == "sweep"):
        ok = [r for r in summary if r["bench"] == "sweep" and r["tool"] == tool and (r.get("coverage") or 0) >= 0.999]
        if ok:
            best = max(ok, key=lambda r: r.get("pps") or 0)
            out.append(f"- {tool}: highest sent rate with coverage >= 99.9%: {best['pps']:,.0f} pps "
                       f"(--rate {fmt_rate(best['rate'])}, coverage {best['coverage'] * 100:.2f}%)")
        else:
            out.append(f"- {tool}: no run reached 99.9% coverage")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a /20 and fewer rates: a smoke test (< 1 min)")
    ap.add_argument("--only", choices=["sweep", "sendpath"], help="run one benchmark only")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="run every (tool, rate) N times, interleaved; report medians")
    ap.add_argument("--baseline", metavar="DIR", type=Path,
                    help="also run scanner from this checkout (its extensions built in place) as "
                         "scanner-base: before/after a change in one sitting")
    ap.add_argument("--rates", metavar="R,R,...", help="sweep rates (0: unlimited) instead of the default set")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    if args.baseline and not (args.baseline / "scanner" / "__main__.py").exists():
        ap.error(f"--baseline {args.baseline}: no scanner package there")
    if os.geteuid() != 0:
        print("bench/run.py builds network namespaces: run it as root", file=sys.stderr)
        return 2
    for tool in ("zmap", "masscan", "gcc", "nft", "ip"):
        if shutil.which(tool) is None:
            print(f"bench/run.py needs {tool}", file=sys.stderr)
            return 2
    if args.quick:
        prefix, rates, wait, nports = "198.18.0.0/20", [100_000, UNLIMITED], 1.0, 4
        sweep_tools = ["scanner", "scanner-xdp", "zmap", "masscan"]
    else:
        prefix, rates, wait, nports = "198.18.0.0/16", [100_000, 150_000, 200_000, 300_000, 400_000, UNLIMITED], 3.0, 16
        sweep_tools = ["scanner", "scanner-xdp", "zmap", "masscan", "masscan-ownip"]
    if args.rates:
        rates = [int(r) for r in args.rates.split(",")]
    send_tools = ["scanner", "scanner-xdp", "zmap", "masscan", "csend"]
    if args.baseline:
        sweep_tools.insert(2, "scanner-base")
        send_tools.insert(2, "scanner-base")
    load_at_start = os.getloadavg()
    started = _dt.datetime.now(_dt.timezone.utc)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="scanner-bench-") as td:
        tmp = Path(td)
        if args.only in (None, "sweep"):
            print(f"sweep: {prefix}, one host in 16 up, port 80, rates {rates}", file=sys.stderr)
            rows += sweep(prefix, rates, wait, tmp, sweep_tools, args.repeat, args.baseline)
        if args.only in (None, "sendpath"):
            print(f"sendpath: {prefix} x {nports} ports, target drops at ingress", file=sys.stderr)
            rows += sendpath(prefix, nports, tmp, send_tools, args.repeat, args.baseline)
    summary = medians(rows)
    add_ratios(summary)
    md = table(summary)
    print(md)
    print()
    print(best_rates(summary))
    print(f"\nload average at start {load_at_start[0]:.2f}, at end {os.getloadavg()[0]:.2f} (2 cores; "
          "others' CPU: busy CPU beyond the tool's own during its runs, lab kernel work included)")
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--short"], capture_output=True, text=True).stdout
    result = {
        "started": started.isoformat(), "quick": args.quick, "prefix": prefix, "rates": rates, "wait": wait,
        "nports_sendpath": nports, "host": platform.node(), "kernel": platform.release(),
        "cpus": os.cpu_count(), "loadavg_at_start": load_at_start, "loadavg_at_end": os.getloadavg(),
        "git_head": git, "git_dirty": dirty.splitlines(), "repeat": args.repeat,
        "baseline": str(args.baseline) if args.baseline else None, "rows": rows, "medians": summary, "table_md": md,
    }
    res_dir = BENCH / "results"
    res_dir.mkdir(exist_ok=True)
    path = res_dir / f"{started.strftime('%Y%m%dT%H%M%SZ')}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(result, indent=1, default=str))
    print(f"\nwrote {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
