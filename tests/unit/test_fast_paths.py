"""The quicker paths of a scan's start and end give what the plain ones gave: probes built from
port runs equal probes built slot by slot, rows copied as whole records equal numpy's field by
field copies, IPv4 host keys sort as the address bytes do, the window's RTT sample is the median,
and the kernel's routes asked through rtnetlink equal what `ip route get` / `ip neigh` print."""
from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess

import numpy as np
import pytest

from scanner import netinfo
from scanner.output.base import RowBuffer
from scanner.states import RESULT_DTYPE, concatenate, host_keys, take
from scanner.techniques import DISCOVERY, SYN_SCAN, UDP_SCAN, Probes
from scanner.timing import Timing, Window


def test_probes_from_runs_equal_probes_slot_by_slot():
    tcp, udp = [22, 80, 443, 8080, 1], [53, 161, 123, 40000, 7]
    by_runs = Probes.ports(SYN_SCAN, tcp, udp)
    by_slots = Probes([(SYN_SCAN, p) for p in tcp] + [(UDP_SCAN, p) for p in udp])
    assert by_runs.slots == by_slots.slots == [(SYN_SCAN, p) for p in tcp] + [(UDP_SCAN, p) for p in udp]
    assert by_runs.kinds == by_slots.kinds
    for name in ("slot_kind", "slot_port", "tcp_slot", "udp_slot"):
        assert np.array_equal(getattr(by_runs, name), getattr(by_slots, name)), name
    assert by_runs.n_slots == len(tcp) + len(udp) and by_runs.arp_slot == by_slots.arp_slot == -1
    # UDP probes with a payload are kinds of their own, in order of first appearance.
    assert [k[0] for k in by_runs.kinds].count(UDP_SCAN) == len({k[1:] for k in by_runs.kinds if k[0] is UDP_SCAN})
    # Interleaved techniques (discovery) keep the slot order.
    mixed = [(DISCOVERY["PE"], 0), (DISCOVERY["PS"], 443), (DISCOVERY["PA"], 80), (DISCOVERY["PP"], 0)]
    assert Probes(mixed).slots == mixed


def test_every_port_in_one_run():
    probes = Probes.ports(SYN_SCAN, range(1, 65536))
    assert probes.n_slots == 65535 and len(probes.kinds) == 1
    assert probes.slot_port[0] == 1 and probes.slot_port[-1] == 65535 and probes.tcp_slot[65535] == 65534
    assert probes.slots[100] == (SYN_SCAN, 101)


def random_rows(n: int, seed: int, v6: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = np.zeros(n, dtype=RESULT_DTYPE)
    rows["index"] = rng.integers(0, 1 << 40, n)
    rows["ip"] = rng.integers(0, 1 << 32, n, dtype=np.uint64)
    rows["port"] = rng.integers(1, 65536, n)
    rows["proto"] = rng.choice([6, 17], n)
    rows["state"] = rng.integers(0, 5, n)
    rows["ttl"] = rng.integers(0, 256, n)
    rows["tcpopts"] = rng.integers(0, 256, (n, 8))
    if v6:
        six = rng.random(n) < 0.5
        rows["ip6"][six] = rng.integers(0, 256, (int(six.sum()), 16))
        rows["ip"][six] = 0
    return rows


@pytest.mark.parametrize("v6", [False, True])
def test_whole_record_copies_equal_numpy_copies(v6):
    rows = random_rows(5000, 1, v6)
    mask = rows["state"] == 2
    order = np.argsort(rows["port"], kind="stable")
    assert take(rows, mask).tobytes() == rows[mask].tobytes()
    assert take(rows, order).tobytes() == rows[order].tobytes()
    batches = [rows[i:i + 77] for i in range(0, len(rows), 77)]
    assert concatenate(batches).tobytes() == np.concatenate(batches).tobytes()
    assert len(concatenate([])) == 0 and concatenate([]).dtype == RESULT_DTYPE
    # A view that is not contiguous is still taken correctly.
    assert take(rows[::2], mask[::2]).tobytes() == rows[::2][mask[::2]].tobytes()


@pytest.mark.parametrize("v6", [False, True])
def test_row_buffer_sorts_by_address_bytes_then_proto_then_port(v6):
    rows = random_rows(3000, 2, v6)
    buffer = RowBuffer()
    for i in range(0, len(rows), 100):
        buffer.append(rows[i:i + 100])
    got = buffer.rows()
    # The reference order: the 20 address bytes (IPv4 in network order, then ip6), proto, port.
    address_bytes = [int(ip).to_bytes(4, "big") + bytes(ip6) for ip, ip6 in zip(rows["ip"], rows["ip6"])]
    want = sorted(range(len(rows)), key=lambda i: (address_bytes[i], int(rows["proto"][i]), int(rows["port"][i]),
                                                   i))
    assert got.tobytes() == rows[want].tobytes()
    if not v6:      # IPv4 only: the address itself is the key
        keys = host_keys(got)
        assert keys.dtype == np.uint32 and (keys[1:] >= keys[:-1]).all()


def test_window_rtt_sample_is_the_median():
    from scanner.request import ScanRequest
    window = Window(Timing.from_request(ScanRequest.from_argv(["192.0.2.1"])))
    window.replies(1.0, np.array([0.004, 0.001, 0.010]), 3, 0, 0)
    assert window.srtt == pytest.approx(0.004)
    window = Window(Timing.from_request(ScanRequest.from_argv(["192.0.2.1"])))
    window.replies(1.0, np.array([0.004, 0.001, 0.010, 0.002]), 4, 0, 0)
    assert window.srtt == pytest.approx(0.003)


def ip_json(*args) -> list:
    return json.loads(subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout or "[]")


@pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 is a dependency of the scanner itself")
def test_routes_through_rtnetlink_equal_ip_route_get():
    addresses = ["127.0.0.1", "127.3.4.5"]
    for entry in ip_json("-4", "route", "show", "table", "main"):
        if entry.get("dst") == "default" and entry.get("gateway"):
            addresses += [entry["gateway"], "192.0.2.77"]       # a neighbour, and a documentation address
    if any(a.get("addr_info") for a in ip_json("-6", "addr", "show", "dev", "lo")):
        addresses.append("::1")
    for addr in addresses:
        want = ip_json("route", "get", addr)[0]
        got = netinfo.route_to(addr)
        assert got.ifname == want["dev"], addr
        assert got.src == want.get("prefsrc", ""), addr
        assert got.next_hop == want.get("gateway", addr), addr
        assert got.on_link == (not got.loopback and "gateway" not in want), addr
    with pytest.raises(netinfo.EnvironmentFault, match='no route to 192.0.2.1: cannot find device "nosuchif0"'):
        netinfo.route_to("192.0.2.1", "nosuchif0")


@pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 is a dependency of the scanner itself")
def test_neighbours_through_rtnetlink_equal_ip_neigh():
    for entry in ip_json("neigh", "show"):
        want = entry.get("lladdr") if "FAILED" not in entry.get("state", []) else None
        got = netinfo._neighbour(entry["dev"], entry["dst"])
        assert got == (bytes.fromhex(want.replace(":", "")) if want else None), entry
    assert netinfo._neighbour("lo", str(ipaddress.ip_address("192.0.2.254"))) is None
