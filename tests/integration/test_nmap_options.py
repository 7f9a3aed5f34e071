"""nmap's options on the lab, by what they do: -v's "Discovered" lines, --open in every output,
-sL sending nothing, --packet-trace's SENT/RCVD lines, -r's order, --ttl/--data-length in the
probes actually sent, --max-parallelism capping raw probes in flight, --host-timeout, -R, and the
adaptive timing (loss: the window backs off and coverage holds; no loss: the scan ends right
after its last reply). Needs root; fails without it."""
from __future__ import annotations

import os
import re
import subprocess
import tempfile

import pytest

from scanner.lab import LabSpec

from conftest import diff, make_lab, read_ndjson, require_root, scanner_argv, scanner_env, scan

pytestmark = pytest.mark.lab
HOST = "198.18.0.5"
OPEN = (22, 80, 443)


@pytest.fixture(scope="module")
def lab():
    with make_lab(LabSpec(prefix="198.18.0.0/29")) as the_lab:
        yield the_lab


def run(lab, *args, timeout=60.0) -> subprocess.CompletedProcess:
    proc = lab.run(scanner_argv(*args, "--no-db"), capture_output=True, text=True, env=scanner_env(),
                   timeout=timeout)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return proc


def trace_lines(stdout: str, direction: str) -> list:
    return re.findall(rf"^{direction} \(([\d.]+)s\) (.*)$", stdout, re.M)


def test_verbose_lists_open_ports_as_found(lab):
    out = run(lab, HOST, "-p", "1-1000", "-v").stdout
    found = re.findall(r"^Discovered open port (\d+)/tcp on (\S+)$", out, re.M)
    assert sorted(found) == sorted((str(p), HOST) for p in OPEN)
    assert re.search(r"^Initiating SYN Stealth Scan at \d\d:\d\d$", out, re.M)
    assert re.search(r"^Completed SYN Stealth Scan at .*, [\d.]+s elapsed \(1000 total ports\)$", out, re.M)
    assert out.index("Discovered open port") < out.index("Scan report for")   # as found, before the table
    assert "REASON" not in out and "REASON" in run(lab, HOST, "-p", "22", "-vv").stdout


def test_open_only_in_every_output(lab):
    with tempfile.TemporaryDirectory() as d:
        base = os.path.join(d, "o")
        proc, got = scan(lab, [HOST, "-p", "20-25,80,443,8080", "--open", "-oA", base, "--no-db"])
        assert set(got) == {(HOST, p) for p in OPEN} and all(v[0] == "open" for v in got.values())
        normal = open(base + ".nmap").read()
        assert "closed" not in normal and "filtered" not in normal and "22/tcp" in normal
        assert "/closed/" not in open(base + ".gnmap").read()
        assert 'state="closed"' not in open(base + ".xml").read()
        assert "closed" not in proc.stdout and "443/tcp" in proc.stdout


def test_list_scan_sends_nothing(lab):
    out = run(lab, "198.18.0.1,3", "198.18.0.4-5", "-sL", "--packet-trace").stdout
    assert out.splitlines() == [f"Nmap scan report for 198.18.0.{i}" for i in (1, 3, 4, 5)] + [
        out.splitlines()[-1]]
    assert re.fullmatch(r"Nmap done: 4 IP addresses \(0 hosts up\) scanned in [\d.]+ seconds", out.splitlines()[-1])
    assert "SENT" not in out


def test_packet_trace_order_ttl_and_padding(lab):
    out = run(lab, HOST, "-Pn", "-p", "20-30,80,443", "-r", "--ttl", "9", "--data-length", "24",
              "--packet-trace", "--max-retries", "0").stdout
    sent = trace_lines(out, "SENT")
    ports = [int(re.search(r"> [\d.]+:(\d+) ", text).group(1)) for _, text in sent]
    assert ports == list(range(20, 31)) + [80, 443]                      # -r: in order
    assert all(" S ttl=9 " in text and "iplen=84" in text for _, text in sent)   # 20 + 40 + 24
    rcvd = trace_lines(out, "RCVD")
    assert len(rcvd) == len(sent)                                        # every port answers
    assert sum(" SA " in text for _, text in rcvd) == 3
    assert re.search(r"^22/tcp +open", out, re.M)                        # padded probes still answered


def test_max_parallelism_caps_raw_probes_in_flight(lab):
    # A long RTT floor: on a loaded machine a late reply must not count as lost (a resend).
    out = run(lab, HOST, "-Pn", "-p", "20-40", "--max-parallelism", "1", "--min-rtt-timeout", "2s",
              "--packet-trace").stdout
    timed = re.findall(r"^(SENT|RCVD) \(([\d.]+)s\)", out, re.M)
    assert [e for e, _ in timed].count("SENT") == 21
    # One probe in flight: each probe is answered before the next leaves. In the order of the
    # trace's own times: a reply and the next probe may be printed from different threads.
    events = [e for e, _ in sorted(timed, key=lambda e: float(e[1]))]
    assert events == ["SENT", "RCVD"] * 21, out


def test_host_timeout_gives_up(lab):
    proc = run(lab, HOST, "-Pn", "-p", "8080", "--host-timeout", "200ms", "--initial-rtt-timeout", "5s", "-oJ", "-")
    assert "--host-timeout" in proc.stderr and proc.stdout == ""       # nothing reported for the host


def test_reverse_dns_names_hosts_as_nmap_does():
    require_root()
    proc = subprocess.run(scanner_argv("127.0.0.1", "-sT", "-Pn", "-p", "1", "-R", "--no-db", "-oG", "-"),
                          capture_output=True, text=True, env=scanner_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    name = __import__("socket").gethostbyaddr("127.0.0.1")[0]
    assert f"Host: 127.0.0.1 ({name})" in proc.stdout


def test_append_output_keeps_earlier_runs(lab):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "scan.nmap")
        run(lab, HOST, "-p", "22", "-oN", path)
        run(lab, HOST, "-p", "80", "-oN", path, "--append-output")
        text = open(path).read()
        assert text.count("# Nmap") >= 2 and "22/tcp" in text and "80/tcp" in text


def test_adaptive_scan_ends_within_a_few_round_trips_of_its_last_reply(lab):
    out = run(lab, HOST, "-Pn", "-p", "1-3000", "--packet-trace", "-v").stdout
    last_reply = max(float(t) for t, _ in trace_lines(out, "RCVD"))
    elapsed = float(re.search(r"Completed SYN Stealth Scan at .*, ([\d.]+)s elapsed", out).group(1))
    assert len(trace_lines(out, "RCVD")) == 3000                          # every port answered
    assert elapsed - last_reply < 0.1, (elapsed, last_reply)


def test_adaptive_window_backs_off_on_loss_and_coverage_holds():
    require_root()
    with make_lab(LabSpec(prefix="198.18.0.0/29", loss_percent=10)) as lossy:
        proc, got = scan(lossy, [HOST, "-Pn", "-p", "1-3000", "-d", "--show-all", "--no-db"], timeout=120)
        m = re.search(r"raw: window ended at (\d+), (\d+) back-offs on loss", proc.stdout)
        assert m and int(m.group(2)) >= 1, proc.stdout
        want = {k: v for k, v in lossy.expected(range(1, 3001)).items() if k[0] == HOST}
        # 10% loss each way: a port is wrong only if every one of its tries was lost.
        wrong = [k for k in want if got.get(k, (None,))[0] != want[k][0]]
        assert len(wrong) <= 1, diff(got, want)


def test_fixed_source_port(lab):
    """-g: every probe leaves from that port; the replies, checked by the sequence cookie alone,
    give the same states as a scan with cookie ports."""
    out = run(lab, HOST, "-Pn", "-g", "53", "-p", "20-25,80,443,8080", "--packet-trace", "--max-retries", "1").stdout
    sent = trace_lines(out, "SENT")
    assert sent and all(re.match(r"TCP [\d.]+:53 > ", text) for _, text in sent)
    proc, got = scan(lab, [HOST, "-Pn", "-g", "53", "-p", "20-25,80,443,8080", "--no-db", "--show-all"])
    want = {k: v for k, v in lab.expected([20, 21, 22, 23, 24, 25, 80, 443, 8080]).items() if k[0] == HOST}
    assert {k: v[0] for k, v in got.items()} == {k: v[0] for k, v in want.items()}, diff(got, want)
