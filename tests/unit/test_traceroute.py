"""--traceroute's compiled path: hop-limited probes (ProbeSender.build_hop_limited, decoded by
scapy) and the parser's answers to them (ReplyParser.parse_trace): a time-exceeded quote or the
target's reply names the hop limit, and only with the keyed cookie; nmap's TRACEROUTE layout."""
import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6TimeExceeded, IPv6
from scapy.layers.l2 import Ether

from probekit import DST_MAC, SRC_MAC, Rig
from scanner._ext.cookie import probe_cookie
from scanner._ext.parser import TRACE_DTYPE
from scanner.techniques import DISCOVERY, SYN_SCAN, UDP_SCAN, Probes
from scanner.traceroute import Hop, Trace, distance_guess, trace_lines, trace_xml

KEY = bytes.fromhex("8f1e2d3c4b5a69788796a5b4c3d2e1f0")
OTHER_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
US = "198.19.255.1"
ROUTER = "198.19.253.2"
HOSTS = ["198.18.0.1", "198.18.0.2"]
SLOTS = [(SYN_SCAN, 80), (UDP_SCAN, 54), (DISCOVERY["PE"], 0)]


def rig(key=KEY):
    return Rig(HOSTS, Probes(SLOTS), key, US)


def eth():
    return Ether(src=DST_MAC, dst=SRC_MAC)


def trace_rows(parser, *frames):
    data, meta = b"", b""
    for f in frames:
        meta += struct.pack("=IIII", 1700000000, 250000, len(data), len(f))
        data += f
    return parser.parse_trace(data, meta)


def time_exceeded(frame, router=ROUTER, quote=None):
    """A router's ICMP time-exceeded quoting a probe frame (its IP header and 8 bytes or more)."""
    ip = IP(frame[14:])
    ip.ttl = 1                          # as the router saw it
    del ip.chksum
    quoted = bytes(ip)[:28] if quote is None else quote
    return bytes(eth() / IP(src=router, dst=US, ttl=64) / ICMP(type=11, code=0) / quoted)


@pytest.mark.parametrize("slot", range(len(SLOTS)))
@pytest.mark.parametrize("ttl", [1, 2, 17, 64])
def test_hop_limited_probe_fields(slot, ttl):
    r = rig()
    plain, limited = IP(r.build(HOSTS[1], slot)[14:]), IP(r.sender.build_hop_limited(r.index(HOSTS[1], slot), ttl)[14:])
    assert limited.ttl == ttl and plain.id == limited.id
    again = IP(bytes(limited))          # checksums as sent must be what scapy computes
    del again.chksum
    del again.payload.chksum
    assert IP(bytes(again)).chksum == limited.chksum
    assert bytes(IP(bytes(again)).payload)[:20] == bytes(limited.payload)[:20]
    if slot == 0:
        assert limited[TCP].seq == (plain[TCP].seq + ttl) & 0xFFFFFFFF and limited[TCP].sport == plain[TCP].sport
    elif slot == 1:
        assert limited[UDP].sport == 32768 + ((plain[UDP].sport - 32768 + ttl) & 0x7FFF)
    else:
        assert limited[ICMP].id == (plain[ICMP].id + ttl) & 0xFFFF and limited[ICMP].seq == 2


@pytest.mark.parametrize("slot", range(len(SLOTS)))
def test_time_exceeded_names_the_hop(slot):
    r = rig()
    index = r.index(HOSTS[1], slot)
    rows = trace_rows(r.parser(), time_exceeded(r.sender.build_hop_limited(index, 2)))
    assert rows.dtype == TRACE_DTYPE and len(rows) == 1
    row = rows[0]
    assert (int(row["index"]), int(row["ttl"]), int(row["final"])) == (index, 2, 0)
    assert int(row["hop"]) == int.from_bytes(bytes(map(int, ROUTER.split("."))), "big")
    assert row["time"] == pytest.approx(1700000000.25)


def test_forged_time_exceeded_is_rejected():
    """A quote that does not carry our cookie is dropped: another key, a sequence number moved
    off the cookie, another IP id, or a hop limit beyond what we send."""
    r = rig()
    index = r.index(HOSTS[0], 0)
    genuine = r.sender.build_hop_limited(index, 3)
    forged = [time_exceeded(Rig(HOSTS, Probes(SLOTS), OTHER_KEY, US).sender.build_hop_limited(index, 3))]
    for field, delta in (("seq", 1000), ("id", 1), ("seq", 70), ("sport", 1)):
        ip = IP(genuine[14:])
        if field == "id":
            ip.id = (ip.id + delta) & 0xFFFF
        else:
            setattr(ip[TCP], field, (getattr(ip[TCP], field) + delta) & (0xFFFF if field == "sport" else 0xFFFFFFFF))
        forged.append(time_exceeded(bytes(Ether(genuine[:14]) / ip)))
    parser = r.parser()
    assert len(trace_rows(parser, *forged)) == 0
    assert parser.bad_cookie + parser.not_in_scan == len(forged)
    assert len(trace_rows(parser, time_exceeded(genuine))) == 1       # the genuine one passes


def test_the_port_scans_parser_ignores_time_exceeded():
    """parse() (the port scan) takes no time-exceeded for an answer: only parse_trace does."""
    r = rig()
    frame = time_exceeded(r.sender.build_hop_limited(r.index(HOSTS[0], 0), 1))
    data = frame
    assert len(r.parser().parse(data, struct.pack("=IIII", 0, 0, 0, len(data)))) == 0


def test_targets_reply_is_the_final_hop():
    r = rig()
    seq, sport = probe_cookie(KEY, int.from_bytes(bytes(map(int, US.split("."))), "big"),
                              int.from_bytes(bytes(map(int, HOSTS[0].split("."))), "big"), 80)
    synack = bytes(eth() / IP(src=HOSTS[0], dst=US, ttl=62) / TCP(sport=80, dport=sport, seq=1, flags="SA",
                                                                  ack=(seq + 3 + 1) & 0xFFFFFFFF))
    rst = bytes(eth() / IP(src=HOSTS[0], dst=US, ttl=62) / TCP(sport=80, dport=sport, seq=0, flags="RA",
                                                               ack=(seq + 5 + 1) & 0xFFFFFFFF))
    wrong = bytes(eth() / IP(src=HOSTS[0], dst=US, ttl=62) / TCP(sport=80, dport=sport, seq=0, flags="RA",
                                                                 ack=(seq + 500) & 0xFFFFFFFF))
    rows = trace_rows(r.parser(), synack, rst, wrong)
    assert [(int(x["ttl"]), int(x["final"]), int(x["index"])) for x in rows] == \
        [(3, 1, r.index(HOSTS[0], 0)), (5, 1, r.index(HOSTS[0], 0))]


def test_port_unreachable_from_the_target_is_final():
    r = rig()
    frame = r.sender.build_hop_limited(r.index(HOSTS[1], 1), 4)
    unreach = bytes(eth() / IP(src=HOSTS[1], dst=US) / ICMP(type=3, code=3) / bytes(IP(frame[14:]))[:28])
    rows = trace_rows(r.parser(), unreach)
    assert [(int(x["ttl"]), int(x["final"])) for x in rows] == [(4, 1)]


def test_ipv6_time_exceeded_and_echo_reply():
    us6, hosts6 = "2001:2:0:ffff::1", ["2001:2::1", "2001:2::2"]
    r = Rig(hosts6, Probes([(SYN_SCAN, 80), (DISCOVERY["PE"], 0)]), KEY, us6)
    frame = r.sender.build_hop_limited(r.index(hosts6[0], 0), 2)
    assert IPv6(frame[14:]).hlim == 2
    te = bytes(Ether() / IPv6(src="2001:2:0:fe01::2", dst=us6) / ICMPv6TimeExceeded() / frame[14:])
    echo = IPv6(r.sender.build_hop_limited(r.index(hosts6[1], 1), 3)[14:])
    reply = bytes(Ether() / IPv6(src=hosts6[1], dst=us6) /
                  ICMPv6EchoReply(id=echo.payload.id, seq=echo.payload.seq, data=echo.payload.data))
    forged = bytes(Ether() / IPv6(src=hosts6[1], dst=us6) /
                   ICMPv6EchoReply(id=echo.payload.id ^ 0x100, seq=echo.payload.seq, data=echo.payload.data))
    rows = trace_rows(r.parser(), te, reply, forged)
    assert [(int(x["ttl"]), int(x["final"])) for x in rows] == [(2, 0), (3, 1)]
    assert bytes(rows[0]["hop6"]) == bytes.fromhex("20010002" "0000fe01" "00000000" "00000002")


def test_distance_guess():
    assert distance_guess(62) == 3 and distance_guess(64) == 1 and distance_guess(120) == 9
    assert distance_guess(0) == 8


def test_trace_lines_as_nmap_writes_them():
    a = Trace("tcp", 81, [Hop(1, "198.19.255.2", 0.01), Hop(2, "198.19.253.2", 0.03), Hop(3, "198.18.0.1", 0.09)])
    b = Trace("tcp", 81, [Hop(1, "198.19.255.2", 0.01), Hop(2, "198.19.253.2", 0.03), Hop(3, "198.18.0.2", 0.02)])
    assert trace_lines("198.18.0.1", a, {}) == [
        "", "TRACEROUTE (using port 81/tcp)", "HOP RTT     ADDRESS", "1   0.01 ms 198.19.255.2",
        "2   0.03 ms 198.19.253.2", "3   0.09 ms 198.18.0.1"]
    assert trace_lines("198.18.0.2", b, {"198.18.0.1": a})[2:] == [
        "HOP RTT     ADDRESS", "-   Hops 1-2 are the same as for 198.18.0.1", "3   0.02 ms 198.18.0.2"]
    c = Trace("icmp", None, [Hop(1, None, None), Hop(2, None, None), Hop(3, "198.18.0.3", 12.5)])
    assert trace_lines("198.18.0.3", c, {})[1:] == [
        "TRACEROUTE (using proto 1/icmp)", "HOP RTT      ADDRESS", "1   ... 2", "3   12.50 ms 198.18.0.3"]
    assert trace_xml(c) == '<trace proto="icmp">\n<hop ttl="3" ipaddr="198.18.0.3" rtt="12.50"/>\n</trace>\n'
    assert Trace.from_dict(a.to_dict()) == a
    v6 = Trace("ipv6-icmp", None, [Hop(1, "2001:2::1", 0.5)])
    assert trace_lines("2001:2::1", v6, {})[1] == "TRACEROUTE (using proto 58/ipv6-icmp)"
    assert trace_xml(v6).startswith("<trace>\n")           # as nmap 7.93 writes it


def test_collector_picks_nmaps_kind_of_probe():
    """Per host: an open TCP port, else a closed one, else a closed UDP port, else ICMP echo; the
    distance guess from a reply's TTL."""
    import ipaddress

    import numpy as np

    from scanner.states import REASONS, RESULT_DTYPE
    from scanner.traceroute import TraceCollector
    data = [("198.18.0.1", 22, 6, "reset", 62), ("198.18.0.1", 80, 6, "syn-ack", 62),
            ("198.18.0.2", 0, 1, "echo-reply", 60), ("198.18.0.2", 54, 17, "port-unreach", 60),
            ("198.18.0.3", 0, 1, "echo-reply", 0), ("198.18.0.3", 9, 6, "no-response", 0),
            ("198.18.0.4", 9, 6, "no-response", 0)]
    rows = np.zeros(len(data), dtype=RESULT_DTYPE)
    for i, (a, port, proto, reason, ttl) in enumerate(data):
        rows[i]["ip"], rows[i]["port"], rows[i]["proto"] = int(ipaddress.IPv4Address(a)), port, proto
        rows[i]["reason"], rows[i]["ttl"] = REASONS[reason], ttl
    c = TraceCollector()
    c.write(rows[3:])
    c.write(rows[:3])                   # a better probe in a later batch wins
    assert c.plan() == {"198.18.0.1": ("tcp", 80, 3), "198.18.0.2": ("udp", 54, 5), "198.18.0.3": ("icmp", 0, 8)}


def test_shared_hops_include_silent_ones_below_a_shared_hop():
    """nmap 7.93 on a lab whose routers 2 and 3 send no time-exceeded: "Hops 1-4 are the same"."""
    def trace(last):
        return Trace("tcp", 22, [Hop(1, "198.19.255.2", 0.01), Hop(2, None, None), Hop(3, None, None),
                                 Hop(4, "198.19.253.10", 0.04), Hop(5, last, 0.14)])
    a = trace("198.18.0.0")
    assert trace_lines("198.18.0.0", a, {})[3:] == [
        "1   0.01 ms 198.19.255.2", "2   ... 3", "4   0.04 ms 198.19.253.10", "5   0.14 ms 198.18.0.0"]
    assert trace_lines("198.18.0.1", trace("198.18.0.1"), {"198.18.0.0": a})[3:] == [
        "-   Hops 1-4 are the same as for 198.18.0.0", "5   0.14 ms 198.18.0.1"]
    other = Trace("tcp", 22, [Hop(1, "198.19.255.2", 0.01), Hop(2, "198.19.9.9", 1.0), Hop(3, "198.18.0.2", 1.0)])
    assert trace_lines("198.18.0.2", other, {"198.18.0.0": a})[3] == "-   Hop 1 is the same as for 198.18.0.0"
