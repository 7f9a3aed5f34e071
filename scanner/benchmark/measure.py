"""Measuring one tool run in the lab's scanner namespace, the same way for every tool.

- packets sent and the send phase: a thread reads the scanner veth's tx counter every 2 ms from
  /proc/<pid>/net/dev of a `sleep` parked in the scanner namespace. The send phase is the time
  between the counter passing 1% and 99% of its increase (scaled by 1/0.98): blind to ARP before
  the first probe and to stragglers after the last.
- packets that reached the target: Lab.target_counter() (nft counter at the target's ingress);
  probes/s at the target leaves out the TCP RSTs among them (Lab.target_counter("rst")): the
  scanner kernel's RSTs to SYN-ACKs (as many as the open ports in a dense sweep) are no probes.
- CPU: os.wait4 on the tool's pid; `ip netns exec` execs the tool, so this is the tool's own
  user+sys time, threads and reaped children included. The sampler also reads the tool's CPU from
  /proc/<pid>/stat with each tx sample: its CPU per packet over the send phase alone (no start-up,
  no waits; 10 ms clock ticks, so meaningful on large scans only).
- others' CPU: the machine's busy CPU time (/proc/stat) during the run beyond the tool's own, as a
  share of all cores: the lab's kernel work for the tool's packets and whatever else ran.
- masscan 1.3.2 leaves its wait loop only when a packet arrives: after `idle_kill` seconds without
  a packet the watchdog sends it one from the target's side (poke), then SIGINT, SIGINT, SIGKILL
  3 s apart; `killed` records how far it went.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from ..lab import Lab


_CLK_TCK = os.sysconf("SC_CLK_TCK")


class TxSampler(threading.Thread):
    """Samples the scanner veth's tx counter (and the tool's CPU) every period; also the tool's
    watchdog (see the module's docstring)."""

    def __init__(self, ns_pid: int, ifname: str, period: float = 0.002):
        super().__init__(daemon=True)
        self.path = f"/proc/{ns_pid}/net/dev"
        self.ifname = ifname
        self.period = period
        self.samples: list[tuple[float, int]] = []
        self.cpu: list[Optional[float]] = []        # the tool's CPU seconds at each sample
        self._halt = threading.Event()
        self.tool_pid: Optional[int] = None
        self.t_start = 0.0
        self.idle_kill: Optional[float] = None
        self.timeout: Optional[float] = None
        self.poke: Optional[Callable[[], None]] = None
        self.killed = ""

    def read(self) -> int:
        with open(self.path) as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name.strip() == self.ifname:
                    return int(rest.split()[9])
        raise RuntimeError(f"{self.ifname} not in {self.path}")

    def run(self) -> None:
        last_change = prev = None
        stage_at = 0.0
        stages = ["poked", "sigint", "sigint2", "sigkill"]
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
                    idle = self.idle_kill is not None and last_change is not None and t - last_change > self.idle_kill
                    late = self.timeout is not None and t - self.t_start > self.timeout
                    if idle or late:
                        self.killed, stage_at = ("poked" if idle and self.poke else "sigint"), t
                        self.poke() if self.killed == "poked" and self.poke else _signal(self.tool_pid, signal.SIGINT)
                elif self.killed != "sigkill" and t - stage_at > 3:
                    self.killed, stage_at = stages[stages.index(self.killed) + 1], t
                    _signal(self.tool_pid, signal.SIGKILL if self.killed == "sigkill" else signal.SIGINT)
            self._halt.wait(self.period)

    def tool_cpu(self) -> Optional[float]:
        """The tool's user+sys CPU seconds so far (all its threads), from /proc/<pid>/stat."""
        if self.tool_pid is None:
            return None
        try:
            with open(f"/proc/{self.tool_pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / _CLK_TCK
        except (OSError, IndexError, ValueError):
            return None

    def halt(self) -> None:
        self._halt.set()
        self.join()

    def _between(self, lo: float, hi: float) -> Optional[tuple[int, int]]:
        """Indices of the samples where the counter first passed lo and hi of its increase."""
        s = self.samples
        if len(s) < 2 or s[-1][1] - s[0][1] < 100:
            return None
        v0, total = s[0][1], s[-1][1] - s[0][1]
        a = next(i for i in range(len(s)) if s[i][1] - v0 >= lo * total)
        b = next(i for i in range(len(s)) if s[i][1] - v0 >= hi * total)
        return a, b

    def send_phase(self, t0: float) -> tuple[int, float, float]:
        """(packets sent, send-phase seconds, seconds from t0 to the first 1%)."""
        s = self.samples
        total = s[-1][1] - s[0][1] if len(s) >= 2 else 0
        ab = self._between(0.01, 0.99)
        if ab is None:
            return total, 0.0, 0.0
        a, b = ab
        secs = (s[b][0] - s[a][0]) * (total / (s[b][1] - s[a][1])) if s[b][1] > s[a][1] else 0.0
        return total, secs, s[a][0] - t0

    def core_rate(self) -> Optional[float]:
        """Packets/s between 10% and 90% of the increase: the steady rate, blind to a slow start."""
        ab = self._between(0.1, 0.9)
        if ab is None:
            return None
        (ta, va), (tb, vb) = self.samples[ab[0]], self.samples[ab[1]]
        return (vb - va) / (tb - ta) if tb > ta else None

    def send_cpu(self) -> Optional[float]:
        """The tool's CPU µs per packet over the send phase (1% to 99% of the packets)."""
        ab = self._between(0.01, 0.99)
        if ab is None:
            return None
        a, b = ab
        ca, cb = self.cpu[a], self.cpu[b]
        sent = self.samples[b][1] - self.samples[a][1]
        return None if ca is None or cb is None or sent <= 0 else (cb - ca) / sent * 1e6


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class Parker:
    """An idle process in the scanner namespace, whose /proc/<pid>/net/dev the sampler reads."""

    def __init__(self, lab: Lab):
        self.lab = lab
        self.proc = lab.popen(["sleep", "100000"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        for _ in range(300):
            try:
                if lab.scanner_if in Path(f"/proc/{self.proc.pid}/net/dev").read_text():
                    return
            except OSError:
                pass
            time.sleep(0.01)
        self.close()
        raise RuntimeError("the parked process never entered the scanner namespace")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


_POKE = ("import socket, sys; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind((sys.argv[1], 0)); "
         "s.send(bytes.fromhex(sys.argv[2].replace(':', '')) * 2 + bytes([8, 0]) + bytes(46))")


def poker(lab: Lab) -> Callable[[], None]:
    """One Ethernet frame to the scanner's interface from the target's side of the link."""
    def poke() -> None:
        threading.Thread(target=lab.run_target, daemon=True, kwargs=dict(
            argv=[sys.executable, "-c", _POKE, lab.target_if, lab.scanner_mac], capture_output=True)).start()
    return poke


def machine_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / _CLK_TCK


def run_measured(lab: Lab, parker: Parker, argv: list[str], log: Path, *, timeout: float = 300.0,
                 idle_kill: Optional[float] = None, env: Optional[dict] = None,
                 cwd: Optional[Path] = None) -> dict:
    """Runs argv in the scanner namespace (stdout and stderr to log); returns the measurements."""
    rx0, rst0 = lab.target_counter(), lab.target_counter("rst")
    busy0 = machine_busy_s()
    sampler = TxSampler(parker.proc.pid, lab.scanner_if)
    sampler.start()
    time.sleep(0.05)
    with open(log, "w") as out:
        t0 = time.monotonic()
        p = lab.popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd)
        sampler.t_start, sampler.timeout, sampler.idle_kill = t0, timeout, idle_kill
        sampler.poke = poker(lab) if idle_kill is not None else None
        sampler.tool_pid = p.pid
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    time.sleep(0.05)
    sampler.halt()
    busy = machine_busy_s() - busy0
    arrived = lab.target_counter() - rx0
    rsts = lab.target_counter("rst") - rst0
    sent, send_s, first_s = sampler.send_phase(t0)
    cpu = ru.ru_utime + ru.ru_stime
    return {"pps_10_90": sampler.core_rate(), "send_cpu_us_per_packet": sampler.send_cpu(),
            "others_cpu_share": max(0.0, busy - cpu) / (wall * (os.cpu_count() or 1)),
            "wall_s": wall, "tx": sent, "send_s": send_s, "first_probe_s": first_s,
            "pps_sent": sent / send_s if send_s > 0 else None,
            "arrived": arrived, "arrived_rst": rsts,
            "pps_target": (arrived - rsts) / send_s if send_s > 0 else None,
            "cpu_s": cpu, "rc": p.returncode, "killed": sampler.killed}
