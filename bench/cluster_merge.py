"""The cluster coordinator's merge throughput: 32 local Dask workers run dry-run shards (no
packets: every probe of the shard "answers" open, rows built as the engine builds them) and
stream their batches back; the coordinator dedups them against its bitmap and writes NDJSON,
exactly as a real cluster scan does. Nothing is sent anywhere (198.18.0.0/15 addresses are only
numbers here).

    python bench/cluster_merge.py                 # 32 workers, 2^23 results (~8.4M)
    python bench/cluster_merge.py --workers 8 --prefix 198.18.0.0/16 --ports 16

Reports, for the same run: results merged per second of wall time (first batch to last), the
coordinator process's CPU time per result (what one core of the coordinator can take), and, as
peers, the NDJSON writer alone and the merge without output on the same rows."""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def proc_cpu(popen) -> float:
    """CPU seconds of a process and its children so far (psutil comes with distributed)."""
    import psutil
    p = psutil.Process(popen.pid)
    total = 0.0
    for q in [p, *p.children(recursive=True)]:
        try:
            t = q.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=32)
    ap.add_argument("--prefix", default="198.18.0.0/15")
    ap.add_argument("--ports", type=int, default=64, help="ports per host (results = hosts x ports)")
    ap.add_argument("--out", default=None, help="NDJSON file (default: a temporary file, removed)")
    args = ap.parse_args()

    from distributed import Client

    from scanner.cluster.coordinator import ClusterScan
    from scanner.cluster.worker import _plugin_class
    from scanner.engine import ScanConfig, Tracker
    from scanner.output import BackgroundSink
    from scanner.output.base import ScanInfo
    from scanner.output.streams import NdjsonWriter
    from scanner.space import ScanSpace
    from scanner.targets import TargetSet
    from scanner.techniques import SYN_SCAN, Probes

    space = ScanSpace(TargetSet.from_specs([args.prefix]), Probes.ports(SYN_SCAN, range(1, args.ports + 1)))
    out = args.out or tempfile.mkstemp(prefix="cluster-merge-", suffix=".ndjson")[1]
    print(f"{args.workers} workers, {space.n_hosts} hosts x {space.n_slots} ports = {space.size:,} results",
          file=sys.stderr, flush=True)
    # Dask's scheduler and workers in their own processes (as on a real cluster), on loopback: the
    # CPU time of this process is then the coordinator's alone.
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--no-dashboard"], stderr=subprocess.DEVNULL)]
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                                       "--nworkers", str(args.workers), "--nthreads", "1",
                                       "--resources", "scanner=1", "--no-dashboard", "--memory-limit", "0"],
                                      stderr=subprocess.DEVNULL))
        client = Client(address, timeout=60)
        client.register_plugin(_plugin_class()())
        client.wait_for_workers(args.workers, timeout=300)
        config = ScanConfig(space=space, rate=0, retries=0, wait=0, seed=1)
        writer = NdjsonWriter(out, ScanInfo())
        sink = BackgroundSink([writer])           # as a Session writes its outputs
        first = []

        def timed(rows):
            if not first:
                first.append(time.monotonic())
            sink(rows)

        scan = ClusterScan(config, client=client, dry_run=True)
        cpu0, t0 = cpu(), time.monotonic()
        summary = scan.run(timed)
        sink.close()
        t1, cpu1 = time.monotonic(), cpu()
        writer.close(summary)
        client.close()
        scheduler_cpu = proc_cpu(procs[0])
        workers_cpu = proc_cpu(procs[1])
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    lines = sum(1 for _ in open(out, "rb"))
    wall = t1 - (first[0] if first else t0)
    merged = {"results": scan.received, "ndjson_lines": lines, "duplicates": scan.duplicates,
              "wall_s": round(wall, 2), "results_per_s": round(scan.received / wall),
              "coordinator_cpu_s": round(cpu1 - cpu0, 2),
              "results_per_cpu_s": round(scan.received / max(1e-9, cpu1 - cpu0)),
              "scheduler_cpu_s": round(scheduler_cpu, 2), "results_per_scheduler_cpu_s":
              round(scan.received / max(1e-9, scheduler_cpu)), "workers_cpu_s": round(workers_cpu, 2),
              "shards": scan.n_shards, "workers": len(scan.workers)}

    # Peers on the same rows, in this process: the NDJSON writer alone; the merge without output.
    with open(out, "rb") as f:
        sample = [json.loads(next(f)) for _ in range(3)]
    indices = np.concatenate(list(config.indices(1 << 20)))[: min(space.size, 4 << 20)]
    rows = space.rows(indices)
    from scanner.states import REASONS, STATES
    rows["state"], rows["reason"], rows["ttl"] = STATES["open"], REASONS["syn-ack"], 64
    with open(os.devnull, "w") as null:
        peer = NdjsonWriter(os.devnull, ScanInfo())
        peer.file = null
        c0 = cpu()
        for i in range(0, len(rows), 1 << 16):
            peer.write_rows(rows[i:i + (1 << 16)])
        ndjson_alone = len(rows) / (cpu() - c0)
    tracker = Tracker(space.size)
    c0 = cpu()
    for i in range(0, len(rows), 1 << 16):
        tracker.first_seen(rows[i:i + (1 << 16)])
    dedup_alone = len(rows) / (cpu() - c0)
    merged.update(ndjson_writer_alone_per_cpu_s=round(ndjson_alone), dedup_alone_per_cpu_s=round(dedup_alone),
                  sample=sample[0])
    merged["argv"] = sys.argv[1:]
    print(json.dumps(merged, indent=1))
    results = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, time.strftime("cluster-merge-%Y%m%dT%H%M%SZ.json", time.gmtime())), "w") as f:
        json.dump(merged, f, indent=1)
    assert lines == space.size == scan.received, "every result once"
    if not args.out:
        os.unlink(out)


if __name__ == "__main__":
    main()
