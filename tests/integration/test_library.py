"""The Python API on the lab, as a user's program would call it: scanner.scan() gives what the
CLI gives; stream() yields events while the scan runs; Session.stop() from another thread hands
back a checkpoint from which a new session finishes the scan without re-probing or duplicating.
The programs run inside the lab's scanner namespace (python -c), like the CLI in other tests."""
from __future__ import annotations

import json
import textwrap

import pytest

from conftest import make_lab, require_lab_tools, scan, scanner_env

PREFIX = "198.18.0.0/22"
ARGS = [PREFIX, "-p", "22,23,80,443,8080", "--rate", "3000", "--wait", "1", "--no-db", "--seed", "11"]
SLOW = [PREFIX, "-p", "22,23,80,443,8080", "--rate", "1000", "--wait", "1", "--no-db", "--seed", "11"]


@pytest.fixture(scope="module")
def lab():
    require_lab_tools()
    from scanner.lab import LabSpec
    with make_lab(LabSpec(prefix=PREFIX, live_every=4, open_tcp=(22, 80, 443), drop_tcp=(8080,))) as the_lab:
        yield the_lab


def run_program(lab, program: str, timeout: float = 90.0):
    import sys
    proc = lab.run([sys.executable, "-c", textwrap.dedent(program)], capture_output=True, text=True,
                   env=scanner_env(), timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", f"the library printed: {proc.stderr}"     # library code prints nothing
    return json.loads(proc.stdout)


def answered(rows) -> dict:
    return {(d["ip"], d["port"]): (d["state"], d["reason"]) for d in rows if d["reason"] != "no-response"}


@pytest.mark.lab
def test_api_scan_equals_cli_scan(lab):
    _, cli = scan(lab, ARGS)
    out = run_program(lab, f"""
        import json, scanner
        request = scanner.ScanRequest.from_argv({ARGS!r})
        result = scanner.scan(request)
        rows = result.rows()
        print(json.dumps({{"rows": rows, "hosts": result.hosts(), "n": len(result.array),
                           "states": result.summary.states, "scan_id": result.scan_id,
                           "keys": sorted({{k for r in rows for k in r}})}}))
    """)
    assert answered(out["rows"]) == cli
    assert len(cli) == 256 * 4                       # 256 up hosts: 3 open, 1 closed (8080 dropped)
    assert out["keys"] == ["ip", "port", "proto", "reason", "state", "ttl"]
    assert out["n"] == len(out["rows"])
    assert len(out["hosts"]) == 256 and out["hosts"] == sorted(set(out["hosts"]), key=lambda a: tuple(
        map(int, a.split("."))))
    assert out["states"]["open"] == 256 * 3 and out["scan_id"] is None


@pytest.mark.lab
def test_stream_yields_events_while_the_scan_runs(lab):
    out = run_program(lab, f"""
        import json, time, scanner
        request = scanner.ScanRequest.from_argv({ARGS!r})
        seen, t0 = [], time.monotonic()
        for event in scanner.stream(request):
            seen.append((event.kind, time.monotonic() - t0,
                         len(event.rows) if event.kind in ("port-results", "hosts-up") else 0))
        print(json.dumps(seen))
    """)
    kinds = [k for k, _, _ in out]
    assert kinds[0] == "scan-started" and kinds[-1] == "finished"
    assert kinds.index("stage-started") < kinds.index("stage-ended")
    finished_at = out[-1][1]
    first_result = next(t for k, t, _ in out if k == "port-results")
    progress = [t for k, t, _ in out if k == "progress"]
    assert first_result < finished_at - 0.5, "no result before the scan ended"
    assert progress and progress[0] < finished_at - 0.5
    assert sum(n for k, _, n in out if k == "hosts-up") == 256
    assert "stage-ended" in kinds[kinds.index("hosts-up"):]


@pytest.mark.lab
def test_stop_from_another_thread_then_resume(lab):
    _, whole = scan(lab, ARGS)
    out = run_program(lab, f"""
        import json, threading, scanner
        request = scanner.ScanRequest.from_argv({SLOW!r})
        got = []
        def on_event(event):
            if event.kind == "port-results":
                got.append(len(event.rows))
                if sum(got) >= 200:
                    threading.Thread(target=session.stop).start()
        session = scanner.Session(request, on_event=on_event)
        first = session.run()
        checkpoint = session.checkpoint()
        assert first.interrupted and checkpoint is not None
        second = scanner.Session(request, resume=checkpoint).run()
        print(json.dumps({{"first": first.rows(), "second": second.rows(), "sent1": first.summary.sent,
                           "sent2": second.summary.sent, "interrupted2": second.interrupted,
                           "probes": 256 * 5}}))
    """, timeout=120)
    first, second = answered(out["first"]), answered(out["second"])
    assert 200 <= len(first) < len(whole)
    assert not out["interrupted2"]
    # The resumed session's result holds the first run's rows too, each once, and nothing else.
    assert second == whole
    assert len([r for r in out["second"] if r["reason"] != "no-response"]) == len(whole)
    # Nothing that had answered is probed again: at most a pass and a retry of the silent 8080s.
    # (The resumed summary counts both runs.)
    assert out["sent2"] - out["sent1"] <= out["probes"] + 256 - len(first)
