"""The compiled reply parser (ext/parser.pyx) on replies built by scapy, batched the way
pcapy-ng's next_batch() hands them over. Probes come from the socketless ProbeSender.build()."""
import ipaddress
import random
import struct

import numpy as np
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether

from probekit import Rig, kinds_copy, one, parse
from scanner.lab_services import udp_answer
from scanner._ext.cookie import probe_cookie, split_key
from scanner._ext.parser import REASONS, REPLY_KINDS, RESULT_DTYPE, STATES, ReplyParser
from scanner.techniques import (ACK, ACK_SCAN, DISCOVERY, FIN, FIN_SCAN, MAIMON_SCAN, NULL_SCAN, SYN,
                                SYN_SCAN, UDP_SCAN, WINDOW_SCAN, XMAS_SCAN, Probes, parse_scanflags,
                                with_flags)

KEY = bytes.fromhex("8f1e2d3c4b5a69788796a5b4c3d2e1f0")
OTHER_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
SADDR_S = "198.19.255.1"
SADDR = int(ipaddress.IPv4Address(SADDR_S))
TARGET_SPECS = ["198.18.0.1-198.18.0.5,198.18.1.0/30"]
HOSTS = ["198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5",
         "198.18.1.0", "198.18.1.1", "198.18.1.2", "198.18.1.3"]
PORTS = [22, 80, 443]
US_MAC = "02:00:00:00:00:01"
GW_MAC = "02:00:00:00:00:02"


def ip2int(s):
    return int(ipaddress.IPv4Address(s))


def eth():
    return Ether(src=GW_MAC, dst=US_MAC)


def make_rig(technique=SYN_SCAN, key=KEY, udp_ports=()):
    return Rig(TARGET_SPECS, Probes.ports(technique, PORTS, udp_ports), key, SADDR_S)


def make_parser(key=KEY, l2_len=14, technique=SYN_SCAN):
    return make_rig(technique).parser(key=key, l2_len=l2_len)


def expected_index(addr, port, ports=PORTS):
    """host_number * n_slots + slot by brute force over the expanded targets."""
    hosts = [a for s, e in Rig(TARGET_SPECS, Probes.ports(SYN_SCAN, [1]), KEY, SADDR_S).targets.ranges()
             for a in range(s, e + 1)]
    return hosts.index(ip2int(addr)) * len(ports) + list(ports).index(port)


def synack(target, port, key=KEY, ack_delta=1, dport=None, ttl=57, window=65160, flags="SA",
           dst=SADDR_S, l2=None, options=None, ipflags=0):
    seq, sport = probe_cookie(key, SADDR, ip2int(target), port)
    l2 = l2 if l2 is not None else eth()
    if options is None:
        options = [("MSS", 1460)] if "S" in flags else []
    pkt = l2 / IP(src=target, dst=dst, ttl=ttl, flags=ipflags) / TCP(
        sport=port, dport=sport if dport is None else dport, seq=0x12345678,
        ack=(seq + ack_delta) & 0xFFFFFFFF, flags=flags, window=window, options=options)
    return bytes(pkt)


def probe(target, port, key=KEY, technique=SYN_SCAN):
    """The frame our sender writes for target:port (a one-probe scan with the same key/source:
    the cookie depends on nothing else)."""
    return Rig([target], Probes([(technique, port)]), key, SADDR_S).sender.build(0, 12345)


def icmp_unreach(target, port, code, key=KEY, quote_len=28, router="203.0.113.9", ttl=250, quoted=None,
                 technique=SYN_SCAN):
    frame = probe(target, port, key, technique)
    quoted = frame[14:14 + quote_len] if quoted is None else quoted
    return bytes(eth() / IP(src=router, dst=SADDR_S, ttl=ttl) / ICMP(type=3, code=code) / quoted)


def row_tuple(row):
    return (int(row["index"]), str(ipaddress.IPv4Address(int(row["ip"]))), int(row["port"]),
            int(row["proto"]), int(row["state"]), int(row["reason"]), int(row["ttl"]), int(row["window"]))


# --- genuine replies ----------------------------------------------------------

def test_result_dtype_is_packed():
    assert RESULT_DTYPE.itemsize == 8 + 4 + 16 + 2 + 1 + 1 + 1 + 1 + 2 + 1 + 1 + 2 + 8 == 48
    assert RESULT_DTYPE.names == ("index", "ip", "ip6", "port", "proto", "state", "reason", "ttl",
                                  "window", "df", "wscale", "mss", "tcpopts")
    assert RESULT_DTYPE["ip6"].shape == (16,) and RESULT_DTYPE["tcpopts"].shape == (8,)


@pytest.mark.parametrize("target", ["198.18.0.1", "198.18.0.3", "198.18.0.5", "198.18.1.0", "198.18.1.3"])
@pytest.mark.parametrize("port", [22, 80, 443])
def test_syn_ack_is_open(target, port):
    p = make_parser()
    rows = parse(p, synack(target, port, ttl=57, window=29200))
    assert rows.dtype == RESULT_DTYPE
    assert len(rows) == 1
    assert row_tuple(rows[0]) == (expected_index(target, port), target, port, 6, STATES["open"],
                                  REASONS["syn-ack"], 57, 29200)
    assert not rows[0]["ip6"].any()
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


def test_syn_ack_fingerprint_fields():
    options = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (123, 456)), ("NOP", None), ("WScale", 7)]
    rows = parse(make_parser(), synack("198.18.0.2", 443, options=options, ipflags="DF", ttl=51, window=65160))
    assert len(rows) == 1
    r = rows[0]
    assert (int(r["mss"]), int(r["wscale"]), int(r["df"]), int(r["ttl"]), int(r["window"])) == (1460, 7, 1, 51, 65160)
    assert r["tcpopts"].tolist() == [2, 4, 8, 1, 3, 0, 0, 0]
    # no DF, other options and order
    options = [("NOP", None), ("NOP", None), ("WScale", 2), ("MSS", 536), ("EOL", None)]
    r = parse(make_parser(), synack("198.18.0.2", 80, options=options, ttl=128, window=8192))[0]
    assert (int(r["mss"]), int(r["wscale"]), int(r["df"]), int(r["ttl"]), int(r["window"])) == (536, 2, 0, 128, 8192)
    assert r["tcpopts"].tolist() == [1, 1, 3, 2, 0, 0, 0, 0]


def test_fingerprint_fields_zero_for_rst_and_without_options():
    r = parse(make_parser(), synack("198.18.0.2", 443, flags="RA", window=0, ipflags="DF"))[0]
    assert (int(r["mss"]), int(r["wscale"])) == (0, 0) and not r["tcpopts"].any()
    assert int(r["df"]) == 1
    r = parse(make_parser(), synack("198.18.0.2", 443, options=[]))[0]
    assert (int(r["mss"]), int(r["wscale"])) == (0, 0) and not r["tcpopts"].any()


def test_fingerprint_options_cut_by_snaplen():
    options = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (123, 456)), ("NOP", None), ("WScale", 7)]
    frame = synack("198.18.0.2", 443, options=options)
    assert len(frame) == 14 + 20 + 40
    p = make_parser()
    r = one(p, frame, caplen=14 + 20 + 20 + 6)[0]                 # MSS and SAckOK captured
    assert (int(r["mss"]), int(r["wscale"])) == (1460, 0)
    assert r["tcpopts"].tolist()[:2] == [2, 4] and r["tcpopts"].tolist()[3:] == [0] * 5
    r = one(p, frame, caplen=14 + 20 + 20 + 2)[0]                 # half the MSS option
    assert int(r["mss"]) == 0


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


@pytest.mark.parametrize("icmp_type", [0, 4, 5, 8, 11, 12, 14])
def test_other_icmp_types_ignored(icmp_type):
    frame = bytes(eth() / IP(src="203.0.113.9", dst=SADDR_S) / ICMP(type=icmp_type, code=0)
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
    frame = bytes(eth() / IP(src="198.18.0.1", dst=SADDR_S) / TCP(sport=80, dport=sport, ack=seq + 1, flags="SA"))
    p = make_parser()
    assert len(parse(p, frame)) == 0
    assert p.bad_cookie == 1


@pytest.mark.parametrize("target,port", [("198.18.0.6", 80), ("198.18.0.0", 80), ("198.18.1.4", 22),
                                         ("198.18.200.1", 443), ("198.18.0.2", 8080), ("198.18.0.2", 23)])
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
    frame = bytes(eth() / IP(src="203.0.113.9", dst="198.19.255.2") / ICMP(type=3, code=13)
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


def test_udp_ignored_without_udp_probes():
    frame = bytes(eth() / IP(src="198.18.0.1", dst=SADDR_S) / UDP(sport=53, dport=40000) / (b"x" * 20))
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
    # nor when all of it was captured
    for total in (0, 1, 19):
        frame[16:18] = struct.pack("!H", total)
        assert len(parse(p, bytes(frame))) == 0


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
    frame = bytes(eth() / Dot1Q(vlan=42) / ARP(psrc="198.18.0.1", pdst=SADDR_S))
    assert len(parse(make_parser(), frame)) == 0


def test_ethernet_padding():
    frame = bytes(eth() / IP(src="198.18.1.3", dst=SADDR_S, ttl=50) / TCP(
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
    pairs = [(a, pt) for a in HOSTS for pt in PORTS]
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
            frames.append(bytes(eth() / ARP()))
    rig = make_rig()
    for gap in (0, 3):
        p = rig.parser()
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
    parse(p, synack("198.18.0.1", 22, key=OTHER_KEY), synack("198.19.1.1", 22))
    parse(p, synack("198.18.0.1", 22, key=OTHER_KEY))
    assert (p.parsed, p.bad_cookie, p.not_in_scan) == (3, 2, 1)


def test_state_table_zero_means_ignore():
    rig = make_rig()
    kinds = kinds_copy(rig.kinds)
    kinds["table"][0, REPLY_KINDS["syn-ack"]] = 0                  # syn-ack ignored
    p = rig.parser(kinds=kinds)
    assert len(parse(p, synack("198.18.0.1", 22))) == 0
    assert len(parse(p, synack("198.18.0.1", 22, flags="RA", window=0))) == 1


def test_kinds_must_be_an_array():
    rig = make_rig()
    k0, k1 = split_key(KEY)
    with pytest.raises((TypeError, ValueError)):
        ReplyParser(k0, k1, rig.saddr, 14, [1, 2, 3], rig.space.arrays(), rig.blob)


def test_kinds_dtype_and_length_checked():
    rig = make_rig()
    k0, k1 = split_key(KEY)
    with pytest.raises(ValueError):
        ReplyParser(k0, k1, rig.saddr, 14, np.zeros(3, dtype=np.uint8), rig.space.arrays(), rig.blob)


# --- other TCP techniques -----------------------------------------------------

def rst(target, port, probe_flags, key=KEY, window=0, delta=0, ttl=60):
    """The RST a closed port sends to our probe: echoing our ack as its seq when the probe has
    ACK, else acknowledging seq + SYN + FIN (RFC 793). `delta` breaks the echo."""
    cseq, sport = probe_cookie(key, SADDR, ip2int(target), port)
    if probe_flags & ACK:
        tcp = TCP(sport=port, dport=sport, seq=(cseq + delta) & 0xFFFFFFFF, ack=0, flags="R", window=window)
    else:
        ack = cseq + (1 if probe_flags & SYN else 0) + (1 if probe_flags & FIN else 0) + delta
        tcp = TCP(sport=port, dport=sport, seq=0, ack=ack & 0xFFFFFFFF, flags="RA", window=window)
    return bytes(eth() / IP(src=target, dst=SADDR_S, ttl=ttl) / tcp)


TECHNIQUE_RST = [
    # technique, state for a RST with window 0, state for a RST with a window
    (SYN_SCAN, "closed", "closed"),
    (ACK_SCAN, "unfiltered", "unfiltered"),
    (WINDOW_SCAN, "closed", "open"),
    (NULL_SCAN, "closed", "closed"),
    (FIN_SCAN, "closed", "closed"),
    (XMAS_SCAN, "closed", "closed"),
    (MAIMON_SCAN, "closed", "closed"),
]


@pytest.mark.parametrize("technique,state0,state_window", TECHNIQUE_RST, ids=[t.key for t, *_ in TECHNIQUE_RST])
def test_rst_per_technique(technique, state0, state_window):
    rig = make_rig(technique)
    # our own probe tells what the RST must echo
    sent = Ether(rig.build("198.18.0.3", 1))[TCP]
    assert int(sent.flags) == technique.tcp_flags
    p = rig.parser()
    rows = parse(p, rst("198.18.0.3", 80, technique.tcp_flags, window=0),
                 rst("198.18.1.2", 443, technique.tcp_flags, window=512, ttl=33))
    assert [row_tuple(r) for r in rows] == [
        (expected_index("198.18.0.3", 80), "198.18.0.3", 80, 6, STATES[state0], REASONS["reset"], 60, 0),
        (expected_index("198.18.1.2", 443), "198.18.1.2", 443, 6, STATES[state_window], REASONS["reset"], 33, 512)]
    assert p.bad_cookie == 0


@pytest.mark.parametrize("technique", [t for t, *_ in TECHNIQUE_RST], ids=[t.key for t, *_ in TECHNIQUE_RST])
@pytest.mark.parametrize("delta", [-1, 1, 2, 0x10000])
def test_rst_with_wrong_echo_is_bad_cookie(technique, delta):
    p = make_rig(technique).parser()
    assert len(parse(p, rst("198.18.0.3", 80, technique.tcp_flags, delta=delta))) == 0
    assert p.bad_cookie == 1


@pytest.mark.parametrize("technique", [NULL_SCAN, FIN_SCAN, XMAS_SCAN], ids=["null", "fin", "xmas"])
def test_rst_echo_counts_fin_but_not_other_flags(technique):
    # a RST to a probe without ACK acknowledges seq + (1 for FIN): Null expects seq, FIN/Xmas seq + 1
    cseq, sport = probe_cookie(KEY, SADDR, ip2int("198.18.0.1"), 22)
    p = make_rig(technique).parser()
    rows = []
    for ack in (cseq, cseq + 1, cseq + 2):
        rows += parse(p, bytes(eth() / IP(src="198.18.0.1", dst=SADDR_S)
                               / TCP(sport=22, dport=sport, ack=ack & 0xFFFFFFFF, flags="RA"))).tolist()
    assert len(rows) == 1 and p.bad_cookie == 2
    good = cseq + (1 if technique.tcp_flags & FIN else 0)
    assert len(parse(p, bytes(eth() / IP(src="198.18.0.1", dst=SADDR_S)
                              / TCP(sport=22, dport=sport, ack=good & 0xFFFFFFFF, flags="RA")))) == 1


@pytest.mark.parametrize("technique", [ACK_SCAN, WINDOW_SCAN, MAIMON_SCAN], ids=["ack", "window", "maimon"])
def test_rst_to_an_ack_probe_checks_only_its_seq(technique):
    cseq, sport = probe_cookie(KEY, SADDR, ip2int("198.18.0.1"), 22)
    p = make_rig(technique).parser()
    for ack in (0, cseq, cseq + 1, 0xDEADBEEF):
        frame = bytes(eth() / IP(src="198.18.0.1", dst=SADDR_S)
                      / TCP(sport=22, dport=sport, seq=cseq, ack=ack, flags="RA" if ack else "R"))
        assert len(parse(p, frame)) == 1
    assert p.bad_cookie == 0


@pytest.mark.parametrize("technique", [ACK_SCAN, WINDOW_SCAN, NULL_SCAN, FIN_SCAN, XMAS_SCAN, MAIMON_SCAN],
                         ids=["ack", "window", "null", "fin", "xmas", "maimon"])
def test_syn_ack_ignored_by_non_syn_techniques(technique):
    p = make_rig(technique).parser()
    cseq, sport = probe_cookie(KEY, SADDR, ip2int("198.18.0.1"), 22)
    frame = bytes(eth() / IP(src="198.18.0.1", dst=SADDR_S) / TCP(sport=22, dport=sport, seq=cseq,
                                                                 ack=cseq + 1, flags="SA"))
    assert len(parse(p, frame)) == 0


@pytest.mark.parametrize("technique", [ACK_SCAN, WINDOW_SCAN, NULL_SCAN, FIN_SCAN, XMAS_SCAN, MAIMON_SCAN],
                         ids=["ack", "window", "null", "fin", "xmas", "maimon"])
@pytest.mark.parametrize("code,reason", [(1, "host-unreach"), (3, "port-unreach"), (13, "admin-prohibited")])
def test_icmp_unreach_filtered_for_every_tcp_technique(technique, code, reason):
    p = make_rig(technique).parser()
    rows = parse(p, icmp_unreach("198.18.1.0", 22, code, technique=technique))
    assert [(int(r["state"]), int(r["reason"])) for r in rows] == [(STATES["filtered"], REASONS[reason])]
    assert rows["index"].tolist() == [expected_index("198.18.1.0", 22)]


@pytest.mark.parametrize("text", ["SYNFIN", "URGPSHFIN", "0x12", "ACKFIN", "0"])
def test_scanflags_echo_check(text):
    technique = with_flags(SYN_SCAN, parse_scanflags(text))
    p = make_rig(technique).parser()
    rows = parse(p, rst("198.18.0.2", 443, technique.tcp_flags))
    assert rows["state"].tolist() == [STATES["closed"]]           # read as the SYN scan reads it
    assert len(parse(p, rst("198.18.0.2", 443, technique.tcp_flags, delta=1))) == 0
    assert p.bad_cookie == 1


# --- UDP ----------------------------------------------------------------------

UDP_PORTS = [53, 161, 40000]


def udp_rig():
    return make_rig(SYN_SCAN, udp_ports=UDP_PORTS)


def udp_reply(target, port, key=KEY, dport=None, ttl=58, payload=None):
    """A UDP answer to our probe; by default what a genuine server sends (the lab's answer: the
    request's cookie bytes echoed where the protocol echoes them)."""
    _, sport = probe_cookie(key, SADDR, ip2int(target), port)
    if payload is None:
        payload = udp_answer(port, bytes(Ether(probe(target, port, key, UDP_SCAN))[UDP].payload))
    return bytes(eth() / IP(src=target, dst=SADDR_S, ttl=ttl)
                 / UDP(sport=port, dport=sport if dport is None else dport) / payload)


def test_udp_reply_is_open():
    rig = udp_rig()
    p = rig.parser()
    rows = parse(p, udp_reply("198.18.0.4", 53), udp_reply("198.18.1.3", 40000, payload=b""))
    all_ports = PORTS + UDP_PORTS
    assert [row_tuple(r) for r in rows] == [
        (expected_index("198.18.0.4", 53, all_ports), "198.18.0.4", 53, 17, STATES["open"],
         REASONS["udp-response"], 58, 0),
        (expected_index("198.18.1.3", 40000, all_ports), "198.18.1.3", 40000, 17, STATES["open"],
         REASONS["udp-response"], 58, 0)]
    assert p.bad_cookie == 0


def test_udp_reply_to_the_wrong_port_is_bad_cookie():
    p = udp_rig().parser()
    _, sport = probe_cookie(KEY, SADDR, ip2int("198.18.0.4"), 53)
    for dport in (sport ^ 1, 1234):
        assert len(parse(p, udp_reply("198.18.0.4", 53, dport=dport))) == 0
    assert len(parse(p, udp_reply("198.18.0.4", 53, key=OTHER_KEY))) == 0
    assert p.bad_cookie == 3


def test_udp_reply_from_a_port_not_scanned():
    p = udp_rig().parser()
    assert len(parse(p, udp_reply("198.18.0.4", 123))) == 0
    assert len(parse(p, udp_reply("198.18.0.4", 22))) == 0        # 22 is a TCP slot only
    assert p.not_in_scan == 2 and p.bad_cookie == 0


def test_udp_port_unreach_is_closed():
    p = udp_rig().parser()
    frame = icmp_unreach("198.18.0.2", 161, 3, technique=UDP_SCAN, ttl=64, router="198.18.0.2")
    rows = parse(p, frame)
    assert [row_tuple(r) for r in rows] == [
        (expected_index("198.18.0.2", 161, PORTS + UDP_PORTS), "198.18.0.2", 161, 17, STATES["closed"],
         REASONS["port-unreach"], 64, 0)]


@pytest.mark.parametrize("code,reason", sorted((c, r) for c, r in ICMP_REASONS.items() if c != 3))
def test_udp_other_unreach_is_filtered(code, reason):
    rows = parse(udp_rig().parser(), icmp_unreach("198.18.0.2", 53, code, technique=UDP_SCAN))
    assert [(int(r["state"]), int(r["reason"]), int(r["proto"]), int(r["port"])) for r in rows] == [
        (STATES["filtered"], REASONS[reason], 17, 53)]


def test_udp_unreach_quoting_a_foreign_udp_packet():
    p = udp_rig().parser()
    assert len(parse(p, icmp_unreach("198.18.0.2", 53, 3, technique=UDP_SCAN, key=OTHER_KEY))) == 0
    assert p.bad_cookie == 1
    # the TCP probe to 53 is not a slot: the quote names the protocol
    assert len(parse(p, icmp_unreach("198.18.0.2", 53, 3, technique=SYN_SCAN))) == 0
    assert p.not_in_scan == 1


def test_truncated_udp_reply_prefixes():
    frame = udp_reply("198.18.0.4", 40000, payload=b"")
    p = udp_rig().parser()
    for n in range(len(frame)):
        assert len(one(p, frame[:n])) == 0, n
    assert len(one(p, frame)) == 1
    # a DNS answer needs its transaction id (the payload's first two bytes)
    frame = udp_reply("198.18.0.4", 53)
    for n in range(14 + 20 + 8 + 2):
        assert len(one(p, frame[:n])) == 0, n
    assert len(one(p, frame[:14 + 20 + 8 + 2])) == 1


# --- host discovery -----------------------------------------------------------

DISCOVERY_SLOTS = [(DISCOVERY["PE"], 0), (DISCOVERY["PP"], 0), (DISCOVERY["PS"], 443), (DISCOVERY["PA"], 80),
                   (DISCOVERY["PU"], 40125)]


def discovery_rig(key=KEY):
    return Rig(TARGET_SPECS, Probes(DISCOVERY_SLOTS), key, SADDR_S)


def disc_index(target, slot):
    return HOSTS.index(target) * len(DISCOVERY_SLOTS) + slot


def echo_reply(rig, target, slot=0, id_delta=0, payload=None, icmp_type=0):
    sent = Ether(rig.build(target, slot))[ICMP]
    payload = bytes(sent.payload) if payload is None else payload
    return bytes(eth() / IP(src=target, dst=SADDR_S, ttl=55)
                 / ICMP(type=icmp_type, id=(sent.id + id_delta) & 0xFFFF, seq=sent.seq) / payload)


def timestamp_reply(rig, target, slot=1, ts_ori=None):
    sent = Ether(rig.build(target, slot))[ICMP]
    return bytes(eth() / IP(src=target, dst=SADDR_S, ttl=56)
                 / ICMP(type=14, id=sent.id, seq=sent.seq, ts_ori=sent.ts_ori if ts_ori is None else ts_ori,
                        ts_rx=1000, ts_tx=1001))


def _states(rows):
    return [(int(r["index"]), int(r["state"]), int(r["reason"]), int(r["proto"]), int(r["port"])) for r in rows]


def test_echo_reply_is_up():
    rig = discovery_rig()
    p = rig.parser()
    rows = parse(p, echo_reply(rig, "198.18.0.2"), echo_reply(rig, "198.18.1.3"))
    assert _states(rows) == [(disc_index("198.18.0.2", 0), STATES["up"], REASONS["echo-reply"], 1, 0),
                             (disc_index("198.18.1.3", 0), STATES["up"], REASONS["echo-reply"], 1, 0)]
    assert rows["ttl"].tolist() == [55, 55]
    assert [str(ipaddress.IPv4Address(int(a))) for a in rows["ip"]] == ["198.18.0.2", "198.18.1.3"]


def test_timestamp_reply_is_up():
    rig = discovery_rig()
    rows = parse(rig.parser(), timestamp_reply(rig, "198.18.0.5"))
    assert _states(rows) == [(disc_index("198.18.0.5", 1), STATES["up"], REASONS["timestamp-reply"], 1, 0)]


def test_rst_to_ping_probes_is_up():
    rig = discovery_rig()
    p = rig.parser()
    rows = parse(p, rst("198.18.0.1", 443, SYN), rst("198.18.0.1", 80, ACK),
                 synack("198.18.1.0", 443))
    assert _states(rows) == [(disc_index("198.18.0.1", 2), STATES["up"], REASONS["reset"], 6, 443),
                             (disc_index("198.18.0.1", 3), STATES["up"], REASONS["reset"], 6, 80),
                             (disc_index("198.18.1.0", 2), STATES["up"], REASONS["syn-ack"], 6, 443)]
    assert p.bad_cookie == 0
    # the RST must echo the probe the way its flags ask
    assert len(parse(p, rst("198.18.0.1", 443, SYN, delta=1), rst("198.18.0.1", 80, ACK, delta=1))) == 0
    assert p.bad_cookie == 2


def test_udp_ping_is_up():
    rig = discovery_rig()
    rows = parse(rig.parser(), udp_reply("198.18.0.3", 40125),
                 icmp_unreach("198.18.0.4", 40125, 3, technique=DISCOVERY["PU"]))
    assert _states(rows) == [(disc_index("198.18.0.3", 4), STATES["up"], REASONS["udp-response"], 17, 40125),
                             (disc_index("198.18.0.4", 4), STATES["up"], REASONS["port-unreach"], 17, 40125)]


@pytest.mark.parametrize("id_delta", [1, 0x100, 0x8000])
def test_echo_reply_with_wrong_id_is_bad_cookie(id_delta):
    rig = discovery_rig()
    p = rig.parser()
    assert len(parse(p, echo_reply(rig, "198.18.0.2", id_delta=id_delta))) == 0
    assert p.bad_cookie == 1


def test_echo_reply_must_echo_the_payload_cookie():
    rig = discovery_rig()
    p = rig.parser()
    sent = bytes(Ether(rig.build("198.18.0.2", 0))[ICMP].payload)
    bad = bytes([sent[0] ^ 1]) + sent[1:]
    assert len(parse(p, echo_reply(rig, "198.18.0.2", payload=bad))) == 0
    assert len(parse(p, echo_reply(rig, "198.18.0.2", payload=b""))) == 0      # too short to echo it
    assert p.bad_cookie == 1
    assert len(parse(p, timestamp_reply(rig, "198.18.0.2", ts_ori=0))) == 0
    assert p.bad_cookie == 2


def test_echo_reply_from_another_key_is_bad_cookie():
    p = discovery_rig().parser()
    other = discovery_rig(OTHER_KEY)
    assert len(parse(p, echo_reply(other, "198.18.0.2"), timestamp_reply(other, "198.18.0.2"))) == 0
    assert p.bad_cookie == 2


def test_echo_reply_must_name_an_icmp_slot():
    rig = discovery_rig()
    p = rig.parser()
    frame = bytearray(echo_reply(rig, "198.18.0.2"))
    for seq in (2, 4, 5, 0xFFFF):                     # a TCP slot, a UDP slot, past the slots
        frame[14 + 20 + 6:14 + 20 + 8] = struct.pack("!H", seq)
        assert len(parse(p, bytes(frame))) == 0
    # an echo reply naming the timestamp slot is not what that slot asked for
    frame[14 + 20 + 6:14 + 20 + 8] = struct.pack("!H", 1)
    assert len(parse(p, bytes(frame))) == 0


def test_echo_request_is_not_a_reply():
    rig = discovery_rig()
    assert len(parse(rig.parser(), echo_reply(rig, "198.18.0.2", icmp_type=8))) == 0


def test_truncated_echo_reply_prefixes():
    rig = discovery_rig()
    frame = echo_reply(rig, "198.18.0.2")
    p = rig.parser()
    for n in range(14 + 20 + 12):
        assert len(one(p, frame[:n])) == 0, n
    assert len(one(p, frame[:14 + 20 + 12])) == 1          # header and the echoed cookie suffice


# --- IPv6 ---------------------------------------------------------------------

SADDR6 = "2001:db8::ffff"
TARGETS6 = ["2001:db8::10/126", "2001:db8:1::5"]
HOSTS6 = ["2001:db8::10", "2001:db8::11", "2001:db8::12", "2001:db8::13", "2001:db8:1::5"]
SLOTS6 = [(SYN_SCAN, 22), (SYN_SCAN, 80), (UDP_SCAN, 53), (UDP_SCAN, 9), (DISCOVERY["PE"], 0)]


def rig6(key=KEY, targets=TARGETS6):
    return Rig(targets, Probes(SLOTS6), key, SADDR6)


def idx6(target, slot):
    return HOSTS6.index(target) * len(SLOTS6) + slot


def eth6():
    return Ether(src=GW_MAC, dst=US_MAC, type=0x86DD)


def tcp6_reply(rig, target, slot, flags="SA", delta=0, window=29200, hlim=61, options=None):
    sent = Ether(rig.build(target, slot))[TCP]
    return bytes(eth6() / IPv6(src=target, dst=SADDR6, hlim=hlim) / TCP(
        sport=sent.dport, dport=sent.sport, seq=7, ack=(sent.seq + 1 + delta) & 0xFFFFFFFF, flags=flags,
        window=window, options=options or []))


def udp6_reply(rig, target, slot):
    sent = Ether(rig.build(target, slot))[UDP]
    return bytes(eth6() / IPv6(src=target, dst=SADDR6, hlim=62) / UDP(sport=sent.dport, dport=sent.sport)
                 / udp_answer(sent.dport, bytes(sent.payload)))


def unreach6(rig, target, slot, code, quote_len=None, router="2001:db8:ffff::1"):
    frame = rig.build(target, slot)
    quoted = frame[14:] if quote_len is None else frame[14:14 + quote_len]
    return bytes(eth6() / IPv6(src=router, dst=SADDR6, hlim=250) / ICMPv6DestUnreach(code=code) / quoted)


def rows6(rows):
    return [(int(r["index"]), str(ipaddress.IPv6Address(bytes(r["ip6"]))), int(r["port"]), int(r["proto"]),
             int(r["state"]), int(r["reason"])) for r in rows]


def test_ipv6_syn_ack_and_rst():
    rig = rig6()
    p = rig.parser()
    options = [("MSS", 1440), ("SAckOK", b""), ("Timestamp", (1, 2)), ("NOP", None), ("WScale", 7)]
    rows = parse(p, tcp6_reply(rig, "2001:db8::11", 0, options=options),
                 tcp6_reply(rig, "2001:db8:1::5", 1, flags="RA", window=0))
    assert rows6(rows) == [
        (idx6("2001:db8::11", 0), "2001:db8::11", 22, 6, STATES["open"], REASONS["syn-ack"]),
        (idx6("2001:db8:1::5", 1), "2001:db8:1::5", 80, 6, STATES["closed"], REASONS["reset"])]
    assert rows["ip"].tolist() == [0, 0]
    assert rows["ttl"].tolist() == [61, 61]
    assert rows["window"].tolist() == [29200, 0]
    assert (int(rows[0]["mss"]), int(rows[0]["wscale"])) == (1440, 7)
    assert rows[0]["tcpopts"].tolist() == [2, 4, 8, 1, 3, 0, 0, 0]
    assert p.bad_cookie == 0 and p.not_in_scan == 0


def test_ipv6_bad_cookies():
    rig = rig6()
    p = rig.parser()
    assert len(parse(p, tcp6_reply(rig, "2001:db8::11", 0, delta=1))) == 0
    assert len(parse(p, tcp6_reply(rig6(OTHER_KEY), "2001:db8::11", 0))) == 0
    assert p.bad_cookie == 2


def test_ipv6_reply_from_outside_the_scan():
    wider = rig6(targets=["2001:db8::/120"])
    p = rig6().parser()
    assert len(parse(p, tcp6_reply(wider, "2001:db8::14", 0), tcp6_reply(wider, "2001:db8::f", 0))) == 0
    assert p.not_in_scan == 2 and p.bad_cookie == 0


def test_ipv6_reply_to_another_address_ignored():
    rig = rig6()
    frame = bytearray(tcp6_reply(rig, "2001:db8::11", 0))
    frame[14 + 24:14 + 40] = ipaddress.IPv6Address("2001:db8::fffe").packed
    p = rig.parser()
    assert len(parse(p, bytes(frame))) == 0
    assert p.bad_cookie == 0 and p.not_in_scan == 0


def test_ipv6_udp_reply_is_open():
    rig = rig6()
    rows = parse(rig.parser(), udp6_reply(rig, "2001:db8::12", 2))
    assert rows6(rows) == [(idx6("2001:db8::12", 2), "2001:db8::12", 53, 17, STATES["open"],
                            REASONS["udp-response"])]


ICMP6_REASONS = {0: "no-route", 1: "admin-prohibited", 3: "host-unreach", 4: "port-unreach",
                 5: "admin-prohibited", 6: "admin-prohibited"}


@pytest.mark.parametrize("code,reason", sorted(ICMP6_REASONS.items()))
def test_ipv6_unreach(code, reason):
    rig = rig6()
    p = rig.parser()
    rows = parse(p, unreach6(rig, "2001:db8::13", 1, code), unreach6(rig, "2001:db8::10", 3, code))
    udp_state = "closed" if reason == "port-unreach" else "filtered"
    assert rows6(rows) == [
        (idx6("2001:db8::13", 1), "2001:db8::13", 80, 6, STATES["filtered"], REASONS[reason]),
        (idx6("2001:db8::10", 3), "2001:db8::10", 9, 17, STATES[udp_state], REASONS[reason])]
    assert rows["ttl"].tolist() == [250, 250]
    assert p.bad_cookie == 0


@pytest.mark.parametrize("code", [2, 7, 8])
def test_ipv6_other_unreach_codes_ignored(code):
    rig = rig6()
    assert len(parse(rig.parser(), unreach6(rig, "2001:db8::13", 1, code))) == 0


def test_ipv6_unreach_quote_checks():
    rig = rig6()
    p = rig.parser()
    # the fixed IPv6 header and 8 bytes of the probe are needed
    for n in range(0, 48):
        assert len(parse(p, unreach6(rig, "2001:db8::13", 1, 1, quote_len=n))) == 0
    assert len(parse(p, unreach6(rig, "2001:db8::13", 1, 1, quote_len=48))) == 1
    assert len(parse(p, unreach6(rig6(OTHER_KEY), "2001:db8::13", 1, 1))) == 0
    assert p.bad_cookie == 1


def test_ipv6_echo_reply_is_up():
    rig = rig6()
    p = rig.parser()
    sent = Ether(rig.build("2001:db8:1::5", 4))[ICMPv6EchoRequest]
    frame = bytes(eth6() / IPv6(src="2001:db8:1::5", dst=SADDR6) / ICMPv6EchoReply(id=sent.id, seq=sent.seq,
                                                                                    data=sent.data))
    rows = parse(p, frame)
    assert rows6(rows) == [(idx6("2001:db8:1::5", 4), "2001:db8:1::5", 0, 58, STATES["up"], REASONS["echo-reply"])]
    bad = bytes(eth6() / IPv6(src="2001:db8:1::5", dst=SADDR6) / ICMPv6EchoReply(id=sent.id ^ 1, seq=sent.seq,
                                                                                  data=sent.data))
    assert len(parse(p, bad)) == 0 and p.bad_cookie == 1


def test_ipv6_parser_ignores_ipv4_and_ipv4_parser_ignores_ipv6():
    p = rig6().parser()
    assert len(parse(p, synack("198.18.0.1", 22))) == 0
    rig = rig6()
    assert len(parse(make_parser(), tcp6_reply(rig, "2001:db8::11", 0))) == 0


def test_ipv6_truncated_prefixes():
    rig = rig6()
    frame = tcp6_reply(rig, "2001:db8::11", 0)
    assert len(frame) == 14 + 40 + 20
    p = rig.parser()
    for n in range(len(frame)):
        assert len(one(p, frame[:n])) == 0, n
    assert len(one(p, frame)) == 1
    # a payload length shorter than the TCP header
    short = bytearray(frame)
    short[14 + 4:14 + 6] = struct.pack("!H", 19)
    assert len(one(p, bytes(short))) == 0


def test_ipv6_vlan_and_raw():
    rig = rig6()
    frame = tcp6_reply(rig, "2001:db8::11", 0)
    tagged = frame[:12] + b"\x81\x00\x00\x2a" + frame[12:]
    assert rows6(parse(rig.parser(), tagged))[0][0] == idx6("2001:db8::11", 0)
    assert rows6(parse(rig.parser(l2_len=0), frame[14:]))[0][0] == idx6("2001:db8::11", 0)


def test_ipv6_timestamp_ping_is_refused_or_answered():
    from scanner.errors import InputError
    probes = Probes([(DISCOVERY["PP"], 0)])
    try:
        rig = Rig(["2001:db8::10"], probes, KEY, SADDR6)
    except InputError:
        return                                              # refused for IPv6, as nmap does
    sent = Ether(rig.build("2001:db8::10", 0))[ICMPv6EchoRequest]
    frame = bytes(eth6() / IPv6(src="2001:db8::10", dst=SADDR6) / ICMPv6EchoReply(id=sent.id, seq=sent.seq,
                                                                                   data=sent.data))
    rows = parse(rig.parser(), frame)
    assert [(int(r["state"]), int(r["reason"])) for r in rows] == [(STATES["up"], REASONS["echo-reply"])]


# --- IPv4 fragments and IPv6 extension headers -------------------------------

def _refrag(frame, offset8=0, mf=False):
    """The IPv4 frame with its fragment offset (in 8-byte units) and MF flag set; checksum redone."""
    pkt = Ether(frame)
    pkt[IP].frag, pkt[IP].flags = offset8, ("MF" if mf else 0)
    del pkt[IP].chksum
    return bytes(pkt)


def test_ipv4_non_first_fragment_is_not_a_transport_header():
    """A non-first fragment's bytes are the middle of a datagram: even when they look exactly
    like a genuine reply (cookie included) they must not be read as one."""
    rig = make_rig(SYN_SCAN, udp_ports=UDP_PORTS)
    p = rig.parser()
    genuine = [synack("198.18.0.1", 22), udp_reply("198.18.0.4", 53),
               icmp_unreach("198.18.0.2", 80, 13)]
    assert len(parse(p, *genuine)) == 3
    for offset8 in (1, 3, 0x1fff):
        for mf in (False, True):
            assert len(parse(p, *[_refrag(f, offset8, mf) for f in genuine])) == 0


def test_ipv4_first_fragment_needs_its_whole_transport_header():
    p = make_parser()
    frame = synack("198.18.0.1", 22, options=[("MSS", 1460), ("NOP", None), ("WScale", 7), ("EOL", None)])
    assert len(one(p, _refrag(frame, 0, mf=True))) == 1      # a first fragment with all of it
    ip = Ether(frame)[IP]
    ip.frag, ip.flags, ip.len = 0, "MF", 20 + 20       # the options cut off by the fragment
    del ip.chksum
    cut = bytes(Ether(src=GW_MAC, dst=US_MAC) / ip)[:14 + 40]
    assert len(one(p, cut)) == 0


def test_icmp_quoting_a_fragment_is_not_our_probe():
    p = make_parser()
    quoted = bytearray(probe("198.18.0.2", 80)[14:14 + 28])
    for flags_frag in (0x2000, 0x0001, 0x2001):              # MF; offset 8; both
        q = bytearray(quoted)
        q[6:8] = struct.pack("!H", flags_frag)
        assert len(parse(p, icmp_unreach("198.18.0.2", 80, 13, quoted=bytes(q)))) == 0
    assert len(parse(p, icmp_unreach("198.18.0.2", 80, 13, quoted=bytes(quoted)))) == 1


def _ext(*headers):
    """An IPv6 packet of the given extension headers (scapy layers) in that order."""
    chain = headers[0]
    for h in headers[1:]:
        chain = chain / h
    return chain


def _with_ext(frame, *headers):
    """The IPv6 frame with extension headers inserted between the fixed header and its payload."""
    pkt = Ether(frame)
    ip6 = pkt[IPv6]
    upper = ip6.payload.copy()
    new = Ether(src=pkt.src, dst=pkt.dst, type=0x86DD) / IPv6(src=ip6.src, dst=ip6.dst, hlim=ip6.hlim, fl=ip6.fl) / \
        _ext(*headers) / upper
    return bytes(new)


def _ext_chains():
    from scapy.layers.inet6 import (IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                                    IPv6ExtHdrRouting, PadN)
    return {
        "hop-by-hop": (IPv6ExtHdrHopByHop(),),
        "destination options (padded to 16)": (IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\0" * 12)]),),
        "routing": (IPv6ExtHdrRouting(addresses=["2001:db8:ffff::2"]),),
        "first fragment": (IPv6ExtHdrFragment(offset=0, m=1, id=7),),
        "atomic fragment": (IPv6ExtHdrFragment(offset=0, m=0, id=8),),
        "all four": (IPv6ExtHdrHopByHop(), IPv6ExtHdrDestOpt(), IPv6ExtHdrRouting(),
                     IPv6ExtHdrFragment(offset=0, m=1)),
    }


@pytest.mark.parametrize("name", list(_ext_chains()))
def test_ipv6_replies_behind_extension_headers(name):
    chain = _ext_chains()[name]
    rig = rig6()
    p = rig.parser()
    frames = [tcp6_reply(rig, "2001:db8::11", 0), udp6_reply(rig, "2001:db8::12", 2),
              unreach6(rig, "2001:db8::13", 1, 1)]
    plain = rows6(parse(p, *frames))
    assert len(plain) == 3
    assert rows6(parse(p, *[_with_ext(f, *chain) for f in frames])) == plain
    # every truncation of the chain or of what follows is dropped, never misread
    frame = _with_ext(frames[0], *chain)
    for n in range(len(frame)):
        assert len(one(p, frame[:n])) == 0, n


def test_ipv6_non_first_fragment_and_long_chains_dropped():
    from scapy.layers.inet6 import IPv6ExtHdrDestOpt, IPv6ExtHdrFragment
    rig = rig6()
    p = rig.parser()
    reply = tcp6_reply(rig, "2001:db8::11", 0)
    assert len(parse(p, _with_ext(reply, IPv6ExtHdrFragment(offset=1, m=0)))) == 0
    assert len(parse(p, _with_ext(reply, IPv6ExtHdrFragment(offset=100, m=1)))) == 0
    assert len(parse(p, _with_ext(reply, *[IPv6ExtHdrDestOpt() for _ in range(7)]))) == 1
    assert len(parse(p, _with_ext(reply, *[IPv6ExtHdrDestOpt() for _ in range(8)]))) == 0
    # a header length that points past the packet
    bad = bytearray(_with_ext(reply, IPv6ExtHdrDestOpt()))
    bad[14 + 40 + 1] = 200
    assert len(parse(p, bytes(bad))) == 0


def test_ipv6_icmp_error_quotes_with_extension_headers():
    """A quoted probe behind extension headers (which a middlebox may have added) still matches;
    a quoted non-first fragment never does."""
    from scapy.layers.inet6 import IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
    rig = rig6()
    p = rig.parser()
    for target, slot, port in (("2001:db8::13", 1, 80), ("2001:db8::10", 3, 9)):
        sent = _with_ext(rig.build(target, slot), IPv6ExtHdrHopByHop(), IPv6ExtHdrDestOpt())
        frame = bytes(eth6() / IPv6(src="2001:db8:ffff::1", dst=SADDR6) / ICMPv6DestUnreach(code=1) / sent[14:])
        assert [r[2] for r in rows6(parse(p, frame))] == [port]
        frag = _with_ext(rig.build(target, slot), IPv6ExtHdrFragment(offset=2))
        frame = bytes(eth6() / IPv6(src="2001:db8:ffff::1", dst=SADDR6) / ICMPv6DestUnreach(code=1) / frag[14:])
        assert len(parse(p, frame)) == 0
