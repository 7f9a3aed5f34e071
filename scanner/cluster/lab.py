"""A namespace lab for cluster scans: one target namespace and several worker namespaces.

    worker ns 1 (198.19.252.1/24) --veth--+
    worker ns 2 (198.19.252.2/24) --veth--+-- bridge (198.19.252.254/24) in the target ns
    worker ns 3 (198.19.252.3/24) --veth--+

The target answers for the whole ``LabSpec.prefix`` exactly as in scanner.lab's Lab (a local
route on lo, real services, the same nftables table on the bridge); the workers reach it, and
each other (the Dask scheduler and the coordinator live in worker ns 1), through the bridge.
Nothing is attached to the root namespace and no namespace has a default route, so probes
cannot leave the lab. Every namespace is deleted in down(), also when building fails.
"""
from __future__ import annotations

import ipaddress
import os
import json
import re
import subprocess
from pathlib import Path

from ..lab import (COMMON_SYSCTLS, OWNER_DIR, TARGET_SYSCTLS, Host, Lab, LabSpec, _delete_ns, _mac, _nsexec,
                   _pid_alive, _sh, _sysctl, _tx_csum_off)

WORKER_LINK = ipaddress.ip_network("198.19.252.0/24")
BRIDGE_ADDR = "198.19.252.254"
NAME_PREFIX = "scc"


class ClusterLab(Lab):
    """Lab with `workers` worker namespaces (Host objects in .workers) instead of one scanner
    namespace; .run()/.popen() run in the first worker namespace, where a single-machine scan of
    the same space can be compared with the cluster's."""

    def __init__(self, spec: LabSpec | None = None, workers: int = 3):
        super().__init__(spec)
        if self.spec.network.overlaps(WORKER_LINK):
            raise ValueError(f"lab prefix {self.spec.prefix} overlaps the worker link {WORKER_LINK}")
        if self.spec.prefix6 is not None:
            raise ValueError("the cluster lab is IPv4 only")
        self.name = NAME_PREFIX + self.name[3:]
        self.target_ns = f"{self.name}-t"
        self.target_if = f"{self.name}b"          # the bridge: nft rules match it as the input device
        self.n_workers = workers
        self.workers: list[Host] = []
        self.scanner_ns = f"{self.name}-w1"
        self.scanner_addr = str(WORKER_LINK.network_address + 1)
        self.target_link_addr = BRIDGE_ADDR

    def namespaces(self) -> list[str]:
        return [self.target_ns] + [f"{self.name}-w{i}" for i in range(1, self.n_workers + 1)]

    def down(self) -> None:
        services, self._services = self._services, None
        if services is not None:
            services.terminate()
            try:
                services.wait(2)
            except subprocess.TimeoutExpired:
                services.kill()
                services.wait()
            if services.stdout:
                services.stdout.close()
        for ns in self.namespaces():
            if Path("/run/netns", ns).exists():
                _delete_ns(ns)         # kills what runs inside first (workers, scheduler)
        (OWNER_DIR / self.name).unlink(missing_ok=True)
        self.workers = []
        self._is_up = False

    def _build(self) -> None:
        t, spec = self.target_ns, self.spec
        OWNER_DIR.mkdir(parents=True, exist_ok=True)
        (OWNER_DIR / self.name).write_text(str(os.getpid()))
        for ns in self.namespaces():
            _sh(["ip", "netns", "add", ns])
            _sysctl(ns, COMMON_SYSCTLS)
            _sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        _sysctl(t, {k: v for k, v in TARGET_SYSCTLS.items()
                    if not (spec.icmp_ratelimit and k.startswith("net.ipv4.icmp_"))})
        br = self.target_if
        _sh(["ip", "-n", t, "link", "add", br, "type", "bridge"])
        _sh(["ip", "-n", t, "addr", "add", f"{BRIDGE_ADDR}/{WORKER_LINK.prefixlen}", "dev", br])
        _sh(["ip", "-n", t, "link", "set", br, "up"])
        _sysctl(t, {f"net.ipv4.conf.{br}.rp_filter": 0})
        for i in range(1, self.n_workers + 1):
            ns, wif, pif = f"{self.name}-w{i}", f"{self.name}w{i}", f"{self.name}p{i}"
            addr = str(WORKER_LINK.network_address + i)
            _sh(["ip", "-n", ns, "link", "add", wif, "txqueuelen", "10000", "type", "veth",
                 "peer", "name", pif, "netns", t, "txqueuelen", "10000"])
            _sh(["ip", "-n", t, "link", "set", pif, "master", br])
            _sh(["ip", "-n", ns, "addr", "add", f"{addr}/{WORKER_LINK.prefixlen}", "dev", wif])
            _sh(["ip", "-n", ns, "link", "set", wif, "up"])
            _sh(["ip", "-n", t, "link", "set", pif, "up"])
            _sysctl(ns, {f"net.ipv4.conf.{wif}.rp_filter": 0})
            _tx_csum_off(ns, wif)
            _tx_csum_off(t, pif)
            # The only route off the worker link: the target prefix, via the target.
            _sh(["ip", "-n", ns, "route", "add", spec.prefix, "via", BRIDGE_ADDR, "dev", wif])
            self.workers.append(Host(ns=ns, ifname=wif, addr=addr, mac=_mac(ns, wif),
                                     peer_ifname=pif, peer_mac=_mac(t, pif)))
        _tx_csum_off(t, br)
        _sh(["ip", "-n", t, "route", "add", "local", spec.prefix, "dev", "lo"])
        self.scanner_if = self.workers[0].ifname
        self.scanner_mac = self.workers[0].mac
        self.target_mac = _mac(t, br)
        _sh(_nsexec(t, ["nft", "-f", "-"]), input=self.nft_ruleset() + self._probe_counters())
        self._start_services()

    def _probe_counters(self) -> str:
        """A counter per worker of the packets it sent to the target prefix (ground truth for
        'every worker sent a share', independent of what the workers report)."""
        lines = ["table inet cluster {"]
        lines += [f"  counter w{i} {{ }}" for i in range(1, self.n_workers + 1)]
        lines += ["  chain input {", "    type filter hook prerouting priority -400; policy accept;"]
        for i, w in enumerate(self.workers, 1):
            # Probes only: not the RSTs the worker's kernel sends back for SYN-ACKs.
            match = f"ip saddr {w.addr} ip daddr {self.spec.prefix}"
            lines.append(f'    {match} meta l4proto != tcp counter name "w{i}"')
            lines.append(f'    {match} tcp flags & rst == 0 counter name "w{i}"')
        lines += ["  }", "}"]
        return "\n".join(lines) + "\n"

    def probes_from(self) -> list[int]:
        """Packets each worker sent to the target prefix so far, in worker order."""
        out = _sh(_nsexec(self.target_ns, ["nft", "-j", "list", "counters", "table", "inet", "cluster"])).stdout
        counts = {}
        for item in json.loads(out)["nftables"]:
            if "counter" in item:
                counts[item["counter"]["name"]] = int(item["counter"]["packets"])
        return [counts[f"w{i}"] for i in range(1, self.n_workers + 1)]

    def run_in(self, worker: int, argv: list[str], **kw) -> subprocess.CompletedProcess:
        return self.workers[worker].run(argv, **kw)

    def popen_in(self, worker: int, argv: list[str], **kw) -> subprocess.Popen:
        return self.workers[worker].popen(argv, **kw)

    def third_party(self) -> Host:
        raise NotImplementedError("the cluster lab has no third-party namespace")


def cleanup_stale() -> list[str]:
    """Deletes cluster-lab namespaces left by crashed runs whose owner process is gone."""
    pat = re.compile(rf"^({NAME_PREFIX}[0-9a-f]{{6}})-(t|w\d+)$")
    listed = _sh(["ip", "-j", "netns", "list"], check=False).stdout.strip()
    removed = []
    for ns in [n["name"] for n in json.loads(listed)] if listed else []:
        m = pat.match(ns)
        if not m:
            continue
        owner = OWNER_DIR / m.group(1)
        try:
            if _pid_alive(int(owner.read_text())):
                continue
        except (OSError, ValueError):
            pass
        _delete_ns(ns)
        owner.unlink(missing_ok=True)
        removed.append(ns)
    return removed
