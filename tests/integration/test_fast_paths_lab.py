"""The quicker paths of a scan, on the namespace lab: a connect scan whose verdicts the kernel
has before connect() returns (over the lab's veth, every one) still reports every port; the
route and neighbour asked through rtnetlink equal `ip route get` / `ip neigh` in the scanner's
namespace; --send-path auto takes sendmmsg for small stages and AF_XDP for big ones.
Needs root; fails without it."""
from __future__ import annotations

import json
import sys
import textwrap

import pytest

from scanner.lab import LabSpec

from conftest import diff, make_lab, scan, scanner_env

pytestmark = pytest.mark.lab
HOST = "198.18.0.5"


@pytest.fixture(scope="module")
def lab():
    # No dropped port: every connect has its verdict at once, the last batch included.
    with make_lab(LabSpec(prefix="198.18.0.0/29", drop_tcp=(), reject_tcp={})) as the_lab:
        yield the_lab


def test_connect_scan_reports_every_port_when_verdicts_come_at_once(lab):
    ports = range(1, 3001)
    proc, got = scan(lab, [HOST, "-sT", "-Pn", "-p", "1-3000", "--show-all", "--no-db", "-d"])
    want = {k: v for k, v in lab.expected(ports).items() if k[0] == HOST}
    assert {k: v[0] for k, v in got.items()} == {k: v[0] for k, v in want.items()}, diff(got, want)
    # Each connection is timed from its own start: the round trips are the link's, not a batch's.
    assert "srtt 0." in next(line for line in proc.stdout.splitlines() if line.startswith("connect: window"))


ROUTES = textwrap.dedent("""
    import json, subprocess, sys
    from scanner import netinfo
    out = {}
    for addr in sys.argv[1:]:
        r = netinfo.route_to(addr)
        out[addr] = [r.ifname, r.src, r.next_hop, r.on_link, r.loopback,
                     (netinfo._neighbour(r.ifname, r.next_hop) or b"").hex()]
    print(json.dumps(out))
""")


def test_rtnetlink_route_and_neighbour_equal_ip_in_the_lab(lab):
    addrs = [HOST, lab.target_link_addr, lab.scanner_addr]
    scan(lab, [HOST, "-sT", "-Pn", "-p", "22", "--no-db"])     # the kernel's own connect: a neighbour entry
    got = json.loads(lab.run([sys.executable, "-c", ROUTES, *addrs], capture_output=True, text=True,
                             env=scanner_env(), check=True).stdout)
    for addr in addrs:
        want = json.loads(lab.run(["ip", "-j", "route", "get", addr], capture_output=True, text=True,
                                  check=True).stdout)[0]
        ifname, src, next_hop, on_link, loopback, mac = got[addr]
        assert (ifname, src, next_hop) == (want["dev"], want.get("prefsrc", ""), want.get("gateway", addr)), addr
        assert on_link == (not loopback and "gateway" not in want), addr
        neigh = json.loads(lab.run(["ip", "-j", "neigh", "show", "to", next_hop, "dev", ifname], capture_output=True,
                                   text=True, check=True).stdout or "[]")
        lladdr = [e["lladdr"] for e in neigh if e.get("lladdr") and "FAILED" not in e.get("state", [])]
        assert mac == (lladdr[0].replace(":", "") if lladdr else ""), addr
    assert got[HOST][2] == lab.target_link_addr and got[HOST][5]      # through the gateway, whose MAC is known


SEND_PATH = textwrap.dedent("""
    import sys
    from scanner import engine, netinfo
    from scanner.space import ScanSpace
    from scanner.targets import TargetSet
    from scanner.techniques import SYN_SCAN, Probes
    route = netinfo.route_to(sys.argv[1])
    probes = Probes.ports(SYN_SCAN, [80])
    space = ScanSpace(TargetSet.from_specs([sys.argv[1]]), probes)
    blob, kinds, l2 = probes.compile(4, netinfo.interface_mac(route.ifname), netinfo.next_hop_mac(route),
                                     bytes(4))
    for count in (1, engine.XDP_FROM_PROBES - 1, engine.XDP_FROM_PROBES):
        sender = engine.open_sender("auto", route.ifname, False, l2, blob, kinds, 1, 2, bytes(4),
                                    space.arrays(), 1, 0.0, count)
        print(count, sender.path)
        sender.close()
""")


def test_auto_send_path_by_stage_size(lab):
    proc = lab.run([sys.executable, "-c", SEND_PATH, HOST], capture_output=True, text=True,
                   env=scanner_env())
    assert proc.returncode == 0, proc.stderr
    paths = [line.split()[1] for line in proc.stdout.splitlines()]
    assert paths == ["packet", "packet", "xdp"], proc.stdout
