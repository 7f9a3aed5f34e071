"""Scale features on the namespace lab: an IPv6 hitlist given with -iL (packed 16-byte rows)
finds the lab's hosts. Needs root; fails without it."""
from __future__ import annotations

import ipaddress
import random

import pytest

from scanner.lab import LabSpec

from conftest import diff, make_lab, parse_summary, read_ndjson, scan, scanner_argv, scanner_env

pytestmark = pytest.mark.lab

SPEC6 = dict(prefix="198.18.3.0/30", prefix6="2001:2::100/120", live_every=4, open_tcp=(22, 80),
             drop_tcp=(8080,), reject_tcp={8443: "admin-prohibited"})
PORTS = [22, 80, 443, 8080, 8443]


@pytest.fixture(scope="module")
def lab6():
    with make_lab(LabSpec(**SPEC6)) as lab:
        yield lab


def test_an_ipv6_hitlist_finds_the_lab_hosts(lab6, tmp_path):
    """A hitlist of part of the lab's addresses (shuffled, repeated, in the long and short forms,
    with comments) is scanned exactly: the results are the lab's own for those addresses."""
    rng = random.Random(3)
    hosts = lab6.hosts6()
    chosen = rng.sample(hosts, 100) + lab6.live_hosts(6)[:5]
    lines = [ipaddress.IPv6Address(a).exploded if i % 2 else a for i, a in enumerate(chosen)]
    lines += rng.sample(chosen, 20)                                      # repeats
    rng.shuffle(lines)
    path = tmp_path / "hitlist.txt"
    path.write_text("# lab hitlist\n" + "\n".join(f"{a}   # host {i}" if i % 7 == 0 else a
                                                    for i, a in enumerate(lines)) + "\n")
    proc, got = scan(lab6, ["-iL", str(path), "-Pn", "-p", ",".join(map(str, PORTS)), "--show-all",
                            "--rate", "20000", "--wait", "1"])
    keep = {str(ipaddress.IPv6Address(a)) for a in chosen}
    want = {k: v for k, v in lab6.expected(PORTS, family=6).items() if k[0] in keep}
    assert len(want) == len(keep) * len(PORTS) and any(v[0] == "open" for v in want.values())
    assert got == want, diff(got, want)
    summary = parse_summary(proc.stderr)
    assert summary["hosts"] == len(keep) and summary["bad_cookie"] == 0 and summary["pcap_dropped"] == 0


SPEC4 = dict(prefix="198.18.4.0/24", live_every=4, open_tcp=(22, 80), drop_tcp=(8080,),
             reject_tcp={8443: "admin-prohibited"})
PORTS4 = [22, 80, 443, 8080, 8443]


@pytest.fixture(scope="module")
def lab4():
    with make_lab(LabSpec(**SPEC4)) as lab:
        yield lab


def scan_windowed(lab, args, window, tmp_path, timeout=120):
    """A scan whose answered-probe bitmap is capped at `window` probes (SCANNER_DEDUP_WINDOW)."""
    out = tmp_path / "out.ndjson"
    env = dict(scanner_env(), SCANNER_DEDUP_WINDOW=str(window))
    proc = lab.run(scanner_argv(*args, "-oJ", str(out)), capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return proc, read_ndjson(out)[0]


@pytest.mark.parametrize("window", [64, 1000])
def test_windowed_dedup_reports_each_probe_once_and_retries_only_the_unanswered(lab4, tmp_path, window):
    """With the bitmap capped far below the shard (1280 probes in windows of 64 or 1000), the
    scan is the lab's exactly: every probe once (read_ndjson refuses a repeat), and the packets
    sent are the probes plus `retries` resends of each probe that never answers, nothing more."""
    retries = 2
    proc, got = scan_windowed(lab4, ["198.18.4.0/24", "-Pn", "-p", ",".join(map(str, PORTS4)), "--show-all",
                                     "--rate", "5000", "--retries", str(retries), "--wait", "0.3", "--seed", "4"],
                              window, tmp_path)
    want = lab4.expected(PORTS4)
    assert got == want, diff(got, want)
    silent = sum(1 for v in want.values() if v == ("filtered", "no-response"))
    summary = parse_summary(proc.stderr)
    assert 0 < silent < len(want)
    assert summary["sent"] == len(want) + retries * silent, (summary, silent)
    assert summary["bad_cookie"] == 0 and summary["pcap_dropped"] == 0


def masscan_readscan(path, *args) -> list[str]:
    import subprocess
    r = subprocess.run(["masscan", "--readscan", str(path), "--show", "closed", *args], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_masscan_binary_output_both_ways(lab4, tmp_path):
    """-oB is masscan's binary format: masscan --readscan lists from scanner's file exactly the
    open and closed ports of the same scan's NDJSON; masscan's own binary file (masscan
    --readscan FILE -oB, masscan's writer) read back by scanner --readscan gives those rows
    again, in any format."""
    import shutil
    import subprocess
    assert shutil.which("masscan"), "masscan is needed (scripts/test-packages.txt)"
    ours = tmp_path / "scan.bin"
    proc, got = scan(lab4, ["198.18.4.0/24", "-Pn", "-p", ",".join(map(str, PORTS4)), "--rate", "20000",
                            "--wait", "1", "-oB", str(ours)])
    want = {k: v for k, v in lab4.expected(PORTS4).items() if v[0] in ("open", "closed")}
    assert {k: v for k, v in got.items() if v[0] in ("open", "closed")} == want
    listed = masscan_readscan(ours, "-oL", "-")
    seen = {(f[3], int(f[2])): f[0] for f in (line.split() for line in listed if not line.startswith("#"))}
    assert seen == {k: v[0] for k, v in want.items()}
    theirs = tmp_path / "masscan.bin"
    masscan_readscan(ours, "-oB", str(theirs))
    # masscan's writer, given scanner's records, writes the very same records and trailer (its
    # header's start time may be another second): the format is exact
    mine, its = ours.read_bytes(), theirs.read_bytes()
    assert its[99:] == mine[99:] and len(mine) == 2 * 99 + 15 * len(want)
    assert its[:14] == mine[:14] == b"masscan/1.1\ns:"
    back = tmp_path / "back.ndjson"
    r = subprocess.run(scanner_argv("--readscan", str(theirs), "-oJ", str(back), "--csv", str(tmp_path / "b.csv")),
                       capture_output=True, text=True, env=scanner_env(), timeout=60)
    assert r.returncode == 0 and not r.stderr, r.stderr
    assert read_ndjson(back)[0] == want
    rows = (tmp_path / "b.csv").read_text().splitlines()
    assert rows[0].startswith("ip,port,proto,state") and len(rows) == 1 + len(want)


def test_windowed_scan_interrupted_then_resumed_equals_whole(lab4, tmp_path):
    """Window by window (64 probes), a scan stopped with SIGINT mid-way and resumed gives the
    lab's results, none twice: the resume file holds the cursor and one window's bitmap."""
    import json
    import signal
    import subprocess
    import time
    env = dict(scanner_env(), SCANNER_DEDUP_WINDOW="64")
    args = ["198.18.4.0/24", "-Pn", "-p", ",".join(map(str, PORTS4)), "--show-all", "--rate", "1000",
            "--retries", "1", "--wait", "0.3", "-oJ", "part.ndjson", "--no-db"]
    p = lab4.popen(scanner_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                   cwd=tmp_path)
    time.sleep(4)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 0 and "Traceback" not in err, err
    resume_file = tmp_path / "scanner-resume.json"
    assert resume_file.exists(), err
    cp = json.loads(resume_file.read_text())["checkpoint"]
    assert cp["base"] > 0 and len(cp["bitmap"]) < 64, cp        # a later window; 8 bytes of bits, compressed
    first, _ = read_ndjson(tmp_path / "part.ndjson")
    want = lab4.expected(PORTS4)
    assert 0 < len(first) < len(want)
    r = lab4.run(scanner_argv("--resume", str(resume_file)), capture_output=True, text=True, env=env, cwd=tmp_path,
                 timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    got, _ = read_ndjson(tmp_path / "part.ndjson")             # no (ip, port) twice
    assert got == want, diff(got, want)
