"""Malformed input, table-driven: each line is one command a careless user (or a hostile file) could
produce. Every one ends with a single "scanner: error:" line and its exit code, never a traceback,
never a hang, and before any probe could leave (every valid-looking target here is loopback)."""
from __future__ import annotations

import os
import subprocess

import pytest

from integration_helpers import require_root, scanner_argv, scanner_env

LO = "127.0.0.1"

# (arguments, exit code, words the error line must hold)
BAD = [
    ([LO, "--rate", "nan"], 2, "--rate"),
    ([LO, "--rate", "inf"], 2, "--rate"),
    ([LO, "--rate", "-1"], 2, "--rate"),
    ([LO, "--rate", "1e-9"], 2, "--rate"),
    ([LO, "--rate", "1e400"], 2, "--rate"),
    ([LO, "--wait", "nan"], 2, "--wait"),
    ([LO, "--wait", "-1"], 2, "--wait"),
    ([LO, "--wait", "1e12"], 2, "--wait"),
    ([LO, "--retries", "99999999999999999999"], 2, "--retries"),
    ([LO, "--retries", "-1"], 2, "--retries"),
    ([LO, "--retries", "1.5"], 2, "--retries"),
    ([LO, "--seed", "-5"], 2, "--seed"),
    ([LO, "--seed", str(1 << 64)], 2, "--seed"),
    ([LO, "--seed", "0x10"], 2, "--seed"),
    ([LO, "--shard", "1/99999999999999999999999"], 2, "--shard"),
    ([LO, "--shard", "0/0"], 2, "--shard"),
    ([LO, "--shard", "-1/2"], 2, "--shard"),
    ([LO, "--shard", "1/2/3"], 2, "--shard"),
    ([LO, "--top-ports", "0"], 2, "--top-ports"),
    ([LO, "--top-ports", "70000"], 2, "--top-ports"),
    ([LO, "--max-parallelism", "0"], 2, "--max-parallelism"),
    ([LO, "--stats-every", "0"], 2, "--stats-every"),
    ([LO, "--version-intensity", "10"], 2, "--version-intensity"),
    ([LO, "--max-udp-rounds", "-3"], 2, "--max-udp-rounds"),
    ([LO, "-p", "22", "-p", "80"], 2, "-p given twice"),
    ([LO, "-p", "99999"], 2, "port spec"),
    ([LO, "-p", ""], 2, "port spec"),
    ([LO, "-p", "80-22"], 2, "reversed"),
    ([LO, "-p", "S:80"], 2, "SCTP"),
    ([LO, "-PS99999"], 2, "port spec"),
    ([LO, "--scanflags", "XYZ", "-sA"], 2, "--scanflags"),
    ([LO, "-sS", "-sT"], 2, "choose one"),
    ([LO, "-sI"], 2, "does not implement -sI"),
    ([LO, "-sO", "-sS"], 2, "-sO (IP protocol scan) runs alone"),
    ([LO, "-sO", "-p", "256"], 2, "IP protocols are 0-255"),
    ([LO, "--badsum"], 2, "does not implement nmap's --badsum"),
    ([LO, "--nonsense"], 2, "no such option"),
    ([LO, "-oX", "-", "-oJ", "-"], 2, "only one output"),
    ([LO, "-oX", "/nonexistent/dir/x.xml"], 2, "cannot write -oX"),
    ([LO, "-oA", "-"], 2, "-oA"),
    (["999.1.1.1"], 2, "999.1.1.1"),
    (["127.0.0.1-127.0.0.0"], 2, "range"),
    (["127.0.0.0/33"], 2, "127.0.0.0/33"),
    ([LO, "--exclude", "999.1.1.1"], 2, "999.1.1.1"),
    (["-iL", "/dev/zero"], 2, "not a list of targets"),
    (["-iL", "/nonexistent/targets"], 2, "cannot read target file"),
    ([LO, "--excludefile", "/dev/zero"], 2, "not a list of targets"),
    ([LO, "-sT", "-p", "1", "-sV", "--service-db", "/dev/zero"], 2, "service database"),
    ([LO, "-sT", "-p", "1", "-sV", "--service-db", "/nonexistent"], 2, "service database"),
    ([LO, "--db", "/proc/scans.db"], 2, "scan database"),
    ([LO, "--db", "x.db", "--no-db"], 2, "contradict"),
    (["--resume"], 2, "--resume"),
    (["--resume", "/nonexistent.json"], 2, "resume file"),
    (["--resume", "/dev/null"], 2, "not trusted"),
    (["--resume", "/etc/passwd"], 2, "not a scanner resume file"),
    (["--resume", "a.json", LO], 2, "nothing else"),
    (["show", "99999999999999999999999999"], 2, "bad scan id"),
    (["show", "x"], 2, "bad scan id"),
    (["show", "1", "-f", "pdf"], 2, "--format"),
    (["diff", "99999999999999999999", "1"], 2, "bad scan id"),
    (["history", "-n", "-5"], 2, "--limit"),
    (["lab", "--prefix", "203.0.113.0/24"], 2, "198.18.0.0/15"),
    (["lab", "--run", ""], 2, "--run"),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    from scanner.store import Store
    Store(str(d / "scans.db")).close()          # an empty store for show/diff
    return d


@pytest.mark.parametrize("args, code, words", BAD, ids=[" ".join(a)[:60] for a, _, _ in BAD])
def test_bad_input(workdir, args, code, words):
    if args[0] in ("show", "diff", "history"):
        args = [*args, "--db", str(workdir / "scans.db")]
    r = subprocess.run(scanner_argv(*args), capture_output=True, text=True, env=scanner_env(), timeout=30,
                       stdin=subprocess.DEVNULL, cwd=workdir)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert r.returncode == code, f"exit {r.returncode}: {r.stderr}"
    assert len(lines) == 1 and lines[0].startswith("scanner: error: "), r.stderr
    assert words in lines[0], lines[0]
    assert r.stdout == ""


def test_a_root_only_file_is_never_quoted(workdir):
    require_root("a file only root can read")
    secret = workdir / "secret"
    secret.write_text("the-secret-first-line\n")
    os.chmod(secret, 0o600)
    r = subprocess.run(scanner_argv(LO, "-sT", "-p", "1", "-sV", "--service-db", str(secret)), capture_output=True,
                       text=True, env=scanner_env(), timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "the-secret" not in r.stderr and "not shown" in r.stderr, r.stderr


def test_output_to_a_reader_that_goes_away_is_quiet(workdir):
    p = subprocess.Popen(scanner_argv(LO, "-sT", "-p", "1-3000", "--show-all", "-q", "--no-db", "-oJ", "-"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=scanner_env(), text=True)
    assert p.stdout.readline().startswith("{")
    p.stdout.close()                            # as `| head -1` does
    err = p.stderr.read()
    assert p.wait(timeout=60) == 0 and err == "", err


def test_closed_stdout(workdir):
    table = subprocess.run(scanner_argv(LO, "-sT", "-p", "1", "-q", "--no-db"), stdout=subprocess.DEVNULL,
                           capture_output=False, stderr=subprocess.PIPE, text=True, env=scanner_env(),
                           timeout=30, close_fds=True, preexec_fn=lambda: os.close(1))
    assert table.returncode == 0 and table.stderr == "", table.stderr
    xml = subprocess.run(scanner_argv(LO, "-sT", "-p", "1", "-q", "--no-db", "-oX", "-"), stderr=subprocess.PIPE,
                         text=True, env=scanner_env(), timeout=30, preexec_fn=lambda: os.close(1))
    assert xml.returncode == 2 and xml.stderr.startswith("scanner: error: cannot write -oX output to stdout")


def test_diff_of_an_ipv4_and_an_ipv6_scan(workdir):
    db = str(workdir / "mixed.db")
    for target in ("127.0.0.1", "::1"):
        r = subprocess.run(scanner_argv(target, "-sT", "-p", "1-20", "-q", "--db", db), capture_output=True,
                           text=True, env=scanner_env(), timeout=30)
        assert r.returncode == 0, r.stderr
    d = subprocess.run(scanner_argv("diff", "1", "2", "--db", db), capture_output=True, text=True,
                       env=scanner_env(), timeout=30)
    assert d.returncode == 1 and "Traceback" not in d.stderr, d.stderr
    assert "1 new hosts, 1 gone" in d.stdout
