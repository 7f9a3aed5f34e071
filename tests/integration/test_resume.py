"""Pause and resume on the lab: a scan interrupted at a random point (SIGINT or SIGTERM) and
resumed gives the same results as the scan run whole, with no result written twice, in the
streamed output (NDJSON) and in the ones rewritten at the end (XML), and in the store."""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import make_lab, read_ndjson, require_lab_tools, scanner_argv, scanner_env

PREFIX = "198.18.0.0/22"
PORTS = "22,23,80,443,8080,8443"


@pytest.fixture(scope="module")
def lab():
    require_lab_tools()
    from scanner.lab import LabSpec
    with make_lab(LabSpec(prefix=PREFIX, live_every=4, open_tcp=(22, 80, 443), drop_tcp=(8080,),
                          reject_tcp={8443: "admin-prohibited"})) as the_lab:
        yield the_lab


def xml_ports(path) -> set:
    root = ET.parse(path).getroot()
    return {(h.find("address").get("addr"), int(p.get("portid")), p.find("state").get("state"))
            for h in root.iter("host") for p in h.iter("port")}


def run(lab, workdir, args, **kw):
    return lab.popen(scanner_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                     env=scanner_env(), cwd=workdir, **kw)


@pytest.mark.lab
@pytest.mark.parametrize("sig, stage", [(signal.SIGINT, "discovery"), (signal.SIGTERM, "port scan"),
                                        (signal.SIGINT, "port scan")])
def test_interrupted_then_resumed_equals_whole(lab, tmp_path, sig, stage):
    # Host discovery (1024 hosts x 4 probes, a retry for the silent ones) then the port scan
    # (256 up hosts x 6 ports) at 2000/s; interrupted at a random point of the given stage.
    common = [PREFIX, "-p", PORTS, "--rate", "2000", "--wait", "1", "--reason"]
    whole_dir, part_dir = tmp_path / "whole", tmp_path / "part"
    whole_dir.mkdir()
    part_dir.mkdir()
    whole = run(lab, whole_dir, common + ["-oJ", "whole.ndjson", "-oX", "whole.xml", "--db", "whole.db"])
    _, err = whole.communicate(timeout=60)
    assert whole.returncode == 0, err
    want, _ = read_ndjson(whole_dir / "whole.ndjson")
    assert len(want) == 256 * 5              # every up host: 3 open, 1 closed, 1 rejected (8080 dropped)

    part_args = common + ["-oJ", "part.ndjson", "-oX", "part.xml", "--db", "part.db"]
    p = run(lab, part_dir, part_args)
    began = time.monotonic()
    if stage == "discovery":
        time.sleep(random.uniform(0.2, 1.5))
    else:
        line = p.stderr.readline()           # the discovery stage's summary line
        assert "host discovery" in line, line
        time.sleep(random.uniform(0.05, 0.5))
    delay = time.monotonic() - began
    p.send_signal(sig)                       # `ip netns exec` execs: p.pid is the scanner itself
    _, err = p.communicate(timeout=30)
    assert p.returncode == 0 and "Traceback" not in err, err
    resume_file = part_dir / "scanner-resume.json"
    assert resume_file.exists(), f"no resume file after {sig.name} at {delay:.2f}s:\n{err}"
    assert f"scanner --resume {resume_file}" in err
    first, _ = read_ndjson(part_dir / "part.ndjson")
    assert len(first) < len(want), "the scan finished before it was interrupted"

    r = run(lab, part_dir, ["--resume", str(resume_file)])
    _, err2 = r.communicate(timeout=60)
    assert r.returncode == 0 and "Traceback" not in err2, err2
    got, _ = read_ndjson(part_dir / "part.ndjson")   # asserts that no (ip, port) appears twice
    assert got == want, f"interrupted at {delay:.2f}s ({len(first)} results then)"
    assert not resume_file.exists(), "the resume file should be gone once the scan completed"
    # The XML is rewritten whole at the end of the resumed run.
    assert xml_ports(part_dir / "part.xml") == xml_ports(whole_dir / "whole.xml")
    # One scan record in the store, continued, complete, with no duplicate result.
    con = sqlite3.connect(part_dir / "part.db")
    scans = con.execute("SELECT id, interrupted FROM scans").fetchall()
    assert scans == [(1, 0)]
    stored = con.execute("SELECT ip, port, state FROM results").fetchall()
    assert len(stored) == len(set(stored)) == len(want)
    print(f"{sig.name} at {delay:.2f}s ({stage}): {len(first)} results, then {len(got) - len(first)} "
          "more on resume")


@pytest.mark.lab
def test_bad_resume_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": 99}))
    for args in (["--resume", str(bad)], ["--resume", str(tmp_path / "missing.json")],
                 ["--resume", str(bad), "-p", "80"]):
        r = subprocess.run(scanner_argv(*args), capture_output=True, text=True, env=scanner_env())
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith("scanner: error:") and r.stderr.count("\n") == 1, r.stderr
