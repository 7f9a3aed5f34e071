"""Probe frames (Probes.compile + ProbeSender.build, the bytes the send loop writes) decoded by
an independent decoder: scapy."""
import ipaddress
import random
import struct

import numpy as np
import pcapy
import pytest

from scanner.errors import InputError
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether
from scapy.layers.dns import DNS
from scapy.layers.snmp import SNMP

from probekit import DST_MAC, SRC_MAC, Rig, addr_bytes, parse
from scanner._ext.cookie import SOURCE_PORT_RANGE, probe_cookie, siphash24, split_key
from scanner._ext.parser import REASONS, STATES
from scanner.states import PROBE_KIND_DTYPE
from scanner.techniques import (ACK_SCAN, DISCOVERY, FIN_SCAN, MAIMON_SCAN, NULL_SCAN, SYN_SCAN,
                                SYN_TSVAL_OFFSET, UDP_SCAN, WINDOW_SCAN, XMAS_SCAN, Probes,
                                parse_scanflags, udp_payload_cookie, udp_payloads, with_flags)
from scanner.states import ECHO_SNMP

SYN_OPTIONS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (0, 0)), ("NOP", None), ("WScale", 7)]


def _eth():
    # explicit addresses: scapy must not look up a next hop
    return Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")


def _mac(b):
    return ":".join(f"{x:02x}" for x in b)


def _ip(n):
    return ".".join(str(b) for b in n.to_bytes(4, "big"))


def _rig4(key, saddr, daddr, probes):
    return Rig([_ip(daddr)], probes, key, _ip(saddr))


def _make(key, saddr, daddr, dport, tsval, technique=SYN_SCAN):
    """The frame of the one probe of a one-host, one-port scan."""
    return _rig4(key, saddr, daddr, Probes.ports(technique, [dport])).sender.build(0, tsval)


def _cases(n=200, seed=20240611):
    rng = random.Random(seed)
    fixed = [(0, 0, 0, 0), (0xFFFFFFFF, 0xFFFFFFFF, 65535, 0xFFFFFFFF), (0x7F000001, 0x7F000001, 1, 1)]
    for saddr, daddr, dport, tsval in fixed:
        yield rng.randbytes(16), saddr, daddr, dport, tsval
    for _ in range(n - len(fixed)):
        yield rng.randbytes(16), rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(32)


CASES = list(_cases())


def _cookie4(key, saddr, daddr, dport):
    """The full 64-bit IPv4 cookie, from the documented message layout (saddr, daddr, dport)."""
    return siphash24(key, struct.pack("!IIH", saddr, daddr, dport))


def _cookie6(key, saddr, daddr, dport):
    """The IPv6 cookie: SipHash-2-4 of saddr (16 bytes), daddr (16 bytes), dport (2 bytes)."""
    return siphash24(key, addr_bytes(saddr) + addr_bytes(daddr) + struct.pack("!H", dport))


def _payload(port, c):
    """The payload a UDP probe to `port` carries: the file's, with the documented cookie bits at
    their place (low 16 or 32 bits of the cookie; SNMP: 30 bits under a 01 top)."""
    payload = bytearray(udp_payloads().get(port, b""))
    where = udp_payload_cookie(port)
    if where:
        value = (0x40000000 | (c & 0x3FFFFFFF)) if where.echo == ECHO_SNMP else c & ((1 << 8 * where.length) - 1)
        payload[where.at:where.at + where.length] = value.to_bytes(where.length, "big")
    return bytes(payload)


def _sport(c):
    return SOURCE_PORT_RANGE[0] + ((c >> 32) & 0x7FFF)


def _rebuilt(frame, *layers):
    """The frame with the given layers' checksums recomputed by scapy."""
    pkt = Ether(frame)
    for layer, field in layers:
        delattr(pkt[layer], field)
    return Ether(bytes(pkt))


def _assert_checksums(frame, *layers):
    pkt = Ether(frame)
    rebuilt = _rebuilt(frame, *layers)
    for layer, field in layers:
        assert getattr(pkt[layer], field) == getattr(rebuilt[layer], field), layer
    assert bytes(rebuilt) == frame


# --- templates ----------------------------------------------------------------

def test_template_shape():
    blob, kinds, l2_len = Probes.ports(SYN_SCAN, [80]).compile(4, SRC_MAC, DST_MAC, addr_bytes("198.19.255.1"))
    assert l2_len == 14
    assert kinds.dtype == PROBE_KIND_DTYPE and len(kinds) == 1
    k = kinds[0]
    assert (int(k["offset"]), int(k["length"])) == (0, len(blob))
    assert len(blob) == 14 + 20 + 40
    ts_offset = int(k["ts_offset"])
    # the TSval offset points at the TSval of the timestamp option (kind 8, length 10)
    assert blob[ts_offset - 2:ts_offset] == b"\x08\x0a"
    assert ts_offset == 14 + 20 + 20 + SYN_TSVAL_OFFSET
    assert (int(k["proto"]), int(k["tcp_flags"])) == (6, 0x02)
    assert k["table"].tolist() == SYN_SCAN.table()


def test_templates_back_to_back_and_only_syn_has_a_timestamp():
    probes = Probes([(SYN_SCAN, 1), (UDP_SCAN, 53), (UDP_SCAN, 9), (DISCOVERY["PE"], 0), (DISCOVERY["PP"], 0)])
    blob, kinds, _ = probes.compile(4, SRC_MAC, DST_MAC, addr_bytes("198.18.200.1"))
    assert kinds["offset"].tolist() == np.concatenate(([0], np.cumsum(kinds["length"])[:-1])).tolist()
    assert int(kinds["length"].sum()) == len(blob)
    assert kinds["ts_offset"].tolist() == [kinds["ts_offset"][0]] + [-1] * 4
    assert kinds["proto"].tolist() == [6, 17, 17, 1, 1]
    assert kinds["icmp_type"].tolist() == [0, 0, 0, 8, 13]
    with pytest.raises(InputError, match="no IPv6 form"):      # ICMPv6 has no timestamp request
        probes.compile(6, SRC_MAC, DST_MAC, addr_bytes("2001:db8::1"))
    probes6 = Probes([(SYN_SCAN, 1), (UDP_SCAN, 53), (UDP_SCAN, 9), (DISCOVERY["PE"], 0)])
    blob6, kinds6, _ = probes6.compile(6, SRC_MAC, DST_MAC, addr_bytes("2001:db8::1"))
    assert kinds6["proto"].tolist() == [6, 17, 17, 58]
    assert kinds6["icmp_type"].tolist() == [0, 0, 0, 128]


# --- SYN frames ---------------------------------------------------------------

def test_probe_decodes_with_scapy():
    for key, saddr, daddr, dport, tsval in CASES:
        frame = _make(key, saddr, daddr, dport, tsval)
        seq, sport = probe_cookie(key, saddr, daddr, dport)
        pkt = Ether(frame)
        assert pkt.dst == _mac(DST_MAC) and pkt.src == _mac(SRC_MAC)
        assert pkt.type == 0x0800
        ip = pkt[IP]
        assert ip.version == 4 and ip.ihl == 5
        assert ip.ttl == 64 and ip.proto == 6
        assert ip.src == _ip(saddr) and ip.dst == _ip(daddr)
        assert ip.len == len(frame) - 14 == 60
        assert ip.frag == 0 and ip.flags == 0 and ip.tos == 0
        tcp = pkt[TCP]
        assert tcp.flags == "S"
        assert tcp.dport == dport
        assert tcp.sport == sport
        assert SOURCE_PORT_RANGE[0] <= tcp.sport <= SOURCE_PORT_RANGE[1]
        assert tcp.seq == seq
        assert tcp.ack == 0
        assert tcp.dataofs == 10
        assert tcp.window == 64240
        assert tcp.urgptr == 0
        assert tcp.options == [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (tsval, 0)),
                               ("NOP", None), ("WScale", 7)]
        assert len(tcp.payload) == 0


def test_ip_id_comes_from_the_cookie():
    # ext/probes.pxd write_probe: the IP id is the cookie's top 16 bits
    for key, saddr, daddr, dport, tsval in CASES[:50]:
        frame = _make(key, saddr, daddr, dport, tsval)
        assert Ether(frame)[IP].id == _cookie4(key, saddr, daddr, dport) >> 48


def test_checksums_match_scapy():
    for key, saddr, daddr, dport, tsval in CASES:
        _assert_checksums(_make(key, saddr, daddr, dport, tsval), (IP, "chksum"), (TCP, "chksum"))


def test_template_is_not_modified_and_probes_are_independent():
    rig = Rig(["198.18.200.2-198.18.200.3"], Probes.ports(SYN_SCAN, [80, 443]), bytes(16), "198.18.200.1")
    copy = bytes(rig.blob)
    a = rig.build("198.18.200.2", 0, tsval=5)
    b = rig.build("198.18.200.3", 1, tsval=6)
    assert rig.blob == copy
    # building b did not depend on a having been built first
    assert Rig(["198.18.200.2-198.18.200.3"], Probes.ports(SYN_SCAN, [80, 443]), bytes(16),
               "198.18.200.1").build("198.18.200.3", 1, tsval=6) == b
    assert rig.build("198.18.200.3", 1, tsval=6) == b
    assert rig.build("198.18.200.2", 0, tsval=5) == a
    assert a != b
    assert (Ether(b)[IP].dst, Ether(b)[TCP].dport) == ("198.18.200.3", 443)


def test_saddr_in_template_and_cookie_agree():
    # the parser recomputes the cookie from its own saddr: the frame's source must be that saddr
    key = bytes(range(16))
    frame = _make(key, 0xC612CA01, 0xC6120808, 53, 0)
    pkt = Ether(frame)
    assert pkt[IP].src == "198.18.202.1"
    assert (pkt[TCP].seq, pkt[TCP].sport) == probe_cookie(key, 0xC612CA01, 0xC6120808, 53)


def test_every_index_builds_its_host_and_slot():
    specs = ["198.18.0.1-198.18.0.3", "198.18.1.7"]
    slots = [(SYN_SCAN, 22), (UDP_SCAN, 53), (SYN_SCAN, 80), (DISCOVERY["PE"], 0), (UDP_SCAN, 7)]
    rig = Rig(specs, Probes(slots), bytes(range(16)), "198.19.255.1")
    hosts = ["198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.1.7"]
    for i in range(rig.space.size):
        pkt = Ether(rig.sender.build(i))
        host, slot = divmod(i, len(slots))
        assert pkt[IP].dst == hosts[host]
        technique, port = slots[slot]
        if technique.proto == "tcp":
            assert pkt[TCP].dport == port
        elif technique.proto == "udp":
            assert pkt[UDP].dport == port
        else:
            assert pkt[ICMP].type == 8 and pkt[ICMP].seq == slot


# --- other TCP techniques -----------------------------------------------------

TCP_FLAGS = [(SYN_SCAN, "S"), (ACK_SCAN, "A"), (WINDOW_SCAN, "A"), (NULL_SCAN, ""), (FIN_SCAN, "F"),
             (XMAS_SCAN, "FPU"), (MAIMON_SCAN, "FA"), (DISCOVERY["PS"], "S"), (DISCOVERY["PA"], "A")]


def _check_tcp_frame(frame, key, saddr, daddr, dport, flags, tsval):
    seq, sport = probe_cookie(key, saddr, daddr, dport)
    pkt = Ether(frame)
    tcp = pkt[TCP]
    assert tcp.flags == flags
    assert (tcp.sport, tcp.dport, tcp.seq) == (sport, dport, seq)
    # a RST answering a segment with ACK carries that ack as its seq: ours is the cookie
    assert tcp.ack == (seq if "A" in flags else 0)
    if "S" in flags:
        assert tcp.dataofs == 10 and tcp.window == 64240
        assert tcp.options == [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (tsval, 0)),
                               ("NOP", None), ("WScale", 7)]
    else:
        assert tcp.dataofs == 5 and tcp.options == [] and tcp.window == 1024
        assert len(frame) == 14 + 20 + 20 == pkt[IP].len + 14
    assert len(tcp.payload) == 0
    _assert_checksums(frame, (IP, "chksum"), (TCP, "chksum"))


@pytest.mark.parametrize("technique,flags", TCP_FLAGS, ids=[t.key + "-" + f for t, f in TCP_FLAGS])
def test_tcp_technique_flags(technique, flags):
    for key, saddr, daddr, dport, tsval in CASES[:40]:
        frame = _make(key, saddr, daddr, dport, tsval, technique)
        _check_tcp_frame(frame, key, saddr, daddr, dport, flags, tsval)


SCANFLAGS = [("URGPSHFIN", "FPU"), ("SYNFIN", "FS"), ("0x12", "SA"), ("RSTACK", "RA"), ("9", "FP"),
             ("ECECWR", "EC"), ("0", "")]


@pytest.mark.parametrize("text,flags", SCANFLAGS)
def test_custom_scanflags(text, flags):
    for base in (SYN_SCAN, ACK_SCAN):
        technique = with_flags(base, parse_scanflags(text))
        for key, saddr, daddr, dport, tsval in CASES[:20]:
            frame = _make(key, saddr, daddr, dport, tsval, technique)
            _check_tcp_frame(frame, key, saddr, daddr, dport, flags, tsval)


# --- UDP ----------------------------------------------------------------------

@pytest.mark.parametrize("port", [53, 123, 161, 1, 9, 40125, 65535])
def test_udp_frames(port):
    payload = udp_payloads().get(port, b"")
    assert (len(payload) > 0) == (port in (53, 123, 161))
    for key, saddr, daddr, _, _ in CASES[:40]:
        frame = _make(key, saddr, daddr, port, 0, UDP_SCAN)
        pkt = Ether(frame)
        ip, udp = pkt[IP], pkt[UDP]
        assert ip.proto == 17 and ip.ttl == 64 and ip.src == _ip(saddr) and ip.dst == _ip(daddr)
        assert ip.len == len(frame) - 14 == 20 + 8 + len(payload)
        assert ip.id == _cookie4(key, saddr, daddr, port) >> 48
        assert udp.sport == probe_cookie(key, saddr, daddr, port)[1]
        assert udp.dport == port
        assert udp.len == 8 + len(payload)
        c = _cookie4(key, saddr, daddr, port)
        assert bytes(udp.payload) == _payload(port, c)
        if port == 53:                            # where each protocol's own decoder sees them
            assert pkt[DNS].id == c & 0xFFFF
        elif port == 123:
            assert struct.unpack("!I", bytes(udp.payload)[40:44])[0] == c & 0xFFFFFFFF
        elif port == 161:
            assert pkt[SNMP].PDU.id.val == 0x40000000 | (c & 0x3FFFFFFF)
        assert udp.chksum != 0                    # 0 would mean "no checksum"
        _assert_checksums(frame, (IP, "chksum"), (UDP, "chksum"))


def test_udp_payload_file():
    payloads = udp_payloads()
    assert payloads[53][2:6] == b"\x01\x00\x00\x01"          # DNS: RD, one question
    assert payloads[123][0] == 0xE3                           # NTP v4 client
    assert payloads[161][0] == 0x30 and b"public" in payloads[161]
    assert payloads[7][4:] == payloads[19]                    # echo: 4 cookie bytes, then chargen's
    assert udp_payload_cookie(7).at == 0 and udp_payload_cookie(19) is None


# --- ICMP echo / timestamp ----------------------------------------------------

def test_icmp_echo_and_timestamp_frames():
    for key, saddr, daddr, _, _ in CASES[:60]:
        slots = [(SYN_SCAN, 443), (DISCOVERY["PE"], 0), (DISCOVERY["PP"], 0)]
        rig = _rig4(key, saddr, daddr, Probes(slots))
        c = _cookie4(key, saddr, daddr, 0)
        seq, _ = probe_cookie(key, saddr, daddr, 0)
        assert seq == c & 0xFFFFFFFF
        for slot, icmp_type in ((1, 8), (2, 13)):
            frame = rig.sender.build(slot)
            pkt = Ether(frame)
            ip, icmp = pkt[IP], pkt[ICMP]
            assert ip.proto == 1 and ip.ttl == 64 and ip.src == _ip(saddr) and ip.dst == _ip(daddr)
            assert ip.len == len(frame) - 14
            assert (icmp.type, icmp.code) == (icmp_type, 0)
            assert icmp.id == c & 0xFFFF
            assert icmp.seq == slot
            assert frame[14 + 20 + 8:14 + 20 + 12] == struct.pack("!I", seq)
            if icmp_type == 8:
                assert len(frame) == 14 + 20 + 8 + 12
                assert bytes(icmp.payload)[:4] == struct.pack("!I", seq)
            else:
                assert len(frame) == 14 + 20 + 20
                assert (icmp.ts_ori, icmp.ts_rx, icmp.ts_tx) == (seq, 0, 0)
            _assert_checksums(frame, (IP, "chksum"), (ICMP, "chksum"))


# --- IPv6 ---------------------------------------------------------------------

SADDR6 = "2001:db8::1"
TARGETS6 = ["2001:db8::10/126", "2001:db8:1::5"]
HOSTS6 = ["2001:db8::10", "2001:db8::11", "2001:db8::12", "2001:db8::13", "2001:db8:1::5"]
SLOTS6 = [(SYN_SCAN, 22), (UDP_SCAN, 53), (UDP_SCAN, 9), (DISCOVERY["PE"], 0), (ACK_SCAN, 80)]


def _rig6(key=bytes(range(16)), targets=TARGETS6, slots=SLOTS6):
    return Rig(targets, Probes(slots), key, SADDR6)


def _check_ipv6(pkt, daddr, nh, plen, c):
    assert pkt.type == 0x86DD
    ip6 = pkt[IPv6]
    assert ip6.version == 6 and ip6.tc == 0 and ip6.fl == (c >> 44) & 0xFFFFF     # cookie bits 44-63
    assert ip6.hlim == 64
    assert ip6.nh == nh
    assert ip6.plen == plen
    assert ip6.src == SADDR6 and ip6.dst == daddr


def test_ipv6_frames():
    key = bytes(range(16))
    rig = _rig6(key)
    assert rig.space.size == len(HOSTS6) * len(SLOTS6)
    for host, daddr in enumerate(HOSTS6):
        for slot, (technique, port) in enumerate(SLOTS6):
            frame = rig.sender.build(host * len(SLOTS6) + slot, 77)
            pkt = Ether(frame)
            c = _cookie6(key, SADDR6, daddr, port)
            if technique.proto == "tcp":
                _check_ipv6(pkt, daddr, 6, len(frame) - 14 - 40, c)
                tcp = pkt[TCP]
                assert (tcp.sport, tcp.dport, tcp.seq) == (_sport(c), port, c & 0xFFFFFFFF)
                if technique is SYN_SCAN:
                    assert tcp.flags == "S" and tcp.ack == 0
                    assert tcp.options == [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (77, 0)),
                                           ("NOP", None), ("WScale", 7)]
                else:
                    assert tcp.flags == "A" and tcp.ack == c & 0xFFFFFFFF and tcp.options == []
                _assert_checksums(frame, (TCP, "chksum"))
            elif technique.proto == "udp":
                payload = udp_payloads().get(port, b"")
                _check_ipv6(pkt, daddr, 17, 8 + len(payload), c)
                udp = pkt[UDP]
                assert (udp.sport, udp.dport, udp.len) == (_sport(c), port, 8 + len(payload))
                assert bytes(udp.payload) == _payload(port, c)
                _assert_checksums(frame, (UDP, "cksum" if hasattr(udp, "cksum") else "chksum"))
            else:
                _check_ipv6(pkt, daddr, 58, 8 + 12, c)
                echo = pkt[ICMPv6EchoRequest]
                assert (echo.type, echo.code) == (128, 0)
                assert echo.id == c & 0xFFFF and echo.seq == slot
                assert bytes(echo.data)[:4] == struct.pack("!I", c & 0xFFFFFFFF)
                _assert_checksums(frame, (ICMPv6EchoRequest, "cksum"))


def test_ipv6_cookies_round_trip_through_the_parser():
    # cookie_v6 has no Python wrapper: a reply echoing the built probe must be accepted, and
    # one built the same way under another key must not
    key = bytes(range(16))
    rig = _rig6(key)
    for other_key, accepted in ((key, True), (bytes(16), False)):
        other = _rig6(other_key)
        parser = rig.parser()
        frames = []
        for host, daddr in enumerate(HOSTS6):
            probe = Ether(other.sender.build(host * len(SLOTS6) + 0))[TCP]
            frames.append(bytes(_eth() / IPv6(src=daddr, dst=SADDR6) / TCP(
                sport=22, dport=probe.sport, seq=1, ack=probe.seq + 1, flags="SA")))
            echo = Ether(other.sender.build(host * len(SLOTS6) + 3))[ICMPv6EchoRequest]
            frames.append(bytes(_eth() / IPv6(src=daddr, dst=SADDR6) / ICMPv6EchoReply(
                id=echo.id, seq=echo.seq, data=echo.data)))
        rows = parse(parser, *frames)
        if accepted:
            assert rows["index"].tolist() == [h * len(SLOTS6) + s for h in range(len(HOSTS6)) for s in (0, 3)]
            assert rows["state"].tolist() == [STATES["open"], STATES["up"]] * len(HOSTS6)
            assert rows["reason"].tolist() == [REASONS["syn-ack"], REASONS["echo-reply"]] * len(HOSTS6)
            assert parser.bad_cookie == 0
        else:
            assert len(rows) == 0 and parser.bad_cookie == len(frames)


# --- the capture filter -------------------------------------------------------

SADDR = "198.19.255.1"
BPF_PROBES = Probes([(DISCOVERY["PE"], 0), (SYN_SCAN, 80), (UDP_SCAN, 53)])


def _compile(text):
    return pcapy.compile(pcapy.DLT_EN10MB, 256, text, 1, 0xFFFFFFFF)


@pytest.fixture(scope="module")
def bpf():
    return _compile(BPF_PROBES.bpf(4, SADDR))


@pytest.fixture(scope="module")
def bpf6():
    return _compile(BPF_PROBES.bpf(6, SADDR6))


def test_bpf_compiles(bpf, bpf6):
    assert len(bpf.get_bpf()) > 0
    assert len(bpf6.get_bpf()) > 0
    for probes in (Probes.ports(SYN_SCAN, [80]), Probes.ports(UDP_SCAN, [53]), Probes([(DISCOVERY["PP"], 0)])):
        assert len(_compile(probes.bpf(4, SADDR)).get_bpf()) > 0
        assert len(_compile(probes.bpf(6, SADDR6)).get_bpf()) > 0


def _tcp_reply(dport, flags, dst=SADDR):
    return bytes(_eth() / IP(src="198.18.0.7", dst=dst) / TCP(sport=80, dport=dport, flags=flags))


def test_bpf_accepts_replies(bpf):
    low, high = SOURCE_PORT_RANGE
    for dport in (low, 40000, high):
        assert bpf.filter(_tcp_reply(dport, "SA"))
        assert bpf.filter(_tcp_reply(dport, "RA"))
        assert bpf.filter(_tcp_reply(dport, "R"))
        assert bpf.filter(bytes(_eth() / IP(src="198.18.0.7", dst=SADDR) / UDP(sport=53, dport=dport)))
    icmp = bytes(_eth() / IP(src="198.18.200.1", dst=SADDR) / ICMP(type=3, code=13) / (b"\x00" * 28))
    assert bpf.filter(icmp)
    # host discovery needs echo and timestamp replies
    assert bpf.filter(bytes(_eth() / IP(src="198.18.200.1", dst=SADDR) / ICMP(type=0)))
    assert bpf.filter(bytes(_eth() / IP(src="198.18.200.1", dst=SADDR) / ICMP(type=14)))


def test_bpf_rejects_other_traffic(bpf):
    low, _ = SOURCE_PORT_RANGE
    assert not bpf.filter(_tcp_reply(low - 1, "SA"))          # not a cookie port
    assert not bpf.filter(_tcp_reply(40000, "S"))             # neither SYN-ACK nor RST
    assert not bpf.filter(_tcp_reply(40000, "SA", dst="198.19.255.2"))
    assert not bpf.filter(bytes(_eth() / IP(src="198.18.0.7", dst=SADDR) / UDP(sport=53, dport=low - 1)))
    assert not bpf.filter(bytes(_eth() / IP(src="198.18.200.1", dst="198.19.255.2") / ICMP(type=0)))
    assert not bpf.filter(bytes(_eth() / IPv6(src="2001:db8::5", dst=SADDR6) / TCP(dport=40000, flags="SA")))


def test_bpf_without_udp_rejects_udp():
    f = _compile(Probes.ports(SYN_SCAN, [80]).bpf(4, SADDR))
    assert not f.filter(bytes(_eth() / IP(src="198.18.0.7", dst=SADDR) / UDP(sport=53, dport=40000)))
    assert f.filter(_tcp_reply(40000, "SA"))


def test_bpf6_accepts_replies_and_rejects_others(bpf6):
    low, high = SOURCE_PORT_RANGE
    for dport in (low, high):
        for flags in ("SA", "RA", "R"):
            assert bpf6.filter(bytes(_eth() / IPv6(src="2001:db8::5", dst=SADDR6) / TCP(dport=dport, flags=flags)))
        assert bpf6.filter(bytes(_eth() / IPv6(src="2001:db8::5", dst=SADDR6) / UDP(sport=53, dport=dport)))
    assert bpf6.filter(bytes(_eth() / IPv6(src="2001:db8::5", dst=SADDR6) / ICMPv6EchoReply()))
    assert not bpf6.filter(bytes(_eth() / IPv6(src="2001:db8::5", dst=SADDR6) / TCP(dport=low - 1, flags="SA")))
    assert not bpf6.filter(bytes(_eth() / IPv6(src="2001:db8::5", dst="2001:db8::2") / TCP(dport=low, flags="SA")))
    assert not bpf6.filter(_tcp_reply(40000, "SA"))
