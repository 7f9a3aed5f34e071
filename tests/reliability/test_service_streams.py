"""-sV/-O results in the streamed outputs (NDJSON): every open port is on disk as soon as it is
found, even if the scan is then killed during -sV; the details follow in rows of their own, also
after an interrupted scan is resumed."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from integration_helpers import make_lab, read_ndjson, require_lab_tools, scanner_argv, scanner_env

PREFIX = "198.18.0.0/29"
SILENT = ("import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);"
          "s.bind(('0.0.0.0', 2222)); s.listen(1024); time.sleep(300)")


@pytest.fixture
def lab():
    require_lab_tools()
    from scanner.lab import LabSpec
    with make_lab(LabSpec(prefix=PREFIX, live_every=1, open_tcp=(22, 80))) as the_lab:
        yield the_lab


def wait_for_rows(path, n: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= n:
            return
        time.sleep(0.05)
    pytest.fail(f"{path} never held {n} rows")


@pytest.mark.lab
def test_killed_during_version_scan_keeps_every_open_port(lab, tmp_path):
    # A port that completes the handshake and never says a word: -sV waits on it for seconds.
    silent = subprocess.Popen(["ip", "netns", "exec", lab.target_ns, sys.executable, "-c", SILENT])
    try:
        out = tmp_path / "scan.ndjson"
        p = lab.popen(scanner_argv(PREFIX, "-Pn", "-p", "2222", "-sV", "--max-parallelism", "2", "--wait", "0.5",
                                   "--no-db", "-oJ", str(out)),
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=scanner_env())
        wait_for_rows(out, 8)                               # the port scan is over: -sV is running
        time.sleep(0.5)
        assert p.poll() is None, "the version scan ended too soon to be killed mid-way"
        p.kill()                                            # SIGKILL: nothing can be written after this
        p.wait(timeout=10)
    finally:
        silent.kill()
        silent.wait()
    got, rows = read_ndjson(out)
    assert got == {(f"198.18.0.{i}", 2222): ("open", "syn-ack") for i in range(8)}
    assert not any(r.get("details") for r in rows)         # killed before any port was described


@pytest.mark.lab
def test_resumed_version_scan_streams_its_details(lab, tmp_path):
    args = [PREFIX, "-Pn", "-p", "1-2000", "-sV", "--rate", "2000", "--wait", "0.5", "--no-db", "-oJ", "scan.ndjson"]
    p = lab.popen(scanner_argv(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                  env=scanner_env(), cwd=tmp_path)
    time.sleep(2.0)                                         # about a quarter of the port scan
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert "Resume with" in err, err
    r = lab.run(scanner_argv("--resume", "scanner-resume.json"), capture_output=True, text=True,
                env=scanner_env(), cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    got, rows = read_ndjson(tmp_path / "scan.ndjson")     # each port once, across both runs
    opened = {k for k, v in got.items() if v[0] == "open"}
    assert opened == {(f"198.18.0.{i}", p) for i in range(8) for p in (22, 80)}
    details = {(r["ip"], r["port"]): r for r in rows if r.get("details")}
    assert set(details) == opened
    assert all(d["service"]["name"] for d in details.values())
