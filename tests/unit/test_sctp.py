"""SCTP probes (-sY, -sZ) decoded by an independent decoder (scapy), and the parser fed forged
replies: a genuine INIT-ACK or ABORT echoes the probe's cookie tag as its verification tag."""
import random

import pcapy
import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6
from scapy.layers.l2 import Ether
from scapy.layers.sctp import SCTP, SCTPChunkAbort, SCTPChunkCookieEcho, SCTPChunkInit, SCTPChunkInitAck, crc32c

from probekit import DST_MAC, SRC_MAC, Rig, parse
from scanner._ext.cookie import SOURCE_PORT_RANGE, probe_cookie
from scanner._ext.parser import REASONS, STATES
from scanner.protocols.sctp import COOKIE_ECHO_SCAN, INIT_SCAN
from scanner.techniques import SYN_SCAN, Probes

KEY = bytes(range(16))
SADDR, SADDR6 = "198.19.255.1", "2001:2:0:ffff::1"
PORTS = [7, 80, 2905, 36412, 65535]


def rig(technique, targets=("198.18.0.0/29",), saddr=SADDR, ports=PORTS, key=KEY):
    return Rig(list(targets), Probes.ports(SYN_SCAN, [], sctp=technique, sctp_ports=ports), key, saddr)


def _ip_layer(pkt):
    return pkt[IP] if IP in pkt else pkt[IPv6]


def sctp_checksum_ok(raw_sctp: bytes) -> bool:
    zeroed = raw_sctp[:8] + bytes(4) + raw_sctp[12:]
    return SCTP(raw_sctp).chksum == crc32c(zeroed)


@pytest.mark.parametrize("targets,saddr", [(("198.18.0.0/29",), SADDR), (("2001:2::/125",), SADDR6)])
def test_init_probe_decodes(targets, saddr):
    r = rig(INIT_SCAN, targets, saddr)
    tags = set()
    for index in range(r.space.size):
        frame = r.sender.build(index)
        pkt = Ether(frame)
        ip = _ip_layer(pkt)
        assert (ip.proto if IP in pkt else ip.nh) == 132
        sctp = pkt[SCTP]
        assert sctp.dport == PORTS[index % len(PORTS)]
        assert SOURCE_PORT_RANGE[0] <= sctp.sport <= SOURCE_PORT_RANGE[1]
        assert sctp.tag == 0                                  # an INIT's verification tag is 0
        init = pkt[SCTPChunkInit]
        assert (init.len, init.a_rwnd, init.n_out_streams, init.n_in_streams) == (20, 32768, 10, 2048)
        assert sctp_checksum_ok(bytes(sctp))
        tags.add(init.init_tag)
        if IP in pkt:
            fresh = IP(bytes(ip))
            del fresh.chksum
            assert IP(bytes(fresh)).chksum == ip.chksum
            seq, sport = probe_cookie(KEY, int.from_bytes(bytes(ip)[12:16], "big"),
                                      int.from_bytes(bytes(ip)[16:20], "big"), sctp.dport)
            assert (init.init_tag, sctp.sport) == (seq, sport)
    assert len(tags) == r.space.size                          # a tag per (host, port)


def test_cookie_echo_probe_decodes():
    r = rig(COOKIE_ECHO_SCAN)
    for index in range(r.space.size):
        pkt = Ether(r.sender.build(index))
        sctp = pkt[SCTP]
        echo = pkt[SCTPChunkCookieEcho]
        assert echo.type == 10 and echo.len == 8
        seq, sport = probe_cookie(KEY, int.from_bytes(bytes(pkt[IP])[12:16], "big"),
                                  int.from_bytes(bytes(pkt[IP])[16:20], "big"), sctp.dport)
        assert (sctp.tag, sctp.sport) == (seq, sport)         # the cookie is the verification tag
        assert sctp_checksum_ok(bytes(sctp))


def test_checksum_random_keys():
    rng = random.Random(7)
    for _ in range(30):
        r = rig(rng.choice([INIT_SCAN, COOKIE_ECHO_SCAN]), key=rng.randbytes(16), ports=[rng.randrange(1, 65536)])
        assert sctp_checksum_ok(bytes(Ether(r.sender.build(rng.randrange(r.space.size)))[SCTP]))


# --- replies --------------------------------------------------------------------

def reply(probe_frame: bytes, chunk, tag=None, sport=None, dport=None, v6=False):
    """What the target sends back for a probe: ports swapped, verification tag = the probe's
    cookie tag (INIT: its initiate tag; else its verification tag) unless given."""
    pkt = Ether(probe_frame)
    sctp = pkt[SCTP]
    if tag is None:
        tag = pkt[SCTPChunkInit].init_tag if SCTPChunkInit in pkt else sctp.tag
    ip = _ip_layer(pkt)
    l3 = IPv6(src=ip.dst, dst=ip.src) if v6 else IP(src=ip.dst, dst=ip.src, ttl=61)
    return bytes(Ether(src=DST_MAC, dst=SRC_MAC) / l3
                 / SCTP(sport=sctp.dport if sport is None else sport, dport=sctp.sport if dport is None else dport,
                        tag=tag) / chunk)


def one(r, frame):
    p = r.parser()
    rows = parse(p, frame)
    return p, [(int(x["index"]), int(x["port"]), int(x["proto"]), int(x["state"]), int(x["reason"])) for x in rows]


@pytest.mark.parametrize("technique,chunk,state,reason", [
    (INIT_SCAN, SCTPChunkInitAck(init_tag=1234), "open", "init-ack"),
    (INIT_SCAN, SCTPChunkAbort(), "closed", "abort"),
    (COOKIE_ECHO_SCAN, SCTPChunkAbort(TCB=1), "closed", "abort"),
])
@pytest.mark.parametrize("v6", [False, True])
def test_genuine_replies(technique, chunk, state, reason, v6):
    r = rig(technique, ("2001:2::/125",) if v6 else ("198.18.0.0/29",), SADDR6 if v6 else SADDR)
    index = 3 * len(PORTS) + 2
    p, rows = one(r, reply(r.sender.build(index), chunk, v6=v6))
    assert rows == [(index, PORTS[2], 132, STATES[state], REASONS[reason])]
    assert p.bad_cookie == 0


def test_init_ack_means_nothing_to_the_cookie_echo_scan():
    r = rig(COOKIE_ECHO_SCAN)
    p, rows = one(r, reply(r.sender.build(4), SCTPChunkInitAck()))
    assert rows == [] and p.bad_cookie == 0


@pytest.mark.parametrize("technique", [INIT_SCAN, COOKIE_ECHO_SCAN])
@pytest.mark.parametrize("delta", [1, -1, 1 << 31])
def test_wrong_verification_tag_rejected(technique, delta):
    r = rig(technique)
    frame = r.sender.build(7)
    pkt = Ether(frame)
    good = pkt[SCTPChunkInit].init_tag if SCTPChunkInit in pkt else pkt[SCTP].tag
    p, rows = one(r, reply(frame, SCTPChunkAbort(), tag=(good + delta) % (1 << 32)))
    assert rows == [] and p.bad_cookie == 1


def test_zero_tag_abort_rejected():
    """An ABORT with the T bit and the INIT's own verification tag (0) proves nothing: refused."""
    r = rig(INIT_SCAN)
    p, rows = one(r, reply(r.sender.build(1), SCTPChunkAbort(TCB=1), tag=0))
    assert rows == [] and p.bad_cookie == 1


def test_reply_to_another_source_port_rejected():
    r = rig(INIT_SCAN)
    frame = r.sender.build(2)
    p, rows = one(r, reply(frame, SCTPChunkInitAck(), dport=Ether(frame)[SCTP].sport ^ 1))
    assert rows == [] and p.bad_cookie == 1


def test_reply_from_a_port_not_scanned_ignored():
    r = rig(INIT_SCAN)
    p, rows = one(r, reply(r.sender.build(2), SCTPChunkInitAck(), sport=81))
    assert rows == [] and p.not_in_scan == 1


def icmp_error(probe_frame: bytes, quote_len=None, code=3, v6=False, mangle=None):
    pkt = Ether(probe_frame)
    quoted = bytearray(probe_frame[14:] if quote_len is None else probe_frame[14:14 + quote_len])
    if mangle:
        mangle(quoted)
    ip = _ip_layer(pkt)
    if v6:
        l3 = IPv6(src=ip.dst, dst=ip.src) / ICMPv6DestUnreach(code=code)
    else:
        l3 = IP(src=ip.dst, dst=ip.src) / ICMP(type=3, code=code)
    return bytes(Ether(src=DST_MAC, dst=SRC_MAC) / l3 / bytes(quoted))


@pytest.mark.parametrize("technique", [INIT_SCAN, COOKIE_ECHO_SCAN])
@pytest.mark.parametrize("v6", [False, True])
def test_icmp_error_quoting_the_probe_is_filtered(technique, v6):
    r = rig(technique, ("2001:2::/125",) if v6 else ("198.18.0.0/29",), SADDR6 if v6 else SADDR)
    p, rows = one(r, icmp_error(r.sender.build(6), code=4 if v6 else 3, v6=v6))
    assert rows == [(6, PORTS[1], 132, STATES["filtered"], REASONS["port-unreach"])]


def test_icmp_quote_with_a_wrong_initiate_tag_rejected():
    def bad_tag(q):
        q[20 + 16] ^= 0x40                                    # the initiate tag
    r = rig(INIT_SCAN)
    p, rows = one(r, icmp_error(r.sender.build(6), mangle=bad_tag))
    assert rows == [] and p.bad_cookie == 1


def test_icmp_eight_byte_quote_rests_on_the_ip_id():
    r = rig(INIT_SCAN)
    frame = r.sender.build(6)
    p, rows = one(r, icmp_error(frame, quote_len=28))
    assert [row[3:] for row in rows] == [(STATES["filtered"], REASONS["port-unreach"])]

    def bad_id(q):
        q[4] ^= 0x01
    p, rows = one(r, icmp_error(frame, quote_len=28, mangle=bad_id))
    assert rows == [] and p.bad_cookie == 1


@pytest.mark.parametrize("v6", [False, True])
def test_bpf_takes_sctp_replies_to_cookie_ports(v6):
    probes = Probes.ports(SYN_SCAN, [], sctp=INIT_SCAN, sctp_ports=[80])
    saddr = SADDR6 if v6 else SADDR
    bpf = pcapy.compile(pcapy.DLT_EN10MB, 256, probes.bpf(6 if v6 else 4, saddr), 1, 0xFFFFFFFF)

    def l3():
        return IPv6(src="2001:2::5", dst=saddr) if v6 else IP(src="198.18.0.5", dst=saddr)
    low, high = SOURCE_PORT_RANGE
    for dport in (low, high):
        assert bpf.filter(bytes(Ether(src=DST_MAC, dst=SRC_MAC) / l3() / SCTP(sport=80, dport=dport) / SCTPChunkAbort()))
    assert not bpf.filter(bytes(Ether(src=DST_MAC, dst=SRC_MAC) / l3() / SCTP(sport=80, dport=low - 1) / SCTPChunkAbort()))
