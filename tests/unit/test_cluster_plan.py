"""The cluster coordinator without packets (no root needed): dry-run shards on an in-process Dask
cluster go through the real path (hello/go, batches of raw rows through the scan's queue, the
coordinator's bitmap), over tcp:// and tls://; and --cluster in the scan request."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from scanner.cluster.coordinator import ClusterScan
from scanner.cluster.worker import _plugin_class
from scanner.engine import ScanConfig, StageCheckpoint, Tracker
from scanner.errors import InputError
from scanner.request import ScanRequest
from scanner.space import ScanSpace
from scanner.targets import TargetSet
from scanner.techniques import SYN_SCAN, Probes


def space(prefix="198.18.0.0/19", ports=(22, 80, 443)):
    return ScanSpace(TargetSet.from_specs([prefix]), Probes.ports(SYN_SCAN, ports))


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=3, threads_per_worker=1, processes=False, resources={"scanner": 1},
                      dashboard_address=":0", silence_logs=40) as cluster, Client(cluster) as c:
        c.register_plugin(_plugin_class()())
        yield c


def collect(scan):
    got = []
    summary = scan.run(got.append)
    rows = np.concatenate(got) if got else np.zeros(0)
    return summary, rows


def test_shards_cover_the_space_once(client):
    sp = space()
    scan = ClusterScan(ScanConfig(space=sp, rate=0, retries=0, wait=0, seed=3), client=client, dry_run=True)
    summary, rows = collect(scan)
    assert scan.n_shards == 24                                   # 8 x 3 workers
    assert len(rows) == sp.size and len(np.unique(rows["index"])) == sp.size
    assert summary.replies == sp.size and not summary.interrupted
    assert summary.states == {"open": sp.size}
    assert len(scan.workers) == 3 and sum(w["results"] for w in scan.workers.values()) == sp.size
    assert all(len(w["shards"]) >= 1 for w in scan.workers.values())


def test_resumed_stage_sends_only_what_had_no_answer(client):
    sp = space()
    answered = np.arange(0, sp.size, 3, dtype=np.uint64)         # a third already in
    config = ScanConfig(space=sp, rate=0, retries=0, wait=0, seed=3)
    tracker = Tracker(config)
    tracker.first_seen(sp.rows(answered))
    resume = StageCheckpoint(0, 0, tracker.bitmap, b"k" * 16)
    scan = ClusterScan(config, resume, client=client, dry_run=True)
    _, rows = collect(scan)
    assert len(rows) == sp.size - len(answered)
    assert not np.isin(rows["index"], answered).any()
    assert len(np.unique(rows["index"])) == len(rows)


def test_cluster_over_tls():
    """tls:// with Dask's security options: the same scan over an encrypted, authenticated link."""
    from distributed import Client, LocalCluster
    from distributed.security import Security
    security = Security.temporary()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, resources={"scanner": 1},
                      protocol="tls://", security=security, dashboard_address=":0",
                      silence_logs=40) as cluster, Client(cluster, security=security) as c:
        assert cluster.scheduler_address.startswith("tls://")
        c.register_plugin(_plugin_class()())
        sp = space("198.18.0.0/22", (80,))
        scan = ClusterScan(ScanConfig(space=sp, rate=0, retries=0, wait=0, seed=1), client=c, dry_run=True)
        _, rows = collect(scan)
        assert len(np.unique(rows["index"])) == len(rows) == sp.size


def test_cluster_in_the_scan_request():
    req = ScanRequest.from_argv(["198.18.0.0/24", "-p", "80", "--cluster", "tcp://198.18.255.1:8786"])
    assert req.cluster == "tcp://198.18.255.1:8786"
    assert ScanRequest.from_json(req.to_json()).cluster == req.cluster
    assert "--cluster" in req.to_argv()
    # How a scan runs is not what it scans: a checkpoint of it resumes anywhere.
    assert dataclasses.replace(req, cluster=None) == req
    for argv, message in ((["--cluster", "198.18.255.1:8786"], "tcp://HOST:PORT"),
                          (["--cluster", "tcp://h:8786", "--shard", "1/2"], "--shard and --cluster"),
                          (["--cluster", "tcp://h:8786", "-sV"], "not -sT, -sV, -O, -sC/--script or --traceroute"),
                          (["--cluster", "tcp://h:8786", "-sT"], "not -sT, -sV"),
                          (["--cluster", "tcp://h:8786", "-sC"], "-sC/--script"),
                          (["--cluster", "tcp://h:8786", "--traceroute"], "--traceroute")):
        with pytest.raises(InputError, match=message):
            ScanRequest.from_argv(["198.18.0.0/24", *argv])


def test_a_cluster_without_scanner_workers_is_an_environment_fault():
    from distributed import Client, LocalCluster

    from scanner.errors import EnvironmentFault
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0",
                      silence_logs=40) as cluster, Client(cluster) as c:
        scan = ClusterScan(ScanConfig(space=space(), rate=0, seed=1), client=c, dry_run=True)
        with pytest.raises(EnvironmentFault, match="no scanner workers"):
            scan.run(lambda rows: None)


@pytest.mark.parametrize("argv, message", [
    (["worker", "198.18.255.1:8786"], "bad scheduler address"),
    (["worker", "tcp://198.18.255.1:8786", "--max-rate", "-5"], "bad --max-rate"),
    (["worker", "tcp://198.18.255.1:8786", "--tls-cert", "x.pem"], "go together"),
])
def test_worker_command_refuses_bad_input_in_one_line(argv, message, capsys):
    import os

    from scanner.cli import main
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    if message == "go together" and os.geteuid() != 0:
        message = "needs root"
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
