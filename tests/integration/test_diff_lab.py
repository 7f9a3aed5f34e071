"""`scanner diff` on two scans of the lab, between which the lab opened one port and closed
another (the nmap ndiff use case): the diff names exactly those changes."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from conftest import make_lab, require_lab_tools, scanner_argv, scanner_env

LISTEN = ("import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
          "s.bind(('0.0.0.0', 8000)); s.listen(64); print('ready', flush=True); time.sleep(120)")


@pytest.mark.lab
def test_diff_of_two_lab_scans(tmp_path):
    require_lab_tools()
    from scanner.lab import LabSpec
    db = str(tmp_path / "scans.db")
    args = ["198.18.0.0/30", "-Pn", "-p", "22,80,8000", "--wait", "1", "--db", db, "-q"]
    with make_lab(LabSpec(prefix="198.18.0.0/30", open_tcp=(22, 80))) as lab:
        first = lab.run(scanner_argv(*args), capture_output=True, text=True, env=scanner_env(), timeout=60)
        assert first.returncode == 0, first.stderr
        # Between the scans: port 8000 starts listening, port 22 gets closed (reset by the firewall).
        listener = subprocess.Popen(["ip", "netns", "exec", lab.target_ns, sys.executable, "-c", LISTEN],
                                    stdout=subprocess.PIPE, text=True)
        try:
            assert listener.stdout.readline().strip() == "ready"
            lab.run_target(["nft", "add", "rule", "inet", "lab", "input", "tcp", "dport", "22",
                            "reject", "with", "tcp", "reset"], check=True)
            second = lab.run(scanner_argv(*args), capture_output=True, text=True, env=scanner_env(), timeout=60)
            assert second.returncode == 0, second.stderr
        finally:
            listener.kill()
            listener.wait()
    d = subprocess.run(scanner_argv("diff", "1", "2", "--db", db), capture_output=True, text=True,
                       env=scanner_env())
    assert d.returncode == 1, d.stdout + d.stderr        # 1: the scans differ, like diff(1)
    lines = d.stdout.splitlines()
    for host in ("198.18.0.0", "198.18.0.1", "198.18.0.2", "198.18.0.3"):
        block = lines[lines.index(f" {host}:") + 1:]
        block = block[:next((i for i, l in enumerate(block) if not l.startswith(("+", "-"))), len(block))]
        assert "-22/tcp open ssh" in block and "+22/tcp closed ssh" in block, d.stdout
        assert any(l.startswith("+8000/tcp open") for l in block), d.stdout
        assert not any("80/tcp" in l and "8000" not in l for l in block), d.stdout   # 80 unchanged
    same = subprocess.run(scanner_argv("diff", "2", "2", "--db", db), capture_output=True, text=True,
                          env=scanner_env())
    assert same.returncode == 0 and "No differences." in same.stdout
