"""Results per second into each output writer and the SQLite store: a dense sweep's results
(IPv4, open and closed ports, as a scan hands them on) written batch by batch into NDJSON (-oJ),
CSV (--csv), masscan's list (-oL) and binary (-oB) formats and the store (--db), each timed alone.
No network, no root: the writers only.

    .venv/bin/python bench/writers.py                   # 2,000,000 rows in batches of 8192
    .venv/bin/python bench/writers.py --rows 500000 --batch 4096 --repeat 3 --json out.json

Prints a markdown table (rows/s, MB/s of output, best of --repeat) and optionally writes JSON.
A scan's writers run in one background thread (output.BackgroundSink): a writer's rows/s is the
densest sweep it keeps up with."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scanner.output import FORMATS, ScanInfo  # noqa: E402
from scanner.states import REASONS, RESULT_DTYPE, STATES  # noqa: E402

WRITERS = ["json", "csv", "list", "binary"]


def dense_rows(n: int, seed: int = 1) -> np.ndarray:
    """n results of a dense sweep of a large prefix x a few ports: 70% open (syn-ack),
    30% closed (reset), TTL 64, in random order."""
    rng = np.random.default_rng(seed)
    rows = np.zeros(n, dtype=RESULT_DTYPE)
    rows["index"] = np.arange(n, dtype=np.uint64)
    rows["ip"] = rng.integers(0xC6120000, 0xC6140000, n, dtype=np.uint32)   # 198.18.0.0/15
    rows["port"] = rng.choice(np.array([22, 80, 443, 8080, 3389], dtype=np.uint16), n)
    rows["proto"] = 6
    is_open = rng.random(n) < 0.7
    rows["state"] = np.where(is_open, STATES["open"], STATES["closed"])
    rows["reason"] = np.where(is_open, REASONS["syn-ack"], REASONS["reset"])
    rows["ttl"] = 64
    return rows


def time_writer(name: str, rows: np.ndarray, batch: int, directory: str) -> tuple[float, int]:
    """(seconds, bytes written) of writing rows into one writer (show_all: every row listed)."""
    path = os.path.join(directory, f"out.{name}")
    began = time.perf_counter()
    w = FORMATS[name](path, ScanInfo(command="bench"), show_all=True)
    for i in range(0, len(rows), batch):
        w.write(rows[i:i + batch])
    w.close(None)
    elapsed = time.perf_counter() - began
    assert w.error is None, w.error
    size = os.path.getsize(path)
    os.unlink(path)
    return elapsed, size


def time_store(rows: np.ndarray, batch: int, directory: str) -> tuple[float, int]:
    from scanner.store import Recorder, Store
    path = os.path.join(directory, "bench.db")
    store = Store(path)
    began = time.perf_counter()
    rec = Recorder(store, ScanInfo(command="bench"), {})
    for i in range(0, len(rows), batch):
        rec.write(rows[i:i + batch])
    elapsed = time.perf_counter() - began
    assert rec.error is None, rec.error
    store.close()
    size = sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
    for p in (path, path + "-wal", path + "-shm"):
        if os.path.exists(p):
            os.unlink(p)
    return elapsed, size


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--only", default="", help="comma-separated writers (json,csv,list,binary,store)")
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args(argv)
    rows = dense_rows(a.rows)
    names = [n for n in WRITERS + ["store"] if not a.only or n in a.only.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="scanner-bench-writers-") as d:
        for name in names:
            runs = [time_store(rows, a.batch, d) if name == "store" else time_writer(name, rows, a.batch, d)
                    for _ in range(a.repeat)]
            best, size = min(runs)
            results.append({"writer": name, "rows": a.rows, "batch": a.batch, "seconds": best,
                            "rows_per_s": a.rows / best, "bytes": size, "mb_per_s": size / best / 1e6,
                            "all_seconds": [r[0] for r in runs]})
    print(f"| writer | rows/s | MB/s | seconds ({a.rows:,} rows, batches of {a.batch}) |")
    print("|---|---:|---:|---:|")
    for r in results:
        print(f"| {r['writer']} | {r['rows_per_s']:,.0f} | {r['mb_per_s']:.1f} | {r['seconds']:.2f} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": os.uname().nodename, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
