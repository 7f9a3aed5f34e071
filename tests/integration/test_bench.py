"""scanner bench end to end: the --quick smoke run in the namespace lab (root, as in CI) and the
report's shape; --target against loopback only (with -sT) and its refusal without --authorized."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, require_lab_tools, scanner_env

from scanner.benchmark.workloads import WORKLOADS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
QUICK = [n for n, w in WORKLOADS.items() if w.in_quick]


def bench(*args, timeout=300, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scanner", "bench", *args], capture_output=True, text=True,
                          env={**scanner_env(), **(env or {})}, cwd=REPO_ROOT, timeout=timeout)


@pytest.mark.lab
def test_quick_bench_writes_the_whole_report(tmp_path):
    require_lab_tools()
    out = tmp_path / "report"
    p = bench("--quick", "--report", str(out), timeout=240, env={"XDG_DATA_HOME": str(tmp_path / "data")})
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    assert "] " in p.stderr and "report:" in p.stderr          # the progress bar, then where the report is
    data = json.loads((out / "report.json").read_text())
    assert set(data) == {"meta", "notes", "workloads", "rows", "summary", "ratios"}
    assert list(data["workloads"]) == QUICK
    peers = [t for t in ("nmap", "masscan", "zmap") if shutil.which(t)]
    for w in QUICK:
        ran = {e["tool"] for e in data["summary"] if e["workload"] == w and "skipped" not in e}
        assert "scanner" in ran, w
        assert ran >= {t for t in peers if t in WORKLOADS[w].peers}, (w, ran)
    for e in data["summary"]:
        if "skipped" in e:
            continue
        assert e["runs"] == 1 and e["argv"], e
        assert e["wall_s"]["median"] > 0 and e["cpu_s"]["median"] >= 0, e
    for r in data["rows"]:
        if "skipped" in r:
            continue
        if r["tool"] == "masscan":          # 1.3.2 waits for a packet to exit: the watchdog's packet, then
            assert r["killed"] in ("", "poked") or "note" in r, r     # signals; the report says so
        else:                               # every other tool exits by itself
            assert r["rc"] == 0 and r["killed"] == "", r
    for e in (e for e in data["summary"] if e["workload"] in ("sparse", "allports") and "skipped" not in e):
        # scanner finds every open port and nothing else; a peer's coverage is what it is (masscan
        # at --rate 100000000 misses some), but it is measured
        assert 0 <= e["coverage"]["median"] <= 1 and e["false_pos"]["median"] == 0, e
        if e["tool"] == "scanner":
            assert e["coverage"]["median"] >= 0.99, e
    if "nmap" in peers:
        agree = [e["agree_nmap"]["median"] for e in data["summary"]
                 if e["workload"] in ("techniques", "allports") and e["tool"] == "scanner"]
        assert agree and all(0.9 <= a <= 1 for a in agree), agree
        assert any(r["peer"] == "nmap" and r["wall_s"] for r in data["ratios"])
    sendpath = {r["tool"] for r in data["rows"] if r["workload"] == "sendpath" and "skipped" not in r}
    assert {"scanner", "scanner-packet", "csend"} <= sendpath
    for r in data["rows"]:
        if r.get("pps_target") is not None:     # probes at the target: the RSTs among the arrivals left out
            assert 0 <= r["arrived_rst"] <= r["arrived"], r
            assert r["pps_target"] == pytest.approx((r["arrived"] - r["arrived_rst"]) / r["send_s"]), r
    # the headline tables (what the README quotes), and the directory remembered for `scanner web`
    summary = (out / "summary.md").read_text()
    assert summary.startswith("From [report.md](report.md): `scanner bench --quick --report ")
    assert "| sparse | rate unlimited |" in summary and "| sendpath |" in summary and "÷ csend" in summary
    assert (tmp_path / "data" / "scanner" / "bench-reports").read_text() == f"{out.resolve()}\n"
    md = (out / "report.md").read_text()
    assert "| workload | variant | tool | runs | wall s | probes/s at target |" in md
    assert "| sendpath |" in md and "csend" in md
    plots = sorted(p.name for p in out.glob("*.png"))
    assert plots == ["cpu_per_probe.png", "rate_coverage.png", "wall_ports.png"]
    for name in plots:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and html.count("<table>") >= 2


def test_target_needs_authorized():
    p = bench("--target", "127.0.0.1", "-p", "22")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "scanner: error: --target scans hosts outside the lab: add --authorized to confirm you may scan them"]
    assert p.stdout == ""


def test_target_loopback_connect_scan_agrees_with_nmap(tmp_path):
    if not shutil.which("nmap"):
        pytest.fail("scanner bench --target compares with nmap (apt-get install nmap)", pytrace=False)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
        p = bench("--target", "127.0.0.1", "--authorized", "--technique", "sT", "-p", f"1-200,{port}",
                  "--report", str(tmp_path), "--no-progress", env={"XDG_DATA_HOME": str(tmp_path / "data")})
    assert p.returncode == 0, p.stderr
    assert "states equal to nmap's: 100.00%" in p.stdout, p.stdout
    data = json.loads((tmp_path / "target.json").read_text())
    by = {r["tool"]: r for r in data["rows"]}
    assert by["scanner"]["agree_nmap"] == 1.0 and by["scanner"]["differ"] == []
    assert by["scanner"]["open"] == by["nmap"]["open"] >= 1
    assert by["scanner"]["argv"][3:9] == ["127.0.0.1", "-Pn", "--no-db", "-sT", "-p", f"1-200,{port}"]
    from scanner.web.bench import Reports          # the web GUI lists it
    listed = Reports([tmp_path]).listing()["reports"]
    assert [(r["kind"], r["path"]) for r in listed] == [("target", str(tmp_path.resolve()))]
    assert (tmp_path / "data" / "scanner" / "bench-reports").read_text() == f"{tmp_path.resolve()}\n"


def test_bench_needs_root(monkeypatch, capsys):
    from scanner import cli
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "--quick"])
    assert e.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "scanner: error: scanner bench builds network namespaces: run it as root"]


def test_bench_bad_input_is_one_line(monkeypatch, capsys):
    from scanner import cli
    from scanner.benchmark import report
    for argv, code, line in [
            (["bench", "nosuch"], 2, "scanner: error: unknown workload 'nosuch': expected one of " + ", ".join(WORKLOADS)),
            (["bench", "--tools", "nmap,foo"], 2, "scanner: error: unknown tool 'foo' in --tools: expected nmap, "
                                                  "masscan or zmap"),
            (["bench", "--repeat", "0"], 2, "scanner: error: --repeat must be 1 or more"),
            (["bench", "sparse", "--target", "127.0.0.1", "--authorized"], 2,
             "scanner: error: --target benchmarks the targets you name: give no workloads with it")]:
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert (e.value.code, capsys.readouterr().err.strip().splitlines()) == (code, [line]), argv
    monkeypatch.setattr(report, "have_matplotlib", lambda: False)
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "--quick"])
    assert e.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "scanner: error: the bench plots need matplotlib: pip install 'scanner[bench]' (or pip install matplotlib)"]
