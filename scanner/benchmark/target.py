"""`scanner bench --target SPEC --authorized`: the same scan by scanner and nmap against targets
the user names (run from this machine's own network, one after the other), with agreement and
time side by side. Never run without --authorized (the CLI checks)."""
from __future__ import annotations

import datetime as _dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from ..errors import EnvironmentFault, InputError
from . import tools as T
from .stats import ratios, summarize

TECHNIQUES = ("sS", "sT", "sA", "sW", "sN", "sF", "sX", "sM", "sU")


def measure(argv: list[str], log: Path, env: Optional[dict] = None) -> dict:
    with open(log, "w") as out:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "rc": os.waitstatus_to_exitcode(status)}


def run_target(target: str, ports: str, technique: str, repeat: int, report: Optional[str], progress: bool) -> int:
    from .runner import Progress
    technique = technique.lstrip("-")
    if technique not in TECHNIQUES:
        raise InputError(f"bad --technique '{technique}': expected one of {' '.join(TECHNIQUES)}")
    if not T.installed("nmap"):
        raise EnvironmentFault("--target compares with nmap, which is not installed (apt-get install nmap)")
    try:
        from ..request import ScanRequest
        ScanRequest.from_argv([target, "-p", ports, f"-{technique}"])     # the scanner's own checks
    except InputError as e:
        raise InputError(f"bad --target or --ports: {e}") from None
    scan = T.Scan(target, ports, technique=technique, rate=0, retries=1, wait=1.0, all_states=True)
    started = _dt.datetime.now(_dt.timezone.utc)
    bar = Progress(2 * repeat, enabled=progress)
    rows = []
    with tempfile.TemporaryDirectory(prefix="scanner-bench-") as td:
        tmp = Path(td)
        for rep in range(repeat):
            states = {}
            for tool in ("scanner", "nmap"):
                out, log = tmp / f"{tool}{rep}.out", tmp / f"{tool}{rep}.log"
                argv = T.scanner_argv(scan, out) if tool == "scanner" else T.nmap_argv(scan, out)
                bar.show(f"{tool} (run {rep + 1})")
                row = {"workload": "target", "variant": f"-{technique} {target} -p {ports}", "tool": tool,
                       "rep": rep, "argv": argv}
                row.update(measure(argv, log, T.scanner_env() if tool == "scanner" else None))
                states[tool] = (T.parse_scanner(out) if tool == "scanner" else T.parse_nmap_xml(out))[0]
                row["open"] = sum(v == "open" for v in states[tool].values())
                if row["rc"]:
                    row["note"] = f"exit {row['rc']}: {log.read_text(errors='replace').strip()[-300:]}"
                rows.append(row)
                bar.step(tool)
            if states["nmap"]:
                mine = states["scanner"]
                rows[-2]["agree_nmap"] = sum(mine.get(k) == v for k, v in states["nmap"].items()) / len(states["nmap"])
                rows[-2]["differ"] = sorted(f"{a}:{p} scanner {mine.get((a, p))} nmap {v}"
                                            for (a, p), v in states["nmap"].items() if mine.get((a, p)) != v)[:50]
    bar.end()
    summary = summarize(rows)
    for entry in summary:
        entry["open"] = next(r["open"] for r in rows if r["tool"] == entry["tool"])
    result: dict = {"meta": {"command": f"scanner bench --target {target} --authorized -p {ports} --technique {technique}",
                       "started": started.strftime("%Y-%m-%d %H:%M:%S UTC"), "repeat": repeat},
              "rows": rows, "summary": summary, "ratios": ratios(summary)}
    s = {e["tool"]: e for e in summary}
    agree = s["scanner"].get("agree_nmap")
    print(f"target {target}, -{technique} -p {ports}, {repeat} run(s):")
    for tool in ("scanner", "nmap"):
        print(f"  {tool:8} wall {s[tool]['wall_s']['median']:.2f}s  CPU {s[tool]['cpu_s']['median']:.2f}s  "
              f"open ports {s[tool]['open']}")
    print(f"  states equal to nmap's: {'-' if agree is None else format(agree['median'], '.2%')}; "
          f"wall scanner/nmap {result['ratios'][0]['wall_s']:.2f}" if result["ratios"] and result["ratios"][0]["wall_s"]
          else "  no comparison (a tool produced no results)")
    if report:
        import json
        d = Path(report)
        d.mkdir(parents=True, exist_ok=True)
        (d / "target.json").write_text(json.dumps(result, indent=1, default=str))
        from .cli import remember
        remember(d)         # listed by `scanner web`
        print(f"scanner bench: report: {d / 'target.json'}", file=sys.stderr)
    return 0 if all(r["rc"] == 0 for r in rows) else 1
