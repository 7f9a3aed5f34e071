"""The sweep and send-path benchmarks against zmap, masscan and the C sender: now
`scanner bench sparse sendpath --tools zmap,masscan` (scanner/benchmark/, docs/bench.md). This
wrapper keeps the old command lines working:

    python bench/run.py [--quick] [--only sweep|sendpath] [--repeat N] [--baseline DIR]

and writes the report to bench/results/<UTC time>[-quick]/ (report.md, report.json, plots,
report.html). The JSON files already in bench/results/ came from the script this replaced.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def argv_for(args: argparse.Namespace, now: _dt.datetime) -> list[str]:
    """The `scanner bench` arguments that stand for bench/run.py's."""
    workloads = {"sweep": ["sparse"], "sendpath": ["sendpath"], None: ["sparse", "sendpath"]}[args.only]
    report = ROOT / "bench" / "results" / f"{now.strftime('%Y%m%dT%H%M%SZ')}{'-quick' if args.quick else ''}"
    return ["bench", *workloads, "--tools", "zmap,masscan", "--repeat", str(args.repeat), "--report", str(report),
            *(["--quick"] if args.quick else []), *(["--baseline", str(args.baseline)] if args.baseline else [])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small prefixes: a smoke test")
    ap.add_argument("--only", choices=["sweep", "sendpath"], help="run one benchmark only")
    ap.add_argument("--repeat", type=int, default=1, metavar="N", help="runs of each tool, interleaved (medians)")
    ap.add_argument("--baseline", metavar="DIR", help="also run the scanner of this checkout as scanner-base")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    from scanner import cli
    argv = argv_for(args, _dt.datetime.now(_dt.timezone.utc))
    sys.argv = ["scanner", *argv]           # the report records this command line
    cli.main(argv)


if __name__ == "__main__":
    main()
