"""Forged replies against real scans in a namespace lab, from a third namespace (Lab.third_party)
whose frames a tc redirect makes arrive on the scanner's interface, as from an on-path injector:

- a flood of random forged replies at 10x the probe rate during TCP+UDP and ICMP scans: every
  result must be the lab's truth (0 false results), and the flood must have been seen;
- the targeted UDP forgery: a UDP answer and an ICMP port unreachable to each of the 32768 cookie
  source ports, for each scanned port of a dead host: that host must stay silent (0 forged).

Needs root (CI runs it as root); fails, never skips, without it."""
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from integration_helpers import diff, make_lab, parse_summary, scanner_argv, scanner_env
from scanner.lab import LabSpec

pytestmark = pytest.mark.lab

FORGER = str(Path(__file__).with_name("forger.py"))
SPEC = LabSpec(prefix="198.18.0.0/26", live_every=2, open_tcp=(22,), open_udp=(53,), drop_tcp=(8080,),
               reject_tcp={}, reject_udp={2003: "admin-prohibited"})
TCP_PORTS = [22, 23, 8080]                 # open, closed, dropped
UDP_PORTS = [53, 123, 161, 2003]           # open (DNS), closed (NTP, SNMP), admin-prohibited


@contextmanager
def redirected_lab(spec):
    """A lab whose third-party namespace's frames arrive on the scanner's captured interface."""
    with make_lab(spec) as lab:
        x = lab.third_party()
        # frames from x arrive on the scanner's captured interface, as if injected on its link
        lab.run(["tc", "qdisc", "add", "dev", x.peer_ifname, "ingress"], check=True, capture_output=True)
        r = lab.run(["tc", "filter", "add", "dev", x.peer_ifname, "parent", "ffff:", "protocol", "all", "u32",
                     "match", "u32", "0", "0", "action", "mirred", "ingress", "redirect", "dev", lab.scanner_if],
                    capture_output=True, text=True)
        assert r.returncode == 0, f"tc mirred redirect unavailable: {r.stderr}"
        yield lab


@pytest.fixture(scope="module")
def lab():
    with redirected_lab(SPEC) as lab:
        yield lab


def rows_of(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@contextmanager
def scan_running(lab, args):
    """Starts the scanner in the lab and yields its Popen once its first probe reached the target
    (its capture is running by then); leaves .stderr_text, the NDJSON .rows and the store's
    .counters (the whole command's summary, discovery included) on it."""
    tmp = tempfile.mkdtemp(prefix="scanner-rel-")
    path, db = os.path.join(tmp, "out.ndjson"), os.path.join(tmp, "scans.db")
    before = lab.target_counter()
    p = lab.popen(scanner_argv(*args, "-oJ", path, "--db", db), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                  text=True, env=scanner_env())
    try:
        deadline = time.monotonic() + 20
        while lab.target_counter() == before and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert p.poll() is None and lab.target_counter() > before, "the scan did not start"
        yield p
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0 and "Traceback" not in err, err
        p.stderr_text, p.rows = err, rows_of(path)
        with sqlite3.connect(db) as con:
            p.counters = json.loads(con.execute("SELECT counters FROM scans ORDER BY id DESC").fetchone()[0])
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
        shutil.rmtree(tmp)


def forge(lab, *args, timeout=120):
    x = lab.third_party()
    r = x.run([sys.executable, FORGER, args[0], x.ifname, lab.scanner_mac, lab.scanner_addr, *map(str, args[1:])],
              capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split()[-1])


def summary(p):
    """The counters of the whole command (the store's), and what the summary line says."""
    s = parse_summary(p.stderr_text)
    s.update(bad_cookie=p.counters["bad_cookie"], forged=p.counters["suspected_forgeries"])
    return s


def truth(lab):
    want = lab.expected(TCP_PORTS, proto="tcp")
    want.update(lab.expected(UDP_PORTS, proto="udp"))
    return want


def test_flood_at_10x_during_a_tcp_and_udp_scan(lab):
    n_hosts = SPEC.network.num_addresses
    probes = n_hosts * (len(TCP_PORTS) + len(UDP_PORTS))
    rate = 400
    args = ["198.18.0.0/26", "-Pn", "-sS", "-sU", "-p", "T:22,23,8080,U:53,123,161,2003", "--show-all",
            "--rate", rate, "--retries", "1", "--wait", "2", "--max-udp-rounds", "0"]
    with scan_running(lab, args) as p:
        seconds = probes / rate + 1.5                      # the first pass, the retry pass, part of the wait
        sent = forge(lab, "flood", int(SPEC.network.network_address), n_hosts, 10 * rate, seconds,
                     "tcp,udp,quote", ",".join(map(str, TCP_PORTS)), ",".join(map(str, UDP_PORTS)))
        assert p.poll() is None, "the scan ended before the flood did"
    got = {(r["ip"], r["port"]): (r["state"], r["reason"]) for r in p.rows}
    s = summary(p)
    print(f"flood: {sent} forged TCP/UDP/ICMP-quote replies at {10 * rate}/s against {probes} probes at "
          f"{rate}/s; {s['bad_cookie']} failed the cookie check, {s['forged']} suspected forgeries, "
          f"{s['pcap_dropped']} dropped by capture")
    assert got == truth(lab), diff(got, truth(lab))
    assert len(p.rows) == probes                           # every port once, none twice
    assert s["bad_cookie"] + s["forged"] >= 0.95 * sent - s["pcap_dropped"], s   # the flood was seen


def test_flood_at_10x_during_icmp_host_discovery(lab):
    """Echo and timestamp discovery (-PE -PP), then a SYN scan of port 22 of the hosts found up."""
    n_hosts = SPEC.network.num_addresses
    probes = 2 * n_hosts
    rate = 100
    args = ["198.18.0.0/26", "-PE", "-PP", "-sS", "-p", "22", "--show-all", "--rate", rate, "--retries", "1",
            "--wait", "1"]
    with scan_running(lab, args) as p:
        seconds = probes / rate + 1.0
        sent = forge(lab, "flood", int(SPEC.network.network_address), n_hosts, 10 * rate, seconds, "icmp,quote",
                     "22", "")
        assert p.poll() is None, "the scan ended before the flood did"
    got = {(r["ip"], r["port"]): (r["state"], r["reason"]) for r in p.rows}
    s = summary(p)
    print(f"flood: {sent} forged echo/timestamp replies and ICMP errors at {10 * rate}/s against {probes} "
          f"discovery probes at {rate}/s; {s['bad_cookie']} failed the cookie check; "
          f"{len(got)} hosts found up and scanned")
    want = {(ip, 22): ("open", "syn-ack") for ip in lab.live_hosts()}
    assert got == want, diff(got, want)
    assert s["bad_cookie"] >= 0.95 * sent - s["pcap_dropped"], s


def test_every_source_port_from_a_dead_host(lab):
    """The attack that forged UDP results every time with the port cookie alone."""
    dead, live = "198.18.0.1", "198.18.0.0"
    ports = [53, 123, 161, 40000]
    args = [f"{live},{dead}", "-Pn", "-sU", "-p", ",".join(map(str, ports)), "--show-all", "--rate", "1000",
            "--retries", "0", "--wait", "12", "--max-udp-rounds", "0"]
    with scan_running(lab, args) as p:
        t0 = time.monotonic()
        sent = forge(lab, "sweep", dead, ",".join(map(str, ports)))
        took = time.monotonic() - t0
        assert p.poll() is None, "the scan ended before the forger did"
    got = {(r["ip"], r["port"]): (r["state"], r["reason"]) for r in p.rows}
    s = summary(p)
    print(f"targeted: {sent} forged packets ({len(ports)} ports x 32768 source ports x UDP answer + ICMP "
          f"unreachable) in {took:.1f}s; {s['bad_cookie']} failed the cookie check, {s['forged']} suspected "
          f"forgeries, {s['pcap_dropped']} dropped by capture")
    assert sent == len(ports) * 32768 * 2
    want = {(dead, port): ("open|filtered", "no-response") for port in ports}
    want.update({(live, port): ("open", "udp-response") if port == 53 else ("closed", "port-unreach")
                 for port in ports})
    assert got == want, diff(got, want)
    # seen by the parser (a loaded machine may drop some on the way, before the capture)
    assert s["bad_cookie"] + s["forged"] >= 0.8 * sent, s


def test_every_source_port_from_a_dead_ipv6_host():
    """The same over IPv6: UDP answers and ICMPv6 port unreachables (the quoted flow label guessed)."""
    spec = LabSpec(prefix="198.18.0.0/30", prefix6="2001:2::/126", live_every=2, open_tcp=(), open_udp=(53,),
                   drop_tcp=(), reject_tcp={})
    with redirected_lab(spec) as lab6:
        dead, live = "2001:2::1", "2001:2::"
        ports = [53, 123, 40000]
        args = [live, dead, "-Pn", "-sU", "-p", ",".join(map(str, ports)), "--show-all", "--rate", "1000",
                "--retries", "0", "--wait", "10", "--max-udp-rounds", "0"]
        with scan_running(lab6, args) as p:
            x = lab6.third_party()
            t0 = time.monotonic()
            r = x.run([sys.executable, FORGER, "sweep6", x.ifname, lab6.scanner_mac, lab6.scanner_addr6, dead,
                       ",".join(map(str, ports))], capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
            sent, took = int(r.stdout.split()[-1]), time.monotonic() - t0
            assert p.poll() is None, "the scan ended before the forger did"
    got = {(r["ip"], r["port"]): (r["state"], r["reason"]) for r in p.rows}
    s = summary(p)
    print(f"targeted IPv6: {sent} forged packets in {took:.1f}s; {s['bad_cookie']} failed the cookie check, "
          f"{s['forged']} suspected forgeries, {s['pcap_dropped']} dropped by capture")
    assert sent == len(ports) * 32768 * 2
    want = {(dead, port): ("open|filtered", "no-response") for port in ports}
    want.update({(live, port): ("open", "udp-response") if port == 53 else ("closed", "port-unreach")
                 for port in ports})
    assert got == want, diff(got, want)
    # seen by the parser (a loaded machine may drop some on the way, before the capture)
    assert s["bad_cookie"] + s["forged"] >= 0.8 * sent, s
