"""Runtime faults end cleanly: the interface going away mid-scan, a resume file that cannot be
written, a store on a full disk. Each gives one error line and exit 1, keeps every result
received, and leaves the outputs and the store saying the scan failed, never that it finished."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from integration_helpers import make_lab, read_ndjson, require_lab_tools, require_root, scanner_argv, scanner_env

PREFIX = "198.18.0.0/22"
PORTS = "22,23,80,443"


@pytest.fixture
def lab():
    require_lab_tools()
    from scanner.lab import LabSpec
    with make_lab(LabSpec(prefix=PREFIX, live_every=2, open_tcp=(22, 80, 443))) as the_lab:
        yield the_lab


@pytest.fixture
def tiny_disk(tmp_path):
    """A 512 KiB tmpfs, for the test to fill up."""
    require_root("mounting a tmpfs")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(directory) -> None:
    try:
        with open(directory / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:         # ENOSPC: full
        pass


def wait_for_results(path, timeout: float = 20.0) -> None:
    """Until the scan has written a result: a loaded machine starts the scanner late, so a fixed
    sleep could interrupt it before its first probe."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"no result in {path} after {timeout} s")


def _catches_sigterm(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        caught = next(line for line in f if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (15 - 1)))


def error_lines(stderr: str) -> list:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("scanner: error:")]


@pytest.mark.lab
def test_interface_down_mid_scan_fails_cleanly_and_resumes(lab, tmp_path):
    args = [PREFIX, "-Pn", "-p", PORTS, "--rate", "1500", "--wait", "1", "--seed", "5",
            "-oJ", "scan.ndjson", "-oX", "scan.xml", "--db", "scans.db"]
    p = lab.popen(scanner_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                  env=scanner_env(), cwd=tmp_path)
    wait_for_results(tmp_path / "scan.ndjson")                # some of the probes answered, not all
    subprocess.run(["ip", "-n", lab.scanner_ns, "link", "set", lab.scanner_if, "down"], check=True)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 1, err
    errors = error_lines(err)
    # Whichever notices first: the capture ("The interface went down") or the sender ("Network is down").
    fault = errors[0].removeprefix("scanner: error: ")
    assert len(errors) == 1 and ("went down" in fault or "sending probes failed" in fault), err
    assert "scan failed; results so far are written. Resume with: scanner --resume" in err
    got, _ = read_ndjson(tmp_path / "scan.ndjson")
    assert 0 < len(got) < 512 * 4
    finished = ET.parse(tmp_path / "scan.xml").getroot().find("runstats/finished")
    assert finished.get("exit") == "error" and finished.get("errormsg") == fault
    con = sqlite3.connect(tmp_path / "scans.db")
    counters, interrupted = con.execute("SELECT counters, interrupted FROM scans").fetchone()
    assert interrupted == 1 and json.loads(counters)["error"] == fault
    history = subprocess.run(scanner_argv("history", "--db", str(tmp_path / "scans.db")), capture_output=True,
                             text=True, env=scanner_env())
    assert "(failed)" in history.stdout

    # The link back up, the scan goes on from its resume file and completes the results.
    subprocess.run(["ip", "-n", lab.scanner_ns, "link", "set", lab.scanner_if, "up"], check=True)
    subprocess.run(["ip", "-n", lab.scanner_ns, "route", "replace", PREFIX, "via", lab.target_link_addr,
                    "dev", lab.scanner_if], check=True)        # the route went with the link
    time.sleep(0.5)
    r = lab.run(scanner_argv("--resume", "scanner-resume.json"), capture_output=True, text=True,
                env=scanner_env(), cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    whole, _ = read_ndjson(tmp_path / "scan.ndjson")      # every result once (read_ndjson checks)
    want = {k: v for k, v in lab.expected([22, 23, 80, 443]).items() if v[1] != "no-response"}
    assert len(want) == 512 * 4 and whole == want


@pytest.mark.lab
def test_resume_file_on_a_full_disk_is_one_line_exit_1(lab, tmp_path, tiny_disk):
    fill(tiny_disk)
    out = tmp_path / "scan.ndjson"
    p = lab.popen(scanner_argv(PREFIX, "-Pn", "-p", PORTS, "--rate", "1000", "--no-db", "-oJ", str(out)),
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=scanner_env(), cwd=tiny_disk)
    wait_for_results(out)
    p.send_signal(2)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 1, err
    errors = error_lines(err)
    assert len(errors) == 1 and "cannot write the resume file" in errors[0] and "No space left" in errors[0], err
    got, _ = read_ndjson(out)                             # what was received is all there
    assert len(got) > 0
    assert not list(tiny_disk.glob(".scanner-resume-*")), "a temporary file was left behind"


def test_store_on_a_full_disk_is_marked_incomplete(tmp_path, tiny_disk):
    require_root("mounting a tmpfs")
    db = tiny_disk / "scans.db"
    from scanner.store import Store
    Store(str(db)).close()                                # with its schema, before the disk fills
    fill(tiny_disk)
    filler = tiny_disk / "filler"
    os.truncate(filler, max(0, filler.stat().st_size - 48 * 1024))   # room to begin, not to finish
    r = subprocess.run(scanner_argv("127.0.0.1", "-sT", "-p", "1-2000", "--rate", "0", "--db", str(db), "-q"),
                       capture_output=True, text=True, env=scanner_env(), timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 1, r.stderr
    errors = error_lines(r.stderr)
    assert errors and all("recording scan" in e or "cannot record" in e for e in errors), r.stderr
    (tiny_disk / "filler").unlink()                       # room again: what does the store say?
    history = subprocess.run(scanner_argv("history", "--db", str(db)), capture_output=True, text=True,
                             env=scanner_env())
    lines = history.stdout.splitlines()[1:]
    assert lines and all(("(failed)" in line or "(unfinished)" in line) for line in lines), history.stdout


@pytest.mark.lab
def test_ctrl_c_before_the_first_probe_still_leaves_a_resume_file(lab, tmp_path):
    """A signal that arrives while the scan is still being planned is not lost, nor a traceback."""
    args = [PREFIX, "-p", PORTS, "--rate", "2000", "--wait", "1", "--no-db", "-oJ", "scan.ndjson"]
    p = lab.popen(scanner_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                  env=scanner_env(), cwd=tmp_path)
    # The moment scanner's first handler is in (it is the one that catches SIGTERM): python has
    # started, the session not yet. A fixed sleep could land before python runs at all.
    deadline = time.monotonic() + 20
    while not _catches_sigterm(p.pid) and time.monotonic() < deadline:
        time.sleep(0.005)
    p.send_signal(2)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0 and "Traceback" not in err, err
    assert (tmp_path / "scanner-resume.json").exists(), err
    r = lab.run(scanner_argv("--resume", "scanner-resume.json"), capture_output=True, text=True,
                env=scanner_env(), cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    got, _ = read_ndjson(tmp_path / "scan.ndjson")
    assert len(got) == 512 * 4
