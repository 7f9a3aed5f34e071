"""The scan index space (scanner/space.py, ext/space.pxd) and the engine's Tracker."""
import ipaddress
import struct

import numpy as np
import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from scanner._ext.cookie import probe_cookie, split_key
from scanner._ext.parser import RESULT_DTYPE, ReplyParser
from scanner.engine import Tracker
from scanner.space import ScanSpace
from scanner.targets import TargetSet
from scanner.techniques import SYN_SCAN

KEY = bytes(range(100, 116))
SADDR = int(ipaddress.IPv4Address("198.19.255.1"))

SPACES = [
    (["198.18.0.1-198.18.0.5,198.18.1.0/30"], [22, 80, 443]),
    (["10.0.0.7"], [1]),
    (["10.0.0.0/29", "10.0.0.200", "10.0.1.0-10.0.1.2", "192.0.2.1"], [443, 1, 65535, 8080]),
    (["0.0.0.0", "255.255.255.254-255.255.255.255"], [0, 65535]),
]


def brute_force(specs, ports):
    hosts = [a for s, e in TargetSet.from_specs(specs).ranges() for a in range(s, e + 1)]
    return [(h, p) for h in hosts for p in ports]


def make(specs, ports):
    return ScanSpace(TargetSet.from_specs(specs), np.array(ports, dtype=np.uint16))


@pytest.mark.parametrize("specs,ports", SPACES)
def test_locate_matches_brute_force(specs, ports):
    space = make(specs, ports)
    expected = brute_force(specs, ports)
    assert space.size == len(expected)
    assert space.n_hosts == len(expected) // len(ports)
    addrs, got_ports = space.locate(np.arange(space.size))
    assert addrs.dtype == np.uint32 and got_ports.dtype == np.uint16
    got = list(zip(addrs.tolist(), got_ports.tolist()))
    assert got == expected
    assert len(set(got)) == len(got)               # every pair exactly once


def test_locate_example_indices():
    space = make(["198.18.0.1-198.18.0.5,198.18.1.0/30"], [22, 80, 443])
    # hosts: .0.1 .0.2 .0.3 .0.4 .0.5 .1.0 .1.1 .1.2 .1.3
    addrs, ports = space.locate(np.array([0, 1, 2, 3, 14, 15, 26], dtype=np.uint64))
    names = [str(ipaddress.IPv4Address(int(a))) for a in addrs]
    assert names == ["198.18.0.1", "198.18.0.1", "198.18.0.1", "198.18.0.2", "198.18.0.5",
                     "198.18.1.0", "198.18.1.3"]
    assert ports.tolist() == [22, 80, 443, 22, 443, 22, 443]


def test_locate_in_any_order_and_scalar_like():
    space = make(["198.18.0.1-198.18.0.5,198.18.1.0/30"], [22, 80, 443])
    idx = np.array([26, 0, 13, 13, 5], dtype=np.uint64)
    addrs, ports = space.locate(idx)
    full = brute_force(["198.18.0.1-198.18.0.5,198.18.1.0/30"], [22, 80, 443])
    assert list(zip(addrs.tolist(), ports.tolist())) == [full[i] for i in idx.tolist()]
    a, p = space.locate([7])
    assert (int(a[0]), int(p[0])) == full[7]


def test_arrays_describe_the_space():
    space = make(["198.18.0.1-198.18.0.5,198.18.1.0/30"], [22, 80, 443])
    starts, cum, ports, port_index = space.arrays()
    assert starts.dtype == np.uint32 and cum.dtype == np.uint64
    assert ports.dtype == np.uint16 and port_index.dtype == np.int32
    assert starts.tolist() == [int(ipaddress.IPv4Address("198.18.0.1")), int(ipaddress.IPv4Address("198.18.1.0"))]
    assert cum.tolist() == [0, 5, 9]
    assert len(port_index) == 65536
    assert port_index[[22, 80, 443]].tolist() == [0, 1, 2]
    assert (np.delete(port_index, [22, 80, 443]) == -1).all()


def test_port_order_is_scan_order():
    space = make(["10.0.0.1"], [443, 22, 80])
    _, ports = space.locate(np.arange(3))
    assert ports.tolist() == [443, 22, 80]


# --- the compiled index(addr, port), through the parser -----------------------

def _parser(space):
    k0, k1 = split_key(KEY)
    return ReplyParser(k0, k1, SADDR, 14, SYN_SCAN.tcp_flags, SYN_SCAN.state_table(), *space.arrays())


def _syn_ack(addr, port):
    seq, sport = probe_cookie(KEY, SADDR, addr, port)
    return bytes(Ether() / IP(src=str(ipaddress.IPv4Address(addr)), dst="198.19.255.1")
                 / TCP(sport=port, dport=sport, ack=(seq + 1) & 0xFFFFFFFF, flags="SA"))


def _batch(frames):
    data, meta = bytearray(), bytearray()
    for f in frames:
        meta += struct.pack("=IIII", 0, 0, len(data), len(f))
        data += f
    return bytes(data), bytes(meta)


@pytest.mark.parametrize("specs,ports", SPACES)
def test_compiled_index_round_trips(specs, ports):
    space = make(specs, ports)
    pairs = brute_force(specs, ports)
    parser = _parser(space)
    rows = parser.parse(*_batch([_syn_ack(a, p) for a, p in pairs]))
    assert rows.dtype == RESULT_DTYPE
    assert rows["index"].tolist() == list(range(space.size))
    assert list(zip(rows["ip"].tolist(), rows["port"].tolist())) == pairs
    addrs, got_ports = space.locate(rows["index"])
    assert (addrs == rows["ip"]).all() and (got_ports == rows["port"]).all()
    assert parser.not_in_scan == 0


@pytest.mark.parametrize("specs,ports", SPACES)
def test_compiled_index_rejects_neighbours(specs, ports):
    space = make(specs, ports)
    inside = set(brute_force(specs, ports))
    targets = TargetSet.from_specs(specs)
    candidates = set()
    for s, e in targets.ranges():
        for a in (s - 1, e + 1):
            if 0 <= a <= 0xFFFFFFFF:
                candidates.add((a, ports[0]))
        candidates.add((s, 2 if 2 not in ports else 3))
    outside = sorted(c for c in candidates if c not in inside)
    assert outside
    parser = _parser(space)
    rows = parser.parse(*_batch([_syn_ack(a, p) for a, p in outside]))
    assert len(rows) == 0
    assert parser.not_in_scan == len(outside)


# --- Tracker -------------------------------------------------------------------

def rows_for(indices):
    rows = np.zeros(len(indices), dtype=RESULT_DTYPE)
    rows["index"] = indices
    rows["port"] = np.arange(len(indices))          # tells rows with the same index apart
    return rows


def test_first_seen_drops_duplicates_within_a_batch():
    t = Tracker(100)
    fresh = t.first_seen(rows_for([5, 7, 5, 9, 7, 7, 0]))
    assert fresh["index"].tolist() == [5, 7, 9, 0]
    assert fresh["port"].tolist() == [0, 1, 3, 6]     # the first occurrence, in arrival order


def test_first_seen_drops_duplicates_across_batches():
    t = Tracker(100)
    assert t.first_seen(rows_for([1, 2, 3]))["index"].tolist() == [1, 2, 3]
    assert t.first_seen(rows_for([3, 4, 1, 99]))["index"].tolist() == [4, 99]
    assert t.first_seen(rows_for([1, 2, 3, 4, 99])).size == 0
    assert t.first_seen(rows_for([])).size == 0


def test_first_seen_same_byte_different_bits():
    t = Tracker(16)
    assert t.first_seen(rows_for([0, 1, 2, 3, 4, 5, 6, 7]))["index"].tolist() == list(range(8))
    assert t.bitmap.tolist() == [0xFF, 0]
    assert t.first_seen(rows_for([8, 15]))["index"].tolist() == [8, 15]
    assert t.bitmap.tolist() == [0xFF, 0x81]


def test_answered_reflects_marks():
    size = 1000
    t = Tracker(size)
    all_idx = np.arange(size, dtype=np.uint64)
    assert not t.answered(all_idx).any()
    marked = np.array([0, 7, 8, 63, 64, 500, 999], dtype=np.uint64)
    t.first_seen(rows_for(marked))
    answered = t.answered(all_idx)
    assert answered.dtype == bool
    assert np.flatnonzero(answered).tolist() == marked.tolist()
    assert t.answered(np.array([999, 998, 7], dtype=np.uint64)).tolist() == [True, False, True]


def test_tracker_size_not_multiple_of_eight():
    t = Tracker(13)
    assert len(t.bitmap) == 2
    t.first_seen(rows_for([12]))
    assert t.answered(np.arange(13, dtype=np.uint64)).tolist() == [False] * 12 + [True]


def test_tracker_random_against_a_set():
    rng = np.random.default_rng(3)
    size = 5000
    t = Tracker(size)
    seen = set()
    for _ in range(50):
        batch = rng.integers(0, size, rng.integers(0, 300), dtype=np.uint64)
        fresh = t.first_seen(rows_for(batch))["index"].tolist()
        expected = []
        for i in batch.tolist():
            if i not in seen:
                seen.add(i)
                expected.append(i)
        assert fresh == expected
    assert np.flatnonzero(t.answered(np.arange(size, dtype=np.uint64))).tolist() == sorted(seen)
