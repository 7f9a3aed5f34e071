"""The compiled reply parser (ext/parser.pyx) on replies built by scapy, batched the way
pcapy-ng's next_batch() hands them over."""
import ipaddress
import random
import struct

import numpy as np
import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether

from scanner._ext.cookie import probe_cookie, split_key
from scanner._ext.parser import REASONS, RESULT_DTYPE, STATES, ReplyParser
from scanner._ext.sender import build_probe
from scanner.space import ScanSpace
from scanner.targets import TargetSet
from scanner.techniques import SYN_SCAN

KEY = bytes.fromhex("8f1e2d3c4b5a69788796a5b4c3d2e1f0")
OTHER_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
SADDR_S = "198.19.255.1"
SADDR = int(ipaddress.IPv4Address(SADDR_S))
TARGET_SPECS = ["198.18.0.1-198.18.0.5,198.18.1.0/30"]
PORTS = np.array([22, 80, 443], dtype=np.uint16)
US_MAC = "02:00:00:00:00:01"
GW_MAC = "02:00:00:00:00:02"


def ip2int(s):
    return int(ipaddress.IPv4Address(s))


def make_space():
    return ScanSpace(TargetSet.from_specs(TARGET_SPECS), PORTS)


def make_parser(key=KEY, l2_len=14, space=None):
    space = space or make_space()
    k0, k1 = split_key(key)
    return ReplyParser(k0, k1, SADDR, l2_len, SYN_SCAN.tcp_flags, SYN_SCAN.state_table(), *space.arrays())


def batch(frames, gap=0):
    """(data, meta) as next_batch() returns them; `gap` junk bytes between frames."""
    data = bytearray()
    meta = bytearray()
    for i, f in enumerate(frames):
        data += b"\xee" * gap
        meta += struct.pack("=IIII", 1700000000 + i, i * 10, len(data), len(f))
        data += f
    return bytes(data), bytes(meta)


def parse(parser, *frames, gap=0):
    data, meta = batch(frames, gap)
    return parser.parse(data, meta)


def expected_index(addr, port):
    """host_number * n_ports + port_number by brute force over the expanded targets."""
    hosts = [a for s, e in TargetSet.from_specs(TARGET_SPECS).ranges() for a in range(s, e + 1)]
    return hosts.index(ip2int(addr)) * len(PORTS) + list(PORTS).index(port)


def synack(target, port, key=KEY, ack_delta=1, dport=None, ttl=57, window=65160, flags="SA",
           dst=SADDR_S, l2=None):
    seq, sport = probe_cookie(key, SADDR, ip2int(target), port)
    l2 = l2 if l2 is not None else Ether(src=GW_MAC, dst=US_MAC)
    pkt = l2 / IP(src=target, dst=dst, ttl=ttl) / TCP(
        sport=port, dport=sport if dport is None else dport, seq=0x12345678,
        ack=(seq + ack_delta) & 0xFFFFFFFF, flags=flags, window=window,
        options=[("MSS", 1460)] if "S" in flags else [])
    return bytes(pkt)


def probe(target, port, key=KEY):
    template, l2_len, ts_offset = SYN_SCAN.template(bytes.fromhex("020000000001"),
                                                    bytes.fromhex("020000000002"), SADDR)
    k0, k1 = split_key(key)
    return build_probe(template, l2_len, ts_offset, k0, k1, SADDR, ip2int(target), port, 12345)


def icmp_unreach(target, port, code, key=KEY, quote_len=28, router="203.0.113.9", ttl=250, quoted=None):
    frame = probe(target, port, key)
    quoted = frame[14:14 + quote_len] if quoted is None else quoted
    return bytes(Ether(src=GW_MAC, dst=US_MAC) / IP(src=router, dst=SADDR_S, ttl=ttl)
                 / ICMP(type=3, code=code) / quoted)


def row_tuple(row):
    return (int(row["index"]), str(ipaddress.IPv4Address(int(row["ip"]))), int(row["port"]),
            int(row["proto"]), int(row["state"]), int(row["reason"]), int(row["ttl"]), int(row["window"]))


# --- genuine replies ----------------------------------------------------------

def test_result_dtype_is_packed():
    assert RESULT_DTYPE.itemsize == 20
    assert RESULT_DTYPE.names == ("index", "ip", "port", "proto", "state", "reason", "ttl", "window")


@pytest.mark.parametrize("target", ["198.18.0.1", "198.18.0.3", "198.18.0.5", "198.18.1.0", "198.18.1.3"])
@pytest.mark.parametrize("port", [22, 80, 443])
def test_syn_ack_is_open(target, port):
    p = make_parser()
    rows = parse(p, synack(target, port, ttl=57, window=29200))
    assert rows.dtype == RESULT_DTYPE
    assert len(rows) == 1
    assert row_tuple(rows[0]) == (expected_index(target, port), target, port, 6, STATES["open"],
                                  REASONS["syn-ack"], 57, 29200)
    assert p.bad_cookie == 0 and p.not_in_scan == 0 and p.parsed == 1


@pytest.mark.parametrize("ttl", [1, 64, 128, 255])
def test_ttl_from_ip_header(ttl):
    rows = parse(make_parser(), synack("198.18.0.2", 80, ttl=ttl))
    assert rows["ttl"].tolist() == [ttl]


def test_rst_ack_is_closed():
    rows = parse(make_parser(), synack("198.18.1.1", 443, flags="RA", window=0, ttl=63))
    assert [row_tuple(r) for r in rows] == [
        (expected_index("198.18.1.1", 443), "198.18.1.1", 443, 6, STATES["closed"], REASONS["reset"], 63, 0)]


def test_rst_with_window_is_closed_too():
    rows = parse(make_parser(), synack("198.18.1.1", 22, flags="RA", window=1024))
    assert rows["state"].tolist() == [STATES["closed"]]
    assert rows["reason"].tolist() == [REASONS["reset"]]
    assert rows["window"].tolist() == [1024]


def test_syn_ack_with_extra_flags_still_open():
    rows = parse(make_parser(), synack("198.18.0.4", 80, flags="SAE"))
    assert rows["state"].tolist() == [STATES["open"]]


@pytest.mark.parametrize("flags", ["S", "A", "PA", "F", "FA", ""])
def test_other_tcp_flags_ignored(flags):
    p = make_parser()
    assert len(parse(p, synack("198.18.0.4", 80, flags=flags))) == 0


ICMP_REASONS = {0: "net-unreach", 1: "host-unreach", 2: "proto-unreach", 3: "port-unreach",
                9: "net-prohibited", 10: "host-prohibited", 13: "admin-prohibited"}


@pytest.mark.parametrize("code,reason", sorted(ICMP_REASONS.items()))
def test_icmp_unreachable_is_filtered(code, reason):
    p = make_parser()
    rows = parse(p, icmp_unreach("198.18.0.5", 443, code, ttl=241))
    assert [row_tuple(r) for r in rows] == [
        (expected_index("198.18.0.5", 443), "198.18.0.5", 443, 6, STATES["filtered"], REASONS[reason], 241, 0)]
    assert p.bad_cookie == 0


@pytest.mark.parametrize("code", [4, 5, 6, 7, 8, 11, 12, 14, 15])
def test_other_icmp_unreachable_codes_ignored(code):
    p = make_parser()
    assert len(parse(p, icmp_unreach("198.18.0.5", 443, code))) == 0
    assert p.bad_cookie == 0


@pytest.mark.parametrize("icmp_type", [0, 4, 5, 8, 11, 12])
def test_other_icmp_types_ignored(icmp_type):
    frame = bytes(Ether() / IP(src="203.0.113.9", dst=SADDR_S) / ICMP(type=icmp_type, code=0)
                  / probe("198.18.0.5", 443)[14:14 + 28])
    assert len(parse(make_parser(), frame)) == 0


def test_icmp_quoting_the_whole_probe():
    rows = parse(make_parser(), icmp_unreach("198.18.1.2", 22, 13, quote_len=60))
    assert rows["reason"].tolist() == [REASONS["admin-prohibited"]]
    assert rows["index"].tolist() == [expected_index("198.18.1.2", 22)]


def test_icmp_quote_with_ip_options():
    frame = probe("198.18.1.2", 22)
    ip = frame[14:34]
    opts = b"\x01\x01\x01\x00"                       # NOP NOP NOP EOL
    qip = bytes([0x46]) + ip[1:] + opts               # ihl 6
    quoted = qip + frame[34:42]
    rows = parse(make_parser(), icmp_unreach("198.18.1.2", 22, 1, quoted=quoted))
    assert rows["reason"].tolist() == [REASONS["host-unreach"]]


def test_icmp_quote_too_short_ignored():
    p = make_parser()
    for n in range(0, 28):
        assert len(parse(p, icmp_unreach("198.18.1.2", 22, 13, quote_len=n))) == 0


def test_icmp_quote_with_bad_cookie():
    p = make_parser()
    assert len(parse(p, icmp_unreach("198.18.1.2", 22, 13, key=OTHER_KEY))) == 0
    assert p.bad_cookie == 1


def test_icmp_quote_of_someone_elses_probe_ignored():
    frame = bytearray(probe("198.18.1.2", 22)[14:42])
    frame[12:16] = ipaddress.IPv4Address("198.19.255.2").packed     # not our source address
    p = make_parser()
    assert len(parse(p, icmp_unreach("198.18.1.2", 22, 13, quoted=bytes(frame)))) == 0


# --- replies that must not count -------------------------------------------------

@pytest.mark.parametrize("ack_delta", [0, 2, -1, 0x10000])
def test_wrong_ack_is_bad_cookie(ack_delta):
    p = make_parser()
    assert len(parse(p, synack("198.18.0.1", 22, ack_delta=ack_delta))) == 0
    assert p.bad_cookie == 1


@pytest.mark.parametrize("ack_delta", [0, 2])
def test_rst_with_wrong_ack_is_bad_cookie(ack_delta):
    p = make_parser()
    assert len(parse(p, synack("198.18.0.1", 22, flags="RA", window=0, ack_delta=ack_delta))) == 0
    assert p.bad_cookie == 1


def test_wrong_dport_is_bad_cookie():
    _, sport = probe_cookie(KEY, SADDR, ip2int("198.18.0.1"), 22)
    p = make_parser()
    for dport in (sport ^ 1, sport ^ 0x4000, 1234):
        assert len(parse(p, synack("198.18.0.1", 22, dport=dport))) == 0
    assert p.bad_cookie == 3


def test_wrong_key_is_bad_cookie():
    p = make_parser(key=KEY)
    assert len(parse(p, synack("198.18.0.1", 22, key=OTHER_KEY))) == 0
    assert p.bad_cookie == 1
    # and the parser built with that other key accepts it
    assert len(parse(make_parser(key=OTHER_KEY), synack("198.18.0.1", 22, key=OTHER_KEY))) == 1


def test_reply_from_a_different_source_port_is_bad_cookie():
    # the cookie covers the probed port: a SYN-ACK from port 80 carrying port 22's cookie fails
    seq, sport = probe_cookie(KEY, SADDR, ip2int("198.18.0.1"), 22)
    frame = bytes(Ether() / IP(src="198.18.0.1", dst=SADDR_S) / TCP(sport=80, dport=sport, ack=seq + 1, flags="SA"))
    p = make_parser()
    assert len(parse(p, frame)) == 0
    assert p.bad_cookie == 1


@pytest.mark.parametrize("target,port", [("198.18.0.6", 80), ("198.18.0.0", 80), ("198.18.1.4", 22),
                                         ("10.0.0.1", 443), ("198.18.0.2", 8080), ("198.18.0.2", 23)])
def test_not_in_scan(target, port):
    p = make_parser()
    assert len(parse(p, synack(target, port))) == 0
    assert p.not_in_scan == 1 and p.bad_cookie == 0


def test_icmp_about_target_not_in_scan():
    p = make_parser()
    assert len(parse(p, icmp_unreach("198.18.2.1", 80, 13))) == 0
    assert p.not_in_scan == 1


def test_reply_not_addressed_to_us_ignored():
    p = make_parser()
    assert len(parse(p, synack("198.18.0.1", 22, dst="198.19.255.2"))) == 0
    assert p.bad_cookie == 0 and p.not_in_scan == 0
    frame = bytes(Ether() / IP(src="203.0.113.9", dst="198.19.255.2") / ICMP(type=3, code=13)
                  / probe("198.18.0.1", 22)[14:42])
    assert len(parse(p, frame)) == 0


@pytest.mark.parametrize("frame", [
    bytes(Ether(src=GW_MAC, dst=US_MAC) / ARP(psrc="198.18.0.1", pdst=SADDR_S)),
    bytes(Ether(src=GW_MAC, dst=US_MAC) / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(flags="SA")),
], ids=["arp", "ipv6"])
def test_non_ipv4_ethertypes_ignored(frame):
    p = make_parser()
    assert len(parse(p, frame)) == 0
    assert p.bad_cookie == 0 and p.not_in_scan == 0


def test_ipv4_payload_under_another_ethertype_ignored():
    frame = bytearray(synack("198.18.0.1", 22))
    frame[12:14] = b"\x86\xdd"
    assert len(parse(make_parser(), bytes(frame))) == 0


def test_non_ipv4_version_ignored():
    frame = bytearray(synack("198.18.0.1", 22))
    frame[14] = 0x65
    assert len(parse(make_parser(), bytes(frame))) == 0


def test_udp_ignored():
    from scapy.layers.inet import UDP
    frame = bytes(Ether() / IP(src="198.18.0.1", dst=SADDR_S) / UDP(sport=53, dport=40000) / (b"x" * 20))
    assert len(parse(make_parser(), frame)) == 0


# --- framing ------------------------------------------------------------------

def test_truncated_syn_ack_prefixes():
    frame = synack("198.18.0.3", 80, flags="RA", window=0)      # no TCP options: 54 bytes
    assert len(frame) == 14 + 20 + 20
    p = make_parser()
    for n in range(len(frame)):
        # each prefix alone in its buffer, so nothing past it is readable as if it were captured
        assert len(p.parse(frame[:n], struct.pack("=IIII", 0, 0, 0, n))) == 0, n
    assert p.bad_cookie == 0
    assert len(p.parse(frame, struct.pack("=IIII", 0, 0, 0, len(frame)))) == 1


def test_truncated_syn_ack_with_options_prefixes():
    # the fixed TCP header is all the parser needs; options may be cut off by the snaplen
    frame = synack("198.18.0.3", 80)
    assert len(frame) == 14 + 20 + 24
    p = make_parser()
    for n in range(len(frame) + 1):
        rows = p.parse(frame[:n], struct.pack("=IIII", 0, 0, 0, n))
        assert len(rows) == (1 if n >= 14 + 20 + 20 else 0), n


def test_truncated_prefixes_inside_a_larger_buffer():
    # same, but the frame's remaining bytes follow in the buffer (capture truncated at snaplen)
    frame = synack("198.18.0.3", 80)
    p = make_parser()
    for n in range(14 + 20 + 20):
        assert len(p.parse(frame, struct.pack("=IIII", 0, 0, 0, n))) == 0, n


def test_truncated_icmp_prefixes():
    frame = icmp_unreach("198.18.0.3", 80, 13)
    p = make_parser()
    for n in range(len(frame)):
        assert len(p.parse(frame[:n], struct.pack("=IIII", 0, 0, 0, n))) == 0, n
    assert len(p.parse(frame, struct.pack("=IIII", 0, 0, 0, len(frame)))) == 1


def test_ip_total_length_below_header_length():
    frame = bytearray(synack("198.18.0.3", 80))
    frame[16:18] = b"\x00\x00"            # total length 0 (< ihl)
    p = make_parser()
    # only Ethernet + IP header captured; the TCP header is in the buffer but beyond caplen
    assert len(p.parse(bytes(frame), struct.pack("=IIII", 0, 0, 0, 14 + 20))) == 0


def test_ip_total_length_shorter_than_tcp_header_ignored():
    frame = bytearray(synack("198.18.0.3", 80))
    frame[16:18] = struct.pack("!H", 20 + 19)
    assert len(parse(make_parser(), bytes(frame))) == 0


def test_meta_record_past_the_data_skipped():
    frame = synack("198.18.0.3", 80)
    p = make_parser()
    assert len(p.parse(frame, struct.pack("=IIII", 0, 0, 0, len(frame) + 1))) == 0
    assert len(p.parse(frame, struct.pack("=IIII", 0, 0, 1, len(frame)))) == 0
    assert len(p.parse(frame, struct.pack("=IIII", 0, 0, 0xFFFFFFFF, 0xFFFFFFFF))) == 0
    assert len(p.parse(b"", b"")) == 0
    assert p.parsed == 3


def test_vlan_tagged():
    l2 = Ether(src=GW_MAC, dst=US_MAC) / Dot1Q(vlan=42)
    rows = parse(make_parser(), synack("198.18.0.2", 443, l2=l2, ttl=61))
    assert [row_tuple(r) for r in rows] == [
        (expected_index("198.18.0.2", 443), "198.18.0.2", 443, 6, STATES["open"], REASONS["syn-ack"], 61, 65160)]


def test_vlan_tagged_non_ipv4_ignored():
    frame = bytes(Ether() / Dot1Q(vlan=42) / ARP(psrc="198.18.0.1", pdst=SADDR_S))
    assert len(parse(make_parser(), frame)) == 0


def test_ethernet_padding():
    frame = bytes(Ether() / IP(src="198.18.1.3", dst=SADDR_S, ttl=50) / TCP(
        sport=80, dport=probe_cookie(KEY, SADDR, ip2int("198.18.1.3"), 80)[1],
        ack=(probe_cookie(KEY, SADDR, ip2int("198.18.1.3"), 80)[0] + 1) & 0xFFFFFFFF, flags="RA", window=0))
    assert len(frame) == 54
    padded = frame + b"\xab" * 6                       # to the 60-byte Ethernet minimum
    rows = parse(make_parser(), padded)
    assert rows["state"].tolist() == [STATES["closed"]]
    assert rows["index"].tolist() == [expected_index("198.18.1.3", 80)]
    rows = parse(make_parser(), frame + b"\xff" * 200)
    assert len(rows) == 1


def test_raw_ip_link_type():
    frame = synack("198.18.0.5", 22)[14:]
    rows = parse(make_parser(l2_len=0), frame)
    assert rows["index"].tolist() == [expected_index("198.18.0.5", 22)]


def test_several_frames_in_one_batch_in_order():
    rng = random.Random(5)
    space = make_space()
    pairs = [(a, int(pt)) for a in ["198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5",
                                   "198.18.1.0", "198.18.1.1", "198.18.1.2", "198.18.1.3"] for pt in PORTS]
    rng.shuffle(pairs)
    frames, expected = [], []
    for i, (addr, port) in enumerate(pairs):
        kind = i % 4
        if kind == 0:
            frames.append(synack(addr, port, ttl=40 + i))
            expected.append((addr, port, STATES["open"], REASONS["syn-ack"], 40 + i))
        elif kind == 1:
            frames.append(synack(addr, port, flags="RA", window=0, ttl=40 + i))
            expected.append((addr, port, STATES["closed"], REASONS["reset"], 40 + i))
        elif kind == 2:
            frames.append(icmp_unreach(addr, port, 10, ttl=40 + i))
            expected.append((addr, port, STATES["filtered"], REASONS["host-prohibited"], 40 + i))
        else:
            frames.append(synack(addr, port, key=OTHER_KEY))          # junk in between
        if i % 5 == 0:
            frames.append(bytes(Ether() / ARP()))
    for gap in (0, 3):
        p = make_parser(space=space)
        rows = parse(p, *frames, gap=gap)
        assert len(rows) == len(expected)
        got = [(str(ipaddress.IPv4Address(int(r["ip"]))), int(r["port"]), int(r["state"]), int(r["reason"]),
                int(r["ttl"])) for r in rows]
        assert got == expected
        assert rows["index"].tolist() == [expected_index(a, pt) for a, pt, *_ in expected]
        assert p.parsed == len(frames)
        assert p.bad_cookie == sum(1 for i in range(len(pairs)) if i % 4 == 3)


def test_counters_accumulate_across_batches():
    p = make_parser()
    parse(p, synack("198.18.0.1", 22, key=OTHER_KEY), synack("10.1.1.1", 22))
    parse(p, synack("198.18.0.1", 22, key=OTHER_KEY))
    assert (p.parsed, p.bad_cookie, p.not_in_scan) == (3, 2, 1)


def test_state_table_zero_means_ignore():
    space = make_space()
    k0, k1 = split_key(KEY)
    table = SYN_SCAN.state_table()
    table[0] = 0                                          # syn-ack ignored
    p = ReplyParser(k0, k1, SADDR, 14, SYN_SCAN.tcp_flags, table, *space.arrays())
    assert len(parse(p, synack("198.18.0.1", 22))) == 0
    assert len(parse(p, synack("198.18.0.1", 22, flags="RA", window=0))) == 1


def test_state_table_length_checked():
    space = make_space()
    k0, k1 = split_key(KEY)
    with pytest.raises(ValueError):
        ReplyParser(k0, k1, SADDR, 14, SYN_SCAN.tcp_flags, [1, 2, 3], *space.arrays())
