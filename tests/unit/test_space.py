"""The scan index space (scanner/space.py, ext/space.pxd) and the engine's Tracker."""
import ipaddress

import numpy as np
import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from probekit import Rig, batch
from scanner._ext.cookie import probe_cookie
from scanner._ext.parser import RESULT_DTYPE
from scanner.engine import Tracker
from scanner.lab_services import udp_answer
from scanner.space import ScanSpace
from scanner.targets import TargetSet
from scanner.techniques import DISCOVERY, SYN_SCAN, UDP_SCAN, Probes

KEY = bytes(range(100, 116))
SADDR_S = "198.19.255.1"
SADDR = int(ipaddress.IPv4Address(SADDR_S))
SADDR6 = "2001:db8::ffff"

# (target specs, TCP ports, UDP ports)
SPACES = [
    (["198.18.0.1-198.18.0.5,198.18.1.0/30"], [22, 80, 443], []),
    (["198.18.200.7"], [1], []),
    (["198.18.200.0/29", "198.18.200.200", "198.18.201.0-198.18.201.2", "192.0.2.1"], [443, 1, 65535, 8080], [53, 1, 65535]),
    (["0.0.0.0", "255.255.255.254-255.255.255.255"], [0, 65535], [0, 161]),
    (["198.18.0.9"], [], [53, 123]),
]
SPACES6 = [
    (["2001:db8::10/126", "2001:db8:1::5", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127"],
     [22, 443], [53, 40000]),
    (["2001:db8::1"], [80], []),
]


def slots_of(tcp, udp):
    return [("tcp", p) for p in tcp] + [("udp", p) for p in udp]


def brute_force(specs, tcp, udp):
    """[(address, proto, port)] in index order: every host, then every slot."""
    hosts = [a for s, e in TargetSet.from_specs(specs).ranges() for a in range(s, e + 1)]
    return [(h, proto, p) for h in hosts for proto, p in slots_of(tcp, udp)]


def make(specs, tcp, udp=()):
    return ScanSpace(TargetSet.from_specs(specs), Probes.ports(SYN_SCAN, tcp, udp))


PROTO = {"tcp": 6, "udp": 17}


@pytest.mark.parametrize("specs,tcp,udp", SPACES)
def test_rows_and_locate_match_brute_force(specs, tcp, udp):
    space = make(specs, tcp, udp)
    expected = brute_force(specs, tcp, udp)
    n_slots = len(tcp) + len(udp)
    assert space.size == len(expected)
    assert space.n_slots == n_slots
    assert space.n_hosts == len(expected) // n_slots
    idx = np.arange(space.size, dtype=np.uint64)
    rows = space.rows(idx)
    assert rows.dtype == RESULT_DTYPE
    assert rows["index"].tolist() == idx.tolist()
    got = list(zip(rows["ip"].tolist(), rows["proto"].tolist(), rows["port"].tolist()))
    assert got == [(h, PROTO[proto], p) for h, proto, p in expected]
    assert len(set(got)) == len(got)               # every probe exactly once
    assert not rows["ip6"].any() and not rows["state"].any()
    hosts, slots = space.locate(idx)
    assert hosts.tolist() == [i // n_slots for i in range(space.size)]
    assert slots.tolist() == [i % n_slots for i in range(space.size)]


@pytest.mark.parametrize("specs,tcp,udp", SPACES6)
def test_rows_and_locate_match_brute_force_ipv6(specs, tcp, udp):
    space = make(specs, tcp, udp)
    assert space.family == 6
    expected = brute_force(specs, tcp, udp)
    assert space.size == len(expected)
    rows = space.rows(np.arange(space.size, dtype=np.uint64))
    got = [(int.from_bytes(bytes(r["ip6"]), "big"), int(r["proto"]), int(r["port"])) for r in rows]
    assert got == [(h, PROTO[proto], p) for h, proto, p in expected]
    assert not rows["ip"].any()
    n_slots = len(tcp) + len(udp)
    hosts, slots = space.locate(np.arange(space.size))
    assert hosts.tolist() == [i // n_slots for i in range(space.size)]
    assert slots.tolist() == [i % n_slots for i in range(space.size)]


def test_rows_of_icmp_slots():
    probes = Probes([(DISCOVERY["PE"], 0), (DISCOVERY["PS"], 443), (DISCOVERY["PU"], 40125)])
    rows = ScanSpace(TargetSet.from_specs(["198.18.200.1-198.18.200.2"]), probes).rows(np.arange(6))
    assert rows["proto"].tolist() == [1, 6, 17] * 2
    assert rows["port"].tolist() == [0, 443, 40125] * 2
    rows6 = ScanSpace(TargetSet.from_specs(["2001:db8::1"]), probes).rows(np.arange(3))
    assert rows6["proto"].tolist() == [58, 6, 17]


def test_locate_example_indices():
    space = make(["198.18.0.1-198.18.0.5,198.18.1.0/30"], [22, 80, 443])
    # hosts: .0.1 .0.2 .0.3 .0.4 .0.5 .1.0 .1.1 .1.2 .1.3
    idx = np.array([0, 1, 2, 3, 14, 15, 26], dtype=np.uint64)
    rows = space.rows(idx)
    names = [str(ipaddress.IPv4Address(int(a))) for a in rows["ip"]]
    assert names == ["198.18.0.1", "198.18.0.1", "198.18.0.1", "198.18.0.2", "198.18.0.5",
                     "198.18.1.0", "198.18.1.3"]
    assert rows["port"].tolist() == [22, 80, 443, 22, 443, 22, 443]
    hosts, slots = space.locate(idx)
    assert hosts.tolist() == [0, 0, 0, 1, 4, 5, 8]
    assert slots.tolist() == [0, 1, 2, 0, 2, 0, 2]


def test_locate_in_any_order_and_scalar_like():
    specs, tcp = ["198.18.0.1-198.18.0.5,198.18.1.0/30"], [22, 80, 443]
    space = make(specs, tcp, [53])
    idx = np.array([35, 0, 13, 13, 5], dtype=np.uint64)
    rows = space.rows(idx)
    full = brute_force(specs, tcp, [53])
    assert list(zip(rows["ip"].tolist(), rows["port"].tolist())) == [(full[i][0], full[i][2]) for i in idx.tolist()]
    hosts, slots = space.locate([7])
    assert (int(hosts[0]), int(slots[0])) == (1, 3)
    assert int(space.rows([7])["port"][0]) == 53


def test_arrays_describe_the_space():
    space = make(["198.18.0.1-198.18.0.5,198.18.1.0/30"], [22, 80, 443], [53])
    a = space.arrays()
    assert a["family"] == 4 and a["n_hosts"] == 9
    assert a["starts"].dtype == np.uint32 and a["cum"].dtype == np.uint64
    assert a["slot_port"].dtype == np.uint16 and a["slot_kind"].dtype == np.uint16
    assert a["tcp_slot"].dtype == np.int32 and a["udp_slot"].dtype == np.int32
    assert a["hosts6"].dtype == np.uint8
    assert a["starts"].tolist() == [int(ipaddress.IPv4Address("198.18.0.1")), int(ipaddress.IPv4Address("198.18.1.0"))]
    assert a["cum"].tolist() == [0, 5, 9]
    assert a["slot_port"].tolist() == [22, 80, 443, 53]
    assert len(a["tcp_slot"]) == len(a["udp_slot"]) == 65536
    assert a["tcp_slot"][[22, 80, 443]].tolist() == [0, 1, 2]
    assert (np.delete(a["tcp_slot"], [22, 80, 443]) == -1).all()
    assert a["udp_slot"][53] == 3
    assert (np.delete(a["udp_slot"], [53]) == -1).all()


def test_arrays_of_an_ipv6_space():
    space = make(["2001:db8::10/127", "2001:db8::1"], [80])
    a = space.arrays()
    assert a["family"] == 6 and a["n_hosts"] == 3
    assert a["hosts6"].shape == (3, 16) and a["hosts6"].flags["C_CONTIGUOUS"]
    assert [str(ipaddress.IPv6Address(bytes(h))) for h in a["hosts6"]] == ["2001:db8::1", "2001:db8::10",
                                                                            "2001:db8::11"]


def test_port_order_is_scan_order():
    space = make(["198.18.200.1"], [443, 22, 80], [9, 7])
    assert space.rows(np.arange(5))["port"].tolist() == [443, 22, 80, 9, 7]


# --- the compiled index(addr, port), through the parser -----------------------

def _rig(specs, tcp, udp=(), saddr=SADDR_S):
    return Rig(specs, Probes.ports(SYN_SCAN, tcp, udp), KEY, saddr)


def _reply4(addr, proto, port):
    seq, sport = probe_cookie(KEY, SADDR, addr, port)
    ip = IP(src=str(ipaddress.IPv4Address(addr)), dst=SADDR_S)
    if proto == "tcp":
        return bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / ip
                     / TCP(sport=port, dport=sport, ack=(seq + 1) & 0xFFFFFFFF, flags="SA"))
    probe = Ether(Rig([str(ipaddress.IPv4Address(addr))], Probes.ports(SYN_SCAN, [], [port]), KEY, SADDR_S).sender.build(0))
    answer = udp_answer(port, bytes(probe[UDP].payload))     # echoing the payload's cookie, if any
    return bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / ip / UDP(sport=port, dport=sport) / answer)


def _reply_to_probe(frame):
    """The answer to one of our built probes (IPv4 or IPv6): a SYN-ACK or a UDP datagram."""
    pkt = Ether(frame)
    l3 = pkt[IP] if IP in pkt else pkt[IPv6]
    back = (IP if IP in pkt else IPv6)(src=l3.dst, dst=l3.src)
    if TCP in pkt:
        t = pkt[TCP]
        l4 = TCP(sport=t.dport, dport=t.sport, ack=(t.seq + 1) & 0xFFFFFFFF, flags="SA")
    else:
        u = pkt[UDP]
        l4 = UDP(sport=u.dport, dport=u.sport) / udp_answer(u.dport, bytes(u.payload))
    return bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / back / l4)


@pytest.mark.parametrize("specs,tcp,udp", SPACES)
def test_compiled_index_round_trips(specs, tcp, udp):
    rig = _rig(specs, tcp, udp)
    space = rig.space
    expected = brute_force(specs, tcp, udp)
    parser = rig.parser()
    rows = parser.parse(*batch([_reply4(a, proto, p) for a, proto, p in expected]))
    assert rows.dtype == RESULT_DTYPE
    assert rows["index"].tolist() == list(range(space.size))
    assert list(zip(rows["ip"].tolist(), rows["proto"].tolist(), rows["port"].tolist())) == [
        (a, PROTO[proto], p) for a, proto, p in expected]
    located = space.rows(rows["index"])
    assert (located["ip"] == rows["ip"]).all() and (located["port"] == rows["port"]).all()
    assert (located["proto"] == rows["proto"]).all()
    assert parser.not_in_scan == 0 and parser.bad_cookie == 0


@pytest.mark.parametrize("specs,tcp,udp", SPACES6)
def test_compiled_index_round_trips_ipv6(specs, tcp, udp):
    rig = _rig(specs, tcp, udp, saddr=SADDR6)
    space = rig.space
    frames = [_reply_to_probe(rig.sender.build(i)) for i in range(space.size)]
    parser = rig.parser()
    rows = parser.parse(*batch(frames))
    assert rows["index"].tolist() == list(range(space.size))
    located = space.rows(rows["index"])
    assert (located["ip6"] == rows["ip6"]).all() and (located["port"] == rows["port"]).all()
    assert (located["proto"] == rows["proto"]).all()
    assert parser.not_in_scan == 0 and parser.bad_cookie == 0


@pytest.mark.parametrize("specs,tcp,udp", SPACES)
def test_compiled_index_rejects_neighbours(specs, tcp, udp):
    inside = set(brute_force(specs, tcp, udp))
    targets = TargetSet.from_specs(specs)
    slots = slots_of(tcp, udp)
    candidates = set()
    for s, e in targets.ranges():
        for a in (s - 1, e + 1):
            if 0 <= a <= 0xFFFFFFFF:
                candidates.add((a,) + slots[0])
        for proto in ("tcp", "udp"):
            ports = [p for pr, p in slots if pr == proto]
            candidates.add((s, proto, 2 if 2 not in ports else 3))
    outside = sorted(c for c in candidates if c not in inside)
    assert outside
    parser = _rig(specs, tcp, udp).parser()
    rows = parser.parse(*batch([_reply4(a, proto, p) for a, proto, p in outside]))
    assert len(rows) == 0
    assert parser.not_in_scan == len(outside)


def test_compiled_index_rejects_ipv6_neighbours():
    rig = _rig(["2001:db8::10/126"], [22], [53], saddr=SADDR6)
    wider = _rig(["2001:db8::/120"], [22, 23], [53, 54], saddr=SADDR6)
    outside = [i for i in range(wider.space.size)
               if not (0x10 <= wider.hosts[i // 4] - wider.hosts[0] <= 0x13 and i % 4 in (0, 2))]
    parser = rig.parser()
    rows = parser.parse(*batch([_reply_to_probe(wider.sender.build(i)) for i in outside]))
    assert len(rows) == 0
    assert parser.not_in_scan == len(outside) and parser.bad_cookie == 0


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
