"""Probe frames (SYN_SCAN.template + build_probe) decoded by an independent decoder: scapy."""
import random
import struct

import pcapy
import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import Ether

from scanner._ext.cookie import SOURCE_PORT_RANGE, probe_cookie, siphash24, split_key
from scanner._ext.sender import build_probe
from scanner.techniques import SYN_SCAN

SRC_MAC = bytes.fromhex("020000aabbcc")
DST_MAC = bytes.fromhex("02000011 2233".replace(" ", ""))


def _mac(b):
    return ":".join(f"{x:02x}" for x in b)


def _ip(n):
    return ".".join(str(b) for b in n.to_bytes(4, "big"))


def _make(key, saddr, daddr, dport, tsval, src_mac=SRC_MAC, dst_mac=DST_MAC):
    template, l2_len, ts_offset = SYN_SCAN.template(src_mac, dst_mac, saddr)
    k0, k1 = split_key(key)
    return build_probe(template, l2_len, ts_offset, k0, k1, saddr, daddr, dport, tsval)


def _cases(n=200, seed=20240611):
    rng = random.Random(seed)
    fixed = [(0, 0, 0, 0), (0xFFFFFFFF, 0xFFFFFFFF, 65535, 0xFFFFFFFF), (0x7F000001, 0x7F000001, 1, 1)]
    for saddr, daddr, dport, tsval in fixed:
        yield rng.randbytes(16), saddr, daddr, dport, tsval
    for _ in range(n - len(fixed)):
        yield rng.randbytes(16), rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(32)


CASES = list(_cases())


def test_template_shape():
    template, l2_len, ts_offset = SYN_SCAN.template(SRC_MAC, DST_MAC, 0xC613FF01)
    assert l2_len == 14
    assert len(template) == 14 + 20 + 40
    # the TSval offset points at the TSval of the timestamp option (kind 8, length 10)
    assert template[ts_offset - 2:ts_offset] == b"\x08\x0a"
    assert ts_offset == 14 + 20 + 20 + 8


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
    # documented in ext/tcpprobe.pxd: the IP id is the cookie's top 16 bits
    for key, saddr, daddr, dport, tsval in CASES[:50]:
        frame = _make(key, saddr, daddr, dport, tsval)
        c = siphash24(key, struct.pack("!IIH", saddr, daddr, dport))
        assert Ether(frame)[IP].id == c >> 48


def test_checksums_match_scapy():
    for key, saddr, daddr, dport, tsval in CASES:
        frame = _make(key, saddr, daddr, dport, tsval)
        pkt = Ether(frame)
        got_ip, got_tcp = pkt[IP].chksum, pkt[TCP].chksum
        del pkt[IP].chksum
        del pkt[TCP].chksum
        rebuilt = Ether(bytes(pkt))
        assert got_ip == rebuilt[IP].chksum
        assert got_tcp == rebuilt[TCP].chksum
        assert bytes(rebuilt) == frame


def test_template_is_not_modified_and_probes_are_independent():
    template, l2_len, ts_offset = SYN_SCAN.template(SRC_MAC, DST_MAC, 0x0A000001)
    copy = bytes(template)
    k0, k1 = split_key(bytes(16))
    a = build_probe(template, l2_len, ts_offset, k0, k1, 0x0A000001, 0x0A000002, 80, 5)
    b = build_probe(template, l2_len, ts_offset, k0, k1, 0x0A000001, 0x0A000003, 443, 6)
    assert template == copy
    # building b did not depend on a having been built first
    assert build_probe(template, l2_len, ts_offset, k0, k1, 0x0A000001, 0x0A000003, 443, 6) == b
    assert a != b


def test_saddr_in_template_and_cookie_agree():
    # the parser recomputes the cookie from its own saddr: the frame's source must be that saddr
    key = bytes(range(16))
    frame = _make(key, 0xC0A80101, 0x08080808, 53, 0)
    pkt = Ether(frame)
    assert pkt[IP].src == "192.168.1.1"
    assert (pkt[TCP].seq, pkt[TCP].sport) == probe_cookie(key, 0xC0A80101, 0x08080808, 53)


# --- the capture filter -------------------------------------------------------

SADDR = "198.19.255.1"


@pytest.fixture(scope="module")
def bpf():
    return pcapy.compile(pcapy.DLT_EN10MB, 256, SYN_SCAN.bpf(SADDR), 1, 0xFFFFFFFF)


def test_bpf_compiles(bpf):
    assert len(bpf.get_bpf()) > 0


def _tcp_reply(dport, flags, dst=SADDR):
    return bytes(Ether() / IP(src="198.18.0.7", dst=dst) / TCP(sport=80, dport=dport, flags=flags))


def test_bpf_accepts_replies(bpf):
    low, high = SOURCE_PORT_RANGE
    for dport in (low, 40000, high):
        assert bpf.filter(_tcp_reply(dport, "SA"))
        assert bpf.filter(_tcp_reply(dport, "RA"))
        assert bpf.filter(_tcp_reply(dport, "R"))
    icmp = bytes(Ether() / IP(src="10.0.0.1", dst=SADDR) / ICMP(type=3, code=13) / (b"\x00" * 28))
    assert bpf.filter(icmp)


def test_bpf_rejects_other_traffic(bpf):
    low, _ = SOURCE_PORT_RANGE
    assert not bpf.filter(_tcp_reply(low - 1, "SA"))          # not a cookie port
    assert not bpf.filter(_tcp_reply(40000, "S"))             # neither SYN-ACK nor RST
    assert not bpf.filter(_tcp_reply(40000, "SA", dst="198.19.255.2"))
    echo = bytes(Ether() / IP(src="10.0.0.1", dst=SADDR) / ICMP(type=0))
    assert not bpf.filter(echo)
