"""Outputs, the store and the scan lifecycle from the command line, against loopback only: every
format parsed by the tools its users use (xmllint with nmap's DTD, nmap's ndiff, python-libnmap,
csv), scanner history/show/diff, progress lines, bad output paths, and a disk that fills up."""
from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import require_root, scanner_argv, scanner_env

DTD = "/usr/share/nmap/nmap.dtd"


def run(*args, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(scanner_argv(*args), capture_output=True, text=True, env=scanner_env(),
                          timeout=timeout, stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def listening():
    """A TCP port open on 127.0.0.1 (an ephemeral port, so parallel runs do not collide)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def technique() -> list:
    return ["-sS"] if os.geteuid() == 0 else ["-sT"]


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    return r


def one_line_error(r: subprocess.CompletedProcess, *words, code: int = 2) -> str:
    assert r.returncode == code, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("scanner: error:")]
    assert len(errors) == 1, r.stderr
    for w in words:
        assert w in errors[0], errors[0]
    return errors[0]


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"this test needs {tool} (apt-get install {'libxml2-utils' if tool == 'xmllint' else tool})",
                    pytrace=False)


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "scans.db")


def test_every_format_at_once(tmp_path, db):
    need("xmllint")
    with listening() as port:
        closed = closed_port()
        out = {k: str(tmp_path / f"scan.{k}") for k in ("nmap", "xml", "gnmap", "json", "csv", "list")}
        r = ok(run("127.0.0.1", "-p", f"{closed},{port}", *technique(), "--wait", "0.5", "--db", db,
                   "-oN", out["nmap"], "-oX", out["xml"], "-oG", out["gnmap"], "-oJ", out["json"],
                   "--csv", out["csv"], "-oL", out["list"]))
    want = {closed: "closed", port: "open"}
    assert "Scan report for 127.0.0.1" in r.stdout          # the terminal table is still there

    # XML: valid per nmap's DTD, and what it says
    v = subprocess.run(["xmllint", "--noout", "--dtdvalid", DTD, out["xml"]], capture_output=True, text=True)
    assert v.returncode == 0, v.stderr
    root = ET.parse(out["xml"]).getroot()
    assert {int(p.get("portid")): p.find("state").get("state") for p in root.iter("port")} == want
    # python-libnmap
    from libnmap.parser import NmapParser
    report = NmapParser.parse_fromfile(out["xml"])
    assert report.hosts_up == 1 and report.hosts[0].address == "127.0.0.1"
    assert {s.port: s.state for s in report.hosts[0].services} == want
    assert report.hosts[0].get_open_ports() == [(port, "tcp")]
    # grepable
    lines = open(out["gnmap"]).read().splitlines()
    assert lines[0].startswith("# Nmap ") and lines[-1].startswith("# Nmap done at ")
    ports_line = next(line for line in lines if "\tPorts: " in line)
    fields = [p.split("/") for p in ports_line.split("\tPorts: ")[1].split(", ")]
    assert {int(f[0]): f[1] for f in fields} == want and all(f[2] == "tcp" and len(f) == 8 for f in fields)
    # normal
    text = open(out["nmap"]).read()
    assert "Nmap scan report for 127.0.0.1" in text and f"{port}/tcp" in text
    # NDJSON, CSV, masscan list
    assert {d["port"]: d["state"] for d in map(json.loads, open(out["json"]))} == want
    with open(out["csv"], newline="") as f:
        assert {int(row["port"]): row["state"] for row in csv.DictReader(f)} == want
    listed = open(out["list"]).read().splitlines()
    assert listed[0] == "#masscan" and listed[-1] == "# end"
    assert [line.split()[:4] for line in listed[1:-1]] == [["open", "tcp", str(port), "127.0.0.1"]]
    # and the store has it
    rows = sqlite3.connect(db).execute("SELECT port, state FROM results").fetchall()
    assert dict(rows) == want


@pytest.mark.parametrize("fmt", ["-oX", "-oG", "-oN", "--csv", "-oL", "-oJ"])
def test_dash_is_stdout(fmt, db):
    with listening() as port:
        r = ok(run("127.0.0.1", "-p", str(port), "-sT", "--db", db, fmt, "-"))
    assert str(port) in r.stdout and "Scan report for" not in r.stdout
    if fmt == "-oX":
        assert ET.fromstring(r.stdout).tag == "nmaprun"


def test_oA(tmp_path, db):
    need("xmllint")
    with listening() as port:
        ok(run("127.0.0.1", "-p", str(port), "-sT", "--db", db, "-oA", str(tmp_path / "base")))
    assert sorted(os.listdir(tmp_path)) == ["base.gnmap", "base.nmap", "base.xml", "scans.db"] or \
        {"base.gnmap", "base.nmap", "base.xml"} <= set(os.listdir(tmp_path))
    assert subprocess.run(["xmllint", "--noout", "--dtdvalid", DTD, str(tmp_path / "base.xml")]).returncode == 0


def test_ports_that_changed_between_two_scans(tmp_path, db):
    """ndiff and python-libnmap on our XML, and scanner diff on the store, see the same change."""
    need("ndiff")
    with listening() as stays:
        with listening() as goes:
            ok(run("127.0.0.1", "-p", f"{stays},{goes}", "-sT", "--db", db, "-oX", str(tmp_path / "a.xml")))
        ok(run("127.0.0.1", "-p", f"{stays},{goes}", "-sT", "--db", db, "-oX", str(tmp_path / "b.xml")))
    nd = subprocess.run(["ndiff", str(tmp_path / "a.xml"), str(tmp_path / "b.xml")], capture_output=True, text=True)
    assert nd.returncode == 1, nd.stdout + nd.stderr           # ndiff: 1 means "different"
    assert re.search(rf"^-{goes}/tcp\s+open\s", nd.stdout, re.M), nd.stdout
    assert re.search(rf"^\+{goes}/tcp\s+closed\s", nd.stdout, re.M), nd.stdout
    assert f"{stays}/tcp" not in nd.stdout
    from libnmap.parser import NmapParser
    a, b = (NmapParser.parse_fromfile(str(tmp_path / f)) for f in ("a.xml", "b.xml"))
    assert f"NmapService::tcp.{goes}" in b.hosts[0].diff(a.hosts[0]).changed()
    assert f"NmapService::tcp.{stays}" in b.hosts[0].diff(a.hosts[0]).unchanged()

    r = run("diff", "1", "2", "--db", db)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"-{goes}/tcp open" in r.stdout and f"+{goes}/tcp closed" in r.stdout
    assert f"{stays}/tcp" not in r.stdout
    same = run("diff", "2", "2", "--db", db)
    assert same.returncode == 0 and "No differences" in same.stdout

    hist = ok(run("history", "--db", db)).stdout.splitlines()
    assert [line.split()[0] for line in hist] == ["ID", "2", "1"]
    shown = ok(run("show", "1", "--db", db, "-f", "xml")).stdout
    assert {int(p.get("portid")): p.find("state").get("state") for p in ET.fromstring(shown).iter("port")} == {
        stays: "open", goes: "open"}
    shown_g = ok(run("show", "last", "--db", db, "-f", "grepable")).stdout
    assert f"{goes}/closed/tcp" in shown_g


def test_show_every_format_from_the_store(tmp_path, db):
    need("xmllint")
    with listening() as port:
        ok(run("127.0.0.1", "-p", str(port), "-sT", "--db", db))
    for fmt in ("normal", "xml", "grepable", "json", "csv", "list"):
        r = ok(run("show", "1", "--db", db, "-f", fmt, "-o", str(tmp_path / f"out.{fmt}")))
        assert str(port) in open(tmp_path / f"out.{fmt}").read(), fmt
    assert subprocess.run(["xmllint", "--noout", "--dtdvalid", DTD, str(tmp_path / "out.xml")]).returncode == 0
    one_line_error(run("show", "1", "--db", db, "-f", "yaml"), "--format")
    one_line_error(run("show", "9", "--db", db), "no scan 9")
    one_line_error(run("history", "--db", str(tmp_path / "none.db")), "no scan database")


BAD_OUTPUTS = {
    "missing directory": ["-oX", "/nonexistent/dir/out.xml"],
    "a directory": ["--csv", "/tmp"],
    "two on stdout": ["-oX", "-", "-oG", "-"],
    "same file twice": ["-oX", "/tmp/scanner-same-file", "-oN", "/tmp/scanner-same-file"],
    "-oA to stdout": ["-oA", "-"],
    "bad --db": ["--db", "/proc/scans.db"],
    "bad --stats-every": ["--stats-every", "0"],
}


@pytest.mark.parametrize("args", BAD_OUTPUTS.values(), ids=BAD_OUTPUTS.keys())
def test_bad_outputs_are_one_line_exit_2_before_any_probe(args, tmp_path):
    # the target is loopback and nothing listens: even a regression could only probe 127.0.0.1
    r = run("127.0.0.1", "-p", str(closed_port()), "-sT", *(args if "--db" in args else [*args, "--db", str(tmp_path / "s.db")]))
    one_line_error(r)
    assert r.stdout == ""
    if "--db" not in args:   # refused before the scan started: nothing recorded
        assert not os.path.exists(tmp_path / "s.db") or \
            sqlite3.connect(tmp_path / "s.db").execute("SELECT COUNT(*) FROM scans").fetchone() == (0,)


def test_progress_lines(db):
    with listening() as port:
        r = ok(run("127.0.0.1", "-p", f"1-300,{port}", "-sT", "--rate", "200", "--db", db, "--stats-every", "0.3"))
    lines = [line for line in r.stderr.splitlines() if line.startswith("scanner: [")]
    assert len(lines) >= 2, r.stderr
    assert "% done" in lines[0] and "sent: " in lines[0] and "replies: " in lines[0] and "found: " in lines[0]
    assert "\r" not in r.stderr          # stderr is not a terminal: no live line
    quiet = ok(run("127.0.0.1", "-p", str(closed_port()), "-sT", "--db", db, "-q"))
    assert quiet.stderr == ""


def test_live_status_line_on_a_terminal(db):
    """With stderr a terminal (a pty), the status line is drawn and erased in place."""
    import pty
    master, slave = pty.openpty()
    try:
        with listening() as port:
            p = subprocess.run(scanner_argv("127.0.0.1", "-p", f"1-200,{port}", "-sT", "--rate", "200", "--db", db),
                               stdout=subprocess.PIPE, stderr=slave, env=scanner_env(), timeout=60,
                               stdin=subprocess.DEVNULL)
        os.close(slave)
        slave = None
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    err = b"".join(chunks).decode()
    assert p.returncode == 0, err
    assert "\r\x1b[K" in err and "% done" in err and "found: " in err


@pytest.fixture
def tiny_disk(tmp_path):
    """A 16 KiB tmpfs: output files on it fill up mid-scan."""
    require_root("mounting a tmpfs")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_mid_scan_keeps_scanning_and_storing(tiny_disk, tmp_path, db):
    ports = "1-3000"
    with listening() as port:
        r = run("127.0.0.1", "-p", f"{ports},{port}", "-sT", "--rate", "0", "--show-all", "--db", db,
                "-oJ", str(tiny_disk / "scan.json"), "-oX", str(tiny_disk / "scan.xml"),
                "--csv", str(tmp_path / "scan.csv"), "-q")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    errors = r.stderr.splitlines()
    assert len(errors) == 2 and all(e.startswith("scanner: error: writing -o") for e in errors), r.stderr
    assert all("No space left on device" in e and "scanner show 1" in e for e in errors), r.stderr
    assert any("-oJ" in e and "scan.json" in e for e in errors) and any("-oX" in e for e in errors)
    # the output that had room is complete, and so is the store
    with open(tmp_path / "scan.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 3001
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM results WHERE scan_id=1").fetchone() == (3001,)
    assert con.execute("SELECT ended IS NOT NULL, interrupted FROM scans").fetchone() == (1, 0)
    # and a full XML can still be had from the store
    shown = ok(run("show", "1", "--db", db, "-f", "xml", "--show-all")).stdout
    assert len(list(ET.fromstring(shown).iter("port"))) == 3001


@pytest.mark.lab
def test_lab_scan_xml_many_hosts(lab_factory, tmp_path):
    """A real SYN scan of a namespace lab (many hosts, every state): the XML is valid per nmap's
    DTD and python-libnmap reads every host; grepable agrees; the store has every result."""
    need("xmllint")
    from scanner.lab import LabSpec
    lab = lab_factory(LabSpec(prefix="198.18.0.0/26", live_every=4))
    db = str(tmp_path / "scans.db")
    base = str(tmp_path / "lab")
    r = lab.run(scanner_argv("198.18.0.0/26", "-p", "22,23,80,443,8080,8443", "--wait", "1", "--db", db,
                             "-oA", base, "-q"),
                capture_output=True, text=True, env=scanner_env(), timeout=120)
    ok(r)
    v = subprocess.run(["xmllint", "--noout", "--dtdvalid", DTD, base + ".xml"], capture_output=True, text=True)
    assert v.returncode == 0, v.stderr
    from libnmap.parser import NmapParser
    report = NmapParser.parse_fromfile(base + ".xml")
    assert report.hosts_total == 64 and report.hosts_up == 16
    for host in report.hosts:
        states = {s.port: s.state for s in host.services}
        assert states == {22: "open", 23: "closed", 80: "open", 443: "open", 8080: "filtered",
                          8443: "filtered"}, (host.address, states)
    up = [line for line in open(base + ".gnmap") if "\tPorts: " in line]
    assert len(up) == 16 and all("22/open/tcp//ssh///" in line for line in up)
    con = sqlite3.connect(db)
    # without --show-all the store keeps the answers (16 live hosts x 5 answering ports) and
    # only counts the probes nobody answered; hosts found down by discovery are not port-scanned
    assert con.execute("SELECT COUNT(*) FROM results").fetchone() == (16 * 5,)
    counters = json.loads(con.execute("SELECT counters FROM scans").fetchone()[0])
    assert sum(counters["states"].values()) == 16 * 6
