"""The command line as a user meets it: errors, --dry-run, the root check, and one real SYN scan
of loopback (the only address these tests probe from the root namespace)."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess

import pytest

from conftest import require_root, scanner_argv, scanner_env


def run(*args, timeout: float = 30.0, prefix=()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, *scanner_argv(*args)], capture_output=True, text=True,
                          env=scanner_env(), timeout=timeout, stdin=subprocess.DEVNULL)


def assert_one_line_error(r: subprocess.CompletedProcess, *words: str) -> str:
    assert r.returncode == 2, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("scanner: error:"), r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    assert r.stdout == ""
    return lines[0]


# Everything here is rejected before any packet could be sent (and every valid-looking
# target is loopback, so a regression could at worst probe 127.0.0.1).
BAD = {
    "bad target": ["999.1.1.1", "-p", "80"],
    "bad cidr": ["127.0.0.0/33", "-p", "80"],
    "no targets": ["-p", "80"],
    "port out of range": ["127.0.0.1", "-p", "99999"],
    "port not a number": ["127.0.0.1", "-p", "abc"],
    "reversed port range": ["127.0.0.1", "-p", "90-80"],
    "shard K > N": ["127.0.0.1", "-p", "80", "--shard", "3/2"],
    "shard 0": ["127.0.0.1", "-p", "80", "--shard", "0/2"],
    "shard not K/N": ["127.0.0.1", "-p", "80", "--shard", "x"],
    "negative rate": ["127.0.0.1", "-p", "80", "--rate", "-5"],
    "rate not a number": ["127.0.0.1", "-p", "80", "--rate", "fast"],
    "missing -iL file": ["-iL", "/nonexistent/targets.txt", "-p", "80"],
    "unknown option": ["127.0.0.1", "-p", "80", "--bogus"],
}


@pytest.mark.parametrize("args", BAD.values(), ids=BAD.keys())
def test_bad_input_is_one_line_exit_2(args):
    assert_one_line_error(run(*args))


SPACE = ["127.0.0.0/28", "-p", "22,80,443-445"]
ALL = {(f"127.0.0.{i}", p) for i in range(16) for p in (22, 80, 443, 444, 445)}


def dry(*extra) -> list[tuple[str, int]]:
    r = run(*SPACE, "--dry-run", "-Pn", *extra)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    out = []
    for line in r.stdout.splitlines():
        ip, port = line.split()
        out.append((ip, int(port)))
    return out


def test_dry_run_lists_every_probe_once_deterministically():
    a = dry("--seed", "7")
    assert len(a) == len(ALL) and set(a) == ALL
    assert dry("--seed", "7") == a
    assert dry("--seed", "8") != a                   # the seed decides the order
    assert a != sorted(a)                            # and the order is shuffled


def test_dry_run_lists_host_discovery_first():
    r = run(*SPACE, "--dry-run", "--seed", "7")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    discovery = [line for line in lines if line.split()[1].startswith("-P")]
    assert lines[:len(discovery)] == discovery               # sent first, as the real run does
    assert {line.split()[1] for line in discovery} == {"-PE", "-PS443", "-PA80", "-PP"}
    assert len(discovery) == 16 * 4 and len(lines) - len(discovery) == len(ALL)


def test_dry_run_shards_partition():
    whole = dry("--seed", "7")
    s1, s2 = dry("--seed", "7", "--shard", "1/2"), dry("--seed", "7", "--shard", "2/2")
    assert len(s1) + len(s2) == len(whole)
    assert not set(s1) & set(s2)
    assert set(s1) | set(s2) == ALL
    assert abs(len(s1) - len(s2)) <= 1


def unprivileged_prefix() -> list[str]:
    """A command prefix that runs the scanner without root. `runuser -u nobody` when nobody can
    run this interpreter; otherwise (e.g. a venv whose python lives under /root) an unmapped user
    namespace: euid 65534, no capabilities in the root network namespace, files still readable."""
    require_root("switching to an unprivileged user")
    probe = ["-c", "import os, scanner; print(os.geteuid())"]
    for prefix in (["runuser", "-u", "nobody", "--"], ["setpriv", "--reuid=65534", "--regid=65534",
                                                       "--clear-groups"], ["unshare", "--user"]):
        if shutil.which(prefix[0]) is None:
            continue
        r = subprocess.run([*prefix, "env", f"PYTHONPATH={scanner_env()['PYTHONPATH']}",
                            scanner_argv()[0], *probe], capture_output=True, text=True, cwd="/")
        if r.returncode == 0 and r.stdout.strip() not in ("", "0"):
            return prefix
    pytest.fail("cannot run the scanner as an unprivileged user (runuser/setpriv/unshare)")


def run_unprivileged(*args, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run([*unprivileged_prefix(), "env", f"PYTHONPATH={scanner_env()['PYTHONPATH']}",
                           *scanner_argv(*args)], capture_output=True, text=True, timeout=timeout,
                          cwd="/", stdin=subprocess.DEVNULL)


def test_not_root_syn_scan_is_a_one_line_error():
    assert_one_line_error(run_unprivileged("127.0.0.1", "-p", "80", "-sS"), "root")


def test_not_root_falls_back_to_connect_scan():
    """Without -sS, a user without root gets a TCP connect scan (of loopback here), and a note."""
    listener, closed = socket.socket(), socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        closed.bind(("127.0.0.1", 0))
        open_port, closed_port = listener.getsockname()[1], closed.getsockname()[1]
        r = run_unprivileged("127.0.0.1", "-p", f"{open_port},{closed_port}", "--wait", "0.5", "-oJ", "-")
    finally:
        listener.close()
        closed.close()
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "not running as root: using the TCP connect scan (-sT)" in r.stderr
    got = {(d["ip"], d["port"]): d["state"] for d in map(json.loads, r.stdout.splitlines())}
    assert got == {("127.0.0.1", open_port): "open", ("127.0.0.1", closed_port): "closed"}, r.stdout


def test_dry_run_needs_no_root():
    r = run_unprivileged(*SPACE, "--dry-run", "--seed", "7", "-Pn")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == len(ALL)


def test_syn_scan_of_loopback():
    require_root("a SYN scan")
    listener = socket.socket()
    closed = socket.socket()           # bound, never listening: the kernel answers with a RST
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        closed.bind(("127.0.0.1", 0))
        open_port, closed_port = listener.getsockname()[1], closed.getsockname()[1]
        r = run("127.0.0.1", "-p", f"{open_port},{closed_port}", "-sS", "--wait", "0.5", "--seed", "3",
                "-oJ", "-")
    finally:
        listener.close()
        closed.close()
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    got = {(d["ip"], d["port"]): (d["state"], d["reason"]) for d in map(json.loads, r.stdout.splitlines())}
    assert got == {("127.0.0.1", open_port): ("open", "syn-ack"),
                   ("127.0.0.1", closed_port): ("closed", "reset")}, r.stdout
    assert "1 closed, 1 open" in r.stderr
