"""scanner against nmap on the same namespace lab, in one run: time from launch to the first probe,
and the small scans nmap users run (issue 9).

    python bench/nmap_compare.py [--repeat N] [--only startup|small]

1. startup: the time from the process launch to the first packet of the scan arriving at the
   target. A sniffer (an AF_PACKET socket inside the target namespace) stamps each packet from the
   scanner's address as it arrives; the launch is stamped just before `ip netns exec` starts the
   tool. Same target, same command (`-p 22 198.18.0.5`, host discovery included) for both tools.
   nmap runs with -n (no reverse DNS: scanner's default; the lab has no DNS server).
2. small scans, wall time of the whole process and the port states it reports (-oX, compared
   port by port): one host -p- with default options and with -T4, the same with -sT, and a /24 x
   nmap's top 1000 ports with -T4.

Both tools run as root inside the lab's scanner namespace; the lab is torn down on any failure.
Prints a markdown table (medians over --repeat runs) and writes bench/results/nmap-<time>.json."""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scanner.lab import Lab, LabSpec  # noqa: E402

HOST = "198.18.0.5"
SNIFFER = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind((sys.argv[1], 0))
src = socket.inet_aton(sys.argv[2])
print("ready", flush=True)
while True:
    frame = s.recv(2048)
    t = time.time()
    if frame[26:30] == src:            # IPv4 source address (14-byte Ethernet header)
        print(f"{t:.6f}", flush=True)
        break
"""
SMALL = [
    ("1 host -p-, defaults", [HOST, "-p-"], [HOST, "-p-"]),
    ("1 host -p- -T4", [HOST, "-p-", "-T4"], [HOST, "-p-", "-T4"]),
    ("1 host -sT -p-", [HOST, "-sT", "-p-"], [HOST, "-sT", "-p-"]),
    ("1 host -sT -p- -T4", [HOST, "-sT", "-p-", "-T4"], [HOST, "-sT", "-p-", "-T4"]),
    ("/24 x top 1000 -T4", ["198.18.0.0/24", "-T4"], ["198.18.0.0/24", "-T4"]),
]


def scanner_cmd(args: list) -> list:
    return [sys.executable, "-m", "scanner", *args, "--no-db", "-q"]


def nmap_cmd(args: list) -> list:
    # -n: the lab has no DNS server, and nmap's reverse lookups of the hosts up would then wait out
    # their timeouts (seconds); scanner never resolves unasked (its -n is the default).
    return ["nmap", "-n", *args]


def first_probe(lab: Lab, argv: list) -> float:
    """Seconds from launching argv in the scanner namespace to its first packet at the target."""
    sniffer = subprocess.Popen(["ip", "netns", "exec", lab.target_ns, sys.executable, "-c", SNIFFER,
                                lab.target_if, lab.scanner_addr], stdout=subprocess.PIPE, text=True)
    try:
        assert sniffer.stdout.readline().strip() == "ready"
        launched = time.time()
        tool = lab.popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
        arrived = float(sniffer.stdout.readline())
        tool.wait(timeout=120)
        return arrived - launched
    finally:
        sniffer.kill()
        sniffer.wait()


def states(xml_path: str) -> dict:
    """{(addr, port/proto): state} of every port nmap's XML lists, with the extraports counts."""
    out: dict = {}
    for host in ET.parse(xml_path).getroot().iter("host"):
        addr = host.find("address").get("addr")
        for port in host.iter("port"):
            out[(addr, f"{port.get('portid')}/{port.get('protocol')}")] = port.find("state").get("state")
        for extra in host.iter("extraports"):
            out[(addr, f"extra {extra.get('state')}")] = int(extra.get("count"))
    return out


def timed(lab: Lab, argv: list) -> tuple:
    with tempfile.NamedTemporaryFile(suffix=".xml") as f:
        began = time.monotonic()
        proc = lab.run(argv + ["-oX", f.name], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=600)
        wall = time.monotonic() - began
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr[-2000:]}")
        return wall, states(f.name)


def compile_bytecode() -> None:
    """scanner's modules compiled to bytecode first, as pip does when it installs a package:
    with PYTHONDONTWRITEBYTECODE set (or a read-only tree), each run would otherwise compile
    every module it imports from source, tens of ms that no installed copy spends."""
    import compileall
    compileall.compile_dir(str(ROOT / "scanner"), quiet=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", choices=("startup", "small"))
    a = ap.parse_args()
    report: dict = {"when": _dt.datetime.now(_dt.timezone.utc).isoformat(), "startup": {}, "small": []}
    compile_bytecode()
    with Lab(LabSpec(prefix="198.18.0.0/24")) as lab:
        if a.only in (None, "startup"):
            cmd = [HOST, "-p", "22"]
            for name, argv in (("scanner", scanner_cmd(cmd)), ("nmap", nmap_cmd(cmd))):
                times = [first_probe(lab, argv) for _ in range(a.repeat)]
                report["startup"][name] = times
            s, n = (statistics.median(report["startup"][k]) for k in ("scanner", "nmap"))
            print("| launch to first probe | scanner | nmap | ratio |\n|---|---|---|---|")
            print(f"| `-p 22 {HOST}` | {s * 1000:.0f} ms | {n * 1000:.0f} ms | {s / n:.2f} |\n")
        if a.only in (None, "small"):
            print("| scan | scanner | nmap | ratio | same states |\n|---|---|---|---|---|")
            for label, sargs, nargs in SMALL:
                runs_s, runs_n = [], []
                same = True
                for _ in range(a.repeat):
                    ws, ss = timed(lab, scanner_cmd(sargs))
                    wn, sn = timed(lab, nmap_cmd(nargs))
                    runs_s.append(ws)
                    runs_n.append(wn)
                    if ss != sn:
                        same = False
                        diff = sorted(set(ss.items()) ^ set(sn.items()))[:10]
                        print(f"  {label}: states differ: {diff}", file=sys.stderr)
                s, n = statistics.median(runs_s), statistics.median(runs_n)
                report["small"].append({"scan": label, "scanner": runs_s, "nmap": runs_n, "same_states": same})
                print(f"| {label} | {s:.2f} s | {n:.2f} s | {s / n:.2f} | {'yes' if same else 'NO'} |", flush=True)
    out = ROOT / "bench" / "results" / f"nmap-{_dt.datetime.now(_dt.timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
