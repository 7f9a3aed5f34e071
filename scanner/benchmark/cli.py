"""`scanner bench`: scanner against nmap, masscan and zmap in the namespace lab, or (with
--target and --authorized) against nmap on targets the user names."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import EnvironmentFault, InputError

bench_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


def _meta(command: str, started: _dt.datetime, repeat: int) -> dict:
    from .. import __version__
    root = Path(__file__).resolve().parents[2]
    git = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"], capture_output=True,
                         text=True).stdout.strip() if shutil.which("git") else ""
    return {"command": command, "started": started.strftime("%Y-%m-%d %H:%M:%S UTC"), "host": platform.node(),
            "kernel": platform.release(), "cpus": os.cpu_count(), "scanner_version": __version__, "git": git,
            "repeat": repeat}


def _version(tool: str) -> str:
    flag = {"nmap": "--version", "masscan": "--version", "zmap": "--version"}[tool]
    p = subprocess.run([tool, flag], capture_output=True, text=True)
    return next((line.strip() for line in (p.stdout + p.stderr).splitlines() if line.strip()), "?")


@bench_app.command(context_settings={"help_option_names": ["-h", "--help"]})
def bench(
    workloads: Optional[List[str]] = typer.Argument(None, help="Workloads to run (default: all; with --quick: "
                                                   "sparse allports techniques sendpath)."),
    tools: str = typer.Option("nmap,masscan,zmap", "--tools", help="Peers to compare with (those installed)."),
    repeat: int = typer.Option(1, "--repeat", help="Runs of each workload and tool (medians, min and max)."),
    report: Optional[str] = typer.Option(None, "--report", help="Directory for the report (default: "
                                         "./scanner-bench-<UTC time>)."),
    quick: bool = typer.Option(False, "--quick", help="Small prefixes and a subset of the workloads: a smoke test (~1 min)."),
    target: Optional[str] = typer.Option(None, "--target", help="Benchmark against these targets (yours) "
                                         "instead of the lab: scanner and nmap, the same scan; needs --authorized."),
    authorized: bool = typer.Option(False, "--authorized", help="You own, or may scan, the --target hosts."),
    ports: str = typer.Option("1-1024", "-p", "--ports", help="--target: the ports to scan."),
    technique: str = typer.Option("sT", "--technique", help="--target: the scan technique (sT, sS, ...)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="A progress bar on stderr."),
    note: Optional[List[str]] = typer.Option(None, "--note", help="A note for the report (repeatable), "
                                             "e.g. what else ran on the machine."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="Also run the scanner of this checkout "
                                           "(extensions built in place) as scanner-base: before/after a change "
                                           "in one sitting."),
    render: Optional[str] = typer.Option(None, "--render", help="Run nothing: write DIR's report files again "
                                         "from its report.json (e.g. after a change to the report's layout)."),
    readme: Optional[str] = typer.Option(None, "--readme", help="Put the report's summary table into this "
                                         "file (e.g. README.md) between its 'scanner bench summary' markers."),
):
    """Benchmarks scanner against nmap, masscan and zmap (one after another, never at once) in a
    disposable network-namespace lab, and writes a report: report.md, report.json, PNG plots and
    report.html. Needs root. Workloads: sparse dense allports loss techniques top1000
    udp-ratelimit service sendpath (see docs/bench.md)."""
    from .report import INSTALL_HINT, have_matplotlib
    from .workloads import WORKLOADS
    readme_path = _readme(readme) if readme else None
    if render is not None:
        if workloads or target is not None or quick or baseline:
            raise InputError("--render writes an existing report again: give no workloads, --target, --quick "
                             "or --baseline with it")
        _render(Path(render), readme_path)
        return
    if repeat < 1:
        raise InputError("--repeat must be 1 or more")
    peers = [t.strip() for t in tools.split(",") if t.strip()]
    unknown = [t for t in peers if t not in ("nmap", "masscan", "zmap")]
    if unknown:
        raise InputError(f"unknown tool '{unknown[0]}' in --tools: expected nmap, masscan or zmap")
    if target is not None:
        if workloads:
            raise InputError("--target benchmarks the targets you name: give no workloads with it")
        if not authorized:
            raise InputError("--target scans hosts outside the lab: add --authorized to confirm you may scan them")
        from .target import run_target
        raise typer.Exit(run_target(target, ports, technique, repeat, report, progress))
    names = list(workloads or [n for n, w in WORKLOADS.items() if w.in_quick or not quick])
    bad = [n for n in names if n not in WORKLOADS]
    if bad:
        raise InputError(f"unknown workload '{bad[0]}': expected one of {', '.join(WORKLOADS)}")
    base = Path(baseline).resolve() if baseline else None
    if base is not None and not (base / "scanner" / "__main__.py").is_file():
        raise InputError(f"--baseline {baseline}: no scanner package there (a checkout with scanner/__main__.py)")
    if not have_matplotlib():
        raise EnvironmentFault(INSTALL_HINT)
    if os.geteuid() != 0:
        raise EnvironmentFault("scanner bench builds network namespaces: run it as root")
    missing = [t for t in ("ip", "nft") if shutil.which(t) is None]
    if missing:
        raise EnvironmentFault(f"scanner bench needs {' and '.join(missing)} (apt-get install iproute2 nftables)")

    from .runner import Progress, plan, run_workloads
    from .report import write_report
    from .stats import ratios, summarize
    from .tools import installed
    started = _dt.datetime.now(_dt.timezone.utc)
    notes = list(note or [])
    present = []
    for peer in peers:
        if installed(peer):
            present.append(peer)
            notes.append(f"{peer}: {_version(peer)}")
        else:
            notes.append(f"{peer} is not installed: skipped (apt-get install {peer})")
    chosen = [WORKLOADS[n] for n in names]
    runs = plan(chosen, present, quick, repeat, base)
    bar = Progress(len(runs), enabled=progress)
    load0 = os.getloadavg()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="scanner-bench-") as td:
        try:
            rows, more = run_workloads(chosen, present, quick, repeat, Path(td), bar, baseline=base)
        finally:
            bar.end()
    notes += more
    notes.append("load average (1, 5, 15 min) at the start {:.2f} {:.2f} {:.2f}, at the end {:.2f} {:.2f} {:.2f}; "
                 "{} CPUs".format(*load0, *os.getloadavg(), os.cpu_count() or 0))
    command = shlex.join(["scanner", *sys.argv[1:]]) if sys.argv[1:2] == ["bench"] else "scanner bench"
    meta = _meta(command, started, repeat)
    meta["duration_s"] = time.monotonic() - t0
    meta["quick"] = quick
    if base is not None:
        meta["baseline"] = str(base)
    summary = summarize(rows)
    result = {"meta": meta, "notes": notes,
              "workloads": {w.name: {"title": w.title, "doc": w.doc, "x": w.x,
                                     "lab": repr(w.lab(quick)), "peers": list(w.peers)} for w in chosen},
              "rows": rows, "summary": summary, "ratios": ratios(summary)}
    out = Path(report or f"scanner-bench-{started.strftime('%Y%m%dT%H%M%SZ')}")
    paths = write_report(result, out)
    remember(out)
    if readme_path is not None:
        _update_readme(readme_path, out)
    print(f"scanner bench: {len(rows)} runs in {meta['duration_s']:.0f}s; report: {paths['html']}", file=sys.stderr)


def _readme(readme: str) -> Path:
    from .report import SUMMARY_BEGIN, SUMMARY_END
    path = Path(readme)
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError(f"--readme {readme}: {e.strerror}") from None
    if SUMMARY_BEGIN not in text or SUMMARY_END not in text:   # checked before a run, not after it
        raise InputError(f"--readme {readme}: no '{SUMMARY_BEGIN}' ... '{SUMMARY_END}' lines to write between")
    return path


def _update_readme(readme: Path, report_dir: Path) -> None:
    import json
    from .report import summary_markdown, update_readme
    result = json.loads((report_dir / "report.json").read_text())
    link = os.path.relpath(report_dir / "report.md", readme.resolve().parent)
    update_readme(readme, summary_markdown(result, link))
    print(f"scanner bench: summary written into {readme}", file=sys.stderr)


def _render(directory: Path, readme: Optional[Path]) -> None:
    import json
    from .report import INSTALL_HINT, have_matplotlib, write_report
    from .stats import ratios
    try:
        result = json.loads((directory / "report.json").read_text())
        ok = isinstance(result, dict) and all(k in result for k in ("meta", "workloads", "summary"))
    except (OSError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"--render {directory}: no scanner bench report.json there")
    if not have_matplotlib():
        raise EnvironmentFault(INSTALL_HINT)
    result["ratios"] = ratios(result["summary"])       # with the metrics this version compares
    paths = write_report(result, directory, data=False)
    if readme is not None:
        _update_readme(readme, directory)
    print(f"scanner bench: report written again: {paths['html']}", file=sys.stderr)


def remembered_file() -> Path:
    """The list of report directories `scanner bench` wrote (one a line), which `scanner web` shows."""
    from ..store import default_path
    return default_path().parent / "bench-reports"


def remember(directory: Path) -> None:
    path = remembered_file()
    entry = str(directory.resolve())
    try:
        known = path.read_text().splitlines() if path.exists() else []
        if entry not in known:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as f:
                f.write(entry + "\n")
    except OSError:
        pass        # only a convenience for `scanner web`: the report itself is written
