"""Cluster scans (issue 13) in a namespace lab: a target namespace and three worker namespaces,
each with its own link to the target (a bridge there); Dask's scheduler and the coordinator run
in worker namespace 1. Every process is started in its namespace by the test and the lab is
torn down (processes killed, namespaces deleted) however the test ends."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import diff, read_ndjson, require_lab_tools, scanner_env

pytestmark = pytest.mark.lab

PY = sys.executable
PORT = 8786
RATE = 6000
PORTS = (22, 23, 80, 443, 8080, 8443)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Cluster:
    """Dask's scheduler and one `scanner worker` per worker namespace, in a ClusterLab."""

    def __init__(self, lab, logdir):
        self.lab, self.logdir = lab, logdir
        self.address = f"tcp://{lab.workers[0].addr}:{PORT}"
        self.scheduler = None
        self.workers = [None] * len(lab.workers)

    def _log(self, name):
        return open(os.path.join(self.logdir, name + ".log"), "ab")

    def start_scheduler(self):
        self.scheduler = self.lab.popen_in(
            0, [PY, "-m", "distributed.cli.dask_scheduler", "--host", self.lab.workers[0].addr,
                "--port", str(PORT), "--no-dashboard"],
            stdout=subprocess.DEVNULL, stderr=self._log("scheduler"), env=scanner_env())

    def start_worker(self, i):
        self.workers[i] = self.lab.popen_in(
            i, [PY, "-m", "scanner", "worker", self.address, "--interface", self.lab.workers[i].ifname],
            stdout=subprocess.DEVNULL, stderr=self._log(f"worker{i + 1}"), env=scanner_env())

    def connected(self) -> int:
        """Scanner workers the scheduler knows (asked from worker namespace 1)."""
        code = ("from scanner.cluster.coordinator import connect, scanner_workers\n"
                f"c = connect({self.address!r}); print(len(scanner_workers(c))); c.close()")
        p = self.lab.run_in(0, [PY, "-c", code], capture_output=True, text=True, env=scanner_env(), timeout=30)
        return int(p.stdout.strip() or 0) if p.returncode == 0 else 0

    def wait_ready(self, n=None):
        n = len(self.workers) if n is None else n
        wait_for(lambda: self.connected() >= n, 60, f"{n} scanner workers at the scheduler")

    def stop(self):
        for p in [self.scheduler, *self.workers]:
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from scanner.cluster.lab import ClusterLab, cleanup_stale
    from scanner.lab import LabSpec
    require_lab_tools()
    cleanup_stale()
    spec = LabSpec(prefix="198.18.0.0/20", open_tcp=(22, 80, 443), drop_tcp=(8080,),
                   reject_tcp={8443: "admin-prohibited"}, live_every=4)
    with ClusterLab(spec) as lab:
        c = Cluster(lab, str(tmp_path_factory.mktemp("cluster-logs")))
        try:
            c.start_scheduler()
            for i in range(len(lab.workers)):
                c.start_worker(i)
            c.wait_ready()
            yield c
        finally:
            c.stop()


def cluster_scan(c, args, out, cwd=None, timeout=120.0, background=False):
    argv = [PY, "-m", "scanner", *map(str, args), "--no-db", "-oJ", str(out), "--cluster", c.address]
    if background:
        return c.lab.popen_in(0, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=scanner_env(), cwd=cwd)
    p = c.lab.run_in(0, argv, capture_output=True, text=True, env=scanner_env(), timeout=timeout, cwd=cwd)
    assert p.returncode == 0, f"cluster scan exited {p.returncode}:\n{p.stderr}"
    assert "Traceback" not in p.stderr, p.stderr
    return p


def single_scan(c, args, out, quiet=True):
    p = c.lab.run_in(0, [PY, "-m", "scanner", *map(str, args), "--no-db", *["-q"] * quiet, "-oJ", str(out)],
                     capture_output=True, text=True, env=scanner_env(), timeout=120)
    assert p.returncode == 0, p.stderr
    return p


def sending_rate(stderr: str) -> float:
    """The packets per second "while sending" of a scan's summary line."""
    m = [line for line in stderr.splitlines() if "while sending" in line]
    assert m, stderr
    return float(m[-1].split("(")[-1].split("/s")[0].replace(",", ""))


def test_cluster_equals_single_machine_and_shares_the_rate(cluster, tmp_path):
    """-Pn SYN scan of a /20 x 6 ports (24576 probes) at --rate 6000 on three workers: the
    union of the shards is the single-machine scan of the same space, result for result; every
    worker sent about a third (the target's own per-source counters say so); the rate, the sum
    of each worker's rate while sending, is --rate within 10%; progress names every worker.
    (The engine paces without bursts: on a machine so loaded that one scanner alone misses a
    worker's share of the rate by more than 5%, the cluster is held to three times what it reached.)"""
    c = cluster
    args = ["198.18.0.0/20", "-Pn", "-p", ",".join(map(str, PORTS)), "--wait", "0.3", "--seed", "7"]
    before = c.lab.probes_from()
    p = cluster_scan(c, [*args, "--rate", RATE, "--stats-every", "1"], tmp_path / "cluster.ndjson")
    per_worker = [b - a for a, b in zip(before, c.lab.probes_from())]
    single_scan(c, [*args, "--rate", 0], tmp_path / "single.ndjson")
    got, rows = read_ndjson(tmp_path / "cluster.ndjson")     # asserts: no (ip, port) twice
    want, _ = read_ndjson(tmp_path / "single.ndjson")
    assert got == want, diff(got, want)
    assert got == {k: v for k, v in c.lab.expected(PORTS).items() if v[1] != "no-response"}, \
        diff(got, c.lab.expected(PORTS))
    total = 4096 * len(PORTS)
    # Every probe once, plus one retry of the unanswered (dead hosts, dropped port; and on a
    # loaded machine the few whose answer came after the retry pass began).
    unanswered = sum(1 for v in c.lab.expected(PORTS).values() if v[1] == "no-response")
    assert total + unanswered <= sum(per_worker) <= 1.01 * (total + unanswered), per_worker
    for n in per_worker:
        assert n > 0.2 * total, f"a worker sent too small a share: {per_worker}"
    share = RATE / len(per_worker)
    peer = single_scan(c, [*args, "--rate", share, "--shard", "1/8"], tmp_path / "peer.ndjson", quiet=False)
    rate, alone = sending_rate(p.stderr), sending_rate(peer.stderr)
    reference = RATE if alone >= 0.95 * share else alone * len(per_worker)
    assert abs(rate - reference) <= 0.1 * reference, (rate, alone)
    # Progress: each worker's probes, rate and results, while scanning and at the end.
    assert re.search(r"scanner:   worker tcp://198\.19\.252\.\d:\d+: \d+ sent \([\d.]+-kpps\), \d+ results",
                     p.stderr), p.stderr
    assert len(re.findall(r"scanner: worker tcp://198\.19\.252\.\d:\d+ \(scc\w+w\d\): \d+ sent", p.stderr)) == 3


def test_cluster_host_discovery_then_port_scan(cluster, tmp_path):
    """Host discovery on the cluster, hosts up merged at the coordinator, then the port scan
    sharded over them: the same hosts and ports as one machine finds."""
    c = cluster
    args = ["198.18.0.0/22", "-p", "22,23,80,8080", "--rate", RATE, "--wait", "0.3"]
    cluster_scan(c, args, tmp_path / "cluster.ndjson")
    single_scan(c, args, tmp_path / "single.ndjson")
    got, _ = read_ndjson(tmp_path / "cluster.ndjson")
    want, _ = read_ndjson(tmp_path / "single.ndjson")
    assert got == want, diff(got, want)
    hosts = {ip for ip, _ in got}
    assert len(hosts) == 256, len(hosts)      # one host in four is up


def test_worker_killed_mid_scan(cluster, tmp_path):
    """kill -9 of a worker while it scans: its shard goes on elsewhere from its checkpoint;
    every probe's result is there, once, and nothing that is not. No retries: a probe lost in
    the failover would show as a missing result."""
    c = cluster
    args = ["198.18.0.0/20", "-Pn", "-p", ",".join(map(str, PORTS)), "--rate", RATE, "--wait", "0.3",
            "--retries", "0"]
    before = c.lab.probes_from()
    proc = cluster_scan(c, args, tmp_path / "cluster.ndjson", background=True)
    # Mid-scan: the victim has sent 1500 probes (of about 8000), the others are at work too.
    wait_for(lambda: c.lab.probes_from()[1] - before[1] > 1500, 30, "the scan to be under way")
    victim = c.workers[1]
    assert victim.poll() is None
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        c.start_worker(1)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert re.search(r"shard \d+/24 resumed on tcp://198\.19\.252\.[13]:\d+ from pass \d+ position \d+", err), err
    got, _ = read_ndjson(tmp_path / "cluster.ndjson")       # no (ip, port) twice
    want = {k: v for k, v in c.lab.expected(PORTS).items() if v[1] != "no-response"}
    assert got == want, diff(got, want)
    c.wait_ready()


def test_scheduler_killed_mid_scan_leaves_a_resume_file(cluster, tmp_path):
    """The scheduler killed mid-scan: the coordinator stops cleanly and writes its resume file.
    It finishes the scan on the cluster again (a new scheduler; the workers find it by
    themselves) and, from a copy, on one machine: every result once, both ways."""
    c = cluster
    args = ["198.18.0.0/20", "-Pn", "-p", ",".join(map(str, PORTS)), "--rate", RATE, "--wait", "0.3",
            "--retries", "0"]
    out = tmp_path / "cluster.ndjson"
    before = sum(c.lab.probes_from())
    proc = cluster_scan(c, args, out, cwd=str(tmp_path), background=True)
    wait_for(lambda: sum(c.lab.probes_from()) - before > 8000, 30, "the scan to be under way")
    c.scheduler.kill()
    c.scheduler.wait()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert "lost the Dask scheduler" in err and "Resume with" in err, err
    resume = tmp_path / "scanner-resume.json"
    assert resume.exists(), err
    partial, _ = read_ndjson(out)
    want = {k: v for k, v in c.lab.expected(PORTS).items() if v[1] != "no-response"}
    assert 0 < len(partial) < len(want), (len(partial), err.splitlines())
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(resume, alone / "scanner-resume.json")
    shutil.copy(out, alone / "cluster.ndjson")
    # On the cluster again: the resume file holds the request, --cluster included.
    c.start_scheduler()
    c.wait_ready()
    p = c.lab.run_in(0, [PY, "-m", "scanner", "--resume", str(resume)],
                     capture_output=True, text=True, env=scanner_env(), timeout=120, cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    got, _ = read_ndjson(out)
    assert got == want, diff(got, want)
    assert not resume.exists()
    # On one machine (--cluster none), writing to the copy of the output.
    copy = alone / "scanner-resume.json"
    doc = json.loads(copy.read_text())
    doc["request"].update(json_out=str(alone / "cluster.ndjson"))
    copy.write_text(json.dumps(doc))
    p = c.lab.run_in(0, [PY, "-m", "scanner", "--resume", str(copy), "--cluster", "none"],
                     capture_output=True, text=True, env=scanner_env(), timeout=120, cwd=str(alone))
    assert p.returncode == 0, p.stderr
    assert "worker tcp://" not in p.stderr, p.stderr
    got, _ = read_ndjson(alone / "cluster.ndjson")
    assert got == want, diff(got, want)
