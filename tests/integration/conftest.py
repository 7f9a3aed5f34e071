"""Shared helpers for the integration tests: running the scanner (in a lab namespace or in the
root namespace against loopback), reading its NDJSON and its stderr summary, and labs that are
always torn down.

Lab tests need root. They must run in CI as root, so without root they FAIL (never skip)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# NDJSON results: (ip, port) -> (state, reason)
Results = dict


def scanner_env() -> dict:
    """os.environ with the repository root first on PYTHONPATH: `python -m scanner` then imports
    this checkout, whether or not the package is also installed."""
    env = dict(os.environ)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + old if old else "")
    return env


def scanner_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "scanner", *map(str, args)]


def require_root(what: str = "this test") -> None:
    """Fails (does not skip) without root: CI runs these tests as root."""
    if os.geteuid() != 0:
        pytest.fail(f"{what} needs root (raw sockets / network namespaces); run the integration "
                    "tests as root, e.g. sudo -E pytest tests/integration", pytrace=False)


def require_lab_tools() -> None:
    require_root("the lab")
    missing = [t for t in ("ip", "nft") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"the lab needs {', '.join(missing)} (apt-get install iproute2 nftables)", pytrace=False)


def read_ndjson(path) -> tuple[Results, list[dict]]:
    """(results, rows). Every line must be a JSON object; an (ip, port) may appear only once (but
    for the -sV/-O detail rows that follow it)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            assert line.endswith("\n"), f"{path}:{n}: truncated line {line!r}"
            rows.append(json.loads(line))
    results: Results = {}
    for d in rows:
        if d.get("details"):         # -sV/-O results, in rows that follow the ports they describe
            continue
        key = (d["ip"], d["port"])
        assert key not in results, f"{key} reported twice: {results[key]} and {(d['state'], d['reason'])}"
        results[key] = (d["state"], d["reason"])
    return results, rows


SUMMARY_RE = re.compile(
    r"scanner: (?P<hosts>\d+) hosts x (?P<ports>\d+) ports(?P<interrupted> \(interrupted\))?: .*?; "
    r"(?P<sent>\d+) (?:packets|probes) sent in (?P<elapsed>[\d.]+)s \([\d,]+/s(?: while sending)?\)"
    r"(?:; (?P<bad_cookie>\d+) replies failed the cookie check; (?P<pcap_dropped>\d+) dropped by capture)?")


def parse_summary(stderr: str) -> dict:
    m = SUMMARY_RE.search(stderr)
    assert m, f"no summary line on stderr:\n{stderr}"
    return {"hosts": int(m["hosts"]), "ports": int(m["ports"]), "interrupted": bool(m["interrupted"]),
            "sent": int(m["sent"]), "elapsed": float(m["elapsed"]),
            # None when the scan had no capture (TCP connect scan)
            "bad_cookie": None if m["bad_cookie"] is None else int(m["bad_cookie"]),
            "pcap_dropped": None if m["pcap_dropped"] is None else int(m["pcap_dropped"])}


def _outfile() -> str:
    fd, path = tempfile.mkstemp(prefix="scanner-it-", suffix=".ndjson")
    os.close(fd)
    return path


def scan(lab, args, timeout: float = 60.0) -> tuple[subprocess.CompletedProcess, Results]:
    """Runs `python -m scanner ARGS -oJ <tmp>` inside the lab's scanner namespace.
    Returns (CompletedProcess with text stdout/stderr, {(ip, port): (state, reason)})."""
    path = _outfile()
    try:
        proc = lab.run(scanner_argv(*args, "-oJ", path), capture_output=True, text=True,
                       env=scanner_env(), timeout=timeout)
        assert proc.returncode == 0, f"scanner exited {proc.returncode}:\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, proc.stderr
        results, _ = read_ndjson(path)
        return proc, results
    finally:
        os.unlink(path)


def diff(got: Results, want: Results, limit: int = 15) -> str:
    """A readable account of how two result sets differ (for assertion messages)."""
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    wrong = [k for k in want if k in got and got[k] != want[k]]
    lines = [f"{len(missing)} missing, {len(extra)} unexpected, {len(wrong)} wrong (of {len(want)})"]
    lines += [f"  missing {k}: want {want[k]}" for k in missing[:limit]]
    lines += [f"  unexpected {k}: {got[k]}" for k in extra[:limit]]
    lines += [f"  wrong {k}: got {got[k]}, want {want[k]}" for k in wrong[:limit]]
    return "\n".join(lines)


@contextlib.contextmanager
def make_lab(spec):
    """A lab that is torn down however the block ends (Lab.up() cleans up its own failures)."""
    from scanner.lab import Lab
    require_lab_tools()
    lab = Lab(spec)
    with lab:
        yield lab


@pytest.fixture
def lab_factory():
    """make(spec) -> a running Lab, torn down at the end of the test even if it fails."""
    with contextlib.ExitStack() as stack:
        yield lambda spec: stack.enter_context(make_lab(spec))


@pytest.fixture(scope="session", autouse=True)
def _no_stale_labs():
    """Removes lab namespaces left by crashed earlier runs (live labs of other runs are spared)."""
    if os.geteuid() == 0 and shutil.which("ip"):
        from scanner.lab import cleanup_stale
        cleanup_stale()
    yield
