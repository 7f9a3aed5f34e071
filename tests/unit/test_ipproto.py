"""The IP protocol scan (-sO): nmap's probe of each protocol decoded by scapy, and the parser fed
forged replies (the cookie: the IPv4 id quoted in ICMP errors, the TCP/UDP/SCTP fields a reply in
the probed protocol echoes)."""
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.sctp import SCTP, SCTPChunkAbort, SCTPChunkInit, crc32c
from scapy.packet import Raw

from probekit import DST_MAC, SRC_MAC, Rig, parse
from scanner._ext.cookie import SOURCE_PORT_RANGE, probe_cookie
from scanner._ext.parser import REASONS, STATES
from scanner.errors import InputError
from scanner.protocols.ipproto import IP_PROTO_SCAN, protocols
from scanner.states import PROTO_NAMES
from scanner.techniques import Probes

KEY = bytes(range(16, 32))
SADDR = "198.19.255.1"
NUMBERS = [0, 1, 2, 6, 17, 47, 132, 200]


def rig(numbers=NUMBERS, targets=("198.18.0.0/30",)):
    return Rig(list(targets), Probes([(IP_PROTO_SCAN, n) for n in numbers]), KEY, SADDR)


def cookie(ip_layer, number):
    """(sequence cookie, source port, IPv4 id) of the probe of a protocol to ip_layer.dst."""
    raw = bytes(ip_layer)
    seq, sport = probe_cookie(KEY, int.from_bytes(raw[12:16], "big"), int.from_bytes(raw[16:20], "big"), number)
    return seq, sport


def test_each_protocol_gets_nmaps_probe():
    r = rig()
    for slot, number in enumerate(NUMBERS):
        pkt = Ether(r.sender.build(slot))
        ip = pkt[IP]
        assert ip.proto == number and ip.len == len(bytes(ip))
        fresh = IP(bytes(ip))
        del fresh.chksum
        assert IP(bytes(fresh)).chksum == ip.chksum
        seq, sport = cookie(ip, number)
        if number == 1:
            assert (pkt[ICMP].type, pkt[ICMP].code) == (8, 0)
            fresh = ICMP(bytes(pkt[ICMP]))
            del fresh.chksum
            assert ICMP(bytes(fresh)).chksum == pkt[ICMP].chksum
        elif number == 6:
            tcp = pkt[TCP]
            assert (tcp.dport, str(tcp.flags), tcp.sport, tcp.seq, tcp.ack) == (80, "A", sport, seq, seq)
        elif number == 17:
            assert (pkt[UDP].dport, pkt[UDP].sport, pkt[UDP].len) == (40125, sport, 8)
        elif number == 132:
            sctp = bytes(pkt[SCTP])
            assert (pkt[SCTP].dport, pkt[SCTP].sport, pkt[SCTPChunkInit].init_tag) == (80, sport, seq)
            assert pkt[SCTP].chksum == crc32c(sctp[:8] + bytes(4) + sctp[12:])
        elif number == 2:                              # IGMP membership query, valid checksum
            igmp = bytes(ip.payload)
            assert igmp[0] == 0x11 and len(igmp) == 8
            total = sum(int.from_bytes(igmp[i:i + 2], "big") for i in range(0, 8, 2))
            assert (total & 0xFFFF) + (total >> 16) == 0xFFFF
        else:
            assert len(bytes(ip.payload)) == 0         # a bare IP header
        assert SOURCE_PORT_RANGE[0] <= sport <= SOURCE_PORT_RANGE[1]


def test_ip_ids_differ_per_protocol_and_host():
    r = rig()
    ids = {Ether(r.sender.build(i))[IP].id for i in range(r.space.size)}
    assert len(ids) == r.space.size


def test_protocol_list():
    assert protocols(None).tolist() == list(range(256))
    assert protocols("1,6,17").tolist() == [1, 6, 17]
    with pytest.raises(InputError, match="0-255"):
        protocols("300")
    assert PROTO_NAMES[255] == "ip"


def reply(frame, l4, src=None):
    ip = Ether(frame)[IP]
    return bytes(Ether(src=DST_MAC, dst=SRC_MAC) / IP(src=src or ip.dst, dst=ip.src, ttl=60) / l4)


def icmp_error(frame, code, mangle=None):
    ip = Ether(frame)[IP]
    quoted = bytearray(frame[14:])
    if mangle:
        mangle(quoted)
    return bytes(Ether(src=DST_MAC, dst=SRC_MAC) / IP(src=ip.dst, dst=ip.src) / ICMP(type=3, code=code)
                 / Raw(bytes(quoted)))


def rows_of(r, frame):
    p = r.parser()
    rows = parse(p, frame)
    return p, [(int(x["index"]), int(x["port"]), PROTO_NAMES[int(x["proto"])], int(x["state"]), int(x["reason"]))
               for x in rows]


def slot_of(number):
    return NUMBERS.index(number)


def test_tcp_reset_means_tcp_is_open():
    r = rig()
    frame = r.sender.build(slot_of(6))
    tcp = Ether(frame)[TCP]
    p, rows = rows_of(r, reply(frame, TCP(sport=80, dport=tcp.sport, seq=tcp.ack, flags="R")))
    assert rows == [(slot_of(6), 6, "ip", STATES["open"], REASONS["proto-response"])]
    p, rows = rows_of(r, reply(frame, TCP(sport=80, dport=tcp.sport, seq=tcp.ack + 1, flags="R")))
    assert rows == [] and p.bad_cookie == 1                 # not our cookie


def test_sctp_abort_means_sctp_is_open_and_the_tag_must_match():
    r = rig()
    frame = r.sender.build(slot_of(132))
    pkt = Ether(frame)
    tag = pkt[SCTPChunkInit].init_tag

    def abort(t):
        return SCTP(sport=80, dport=pkt[SCTP].sport, tag=t) / SCTPChunkAbort()
    assert rows_of(r, reply(frame, abort(tag)))[1] == [(slot_of(132), 132, "ip", STATES["open"],
                                                       REASONS["proto-response"])]
    p, rows = rows_of(r, reply(frame, abort(tag ^ 1)))
    assert rows == [] and p.bad_cookie == 1


def test_echo_reply_means_icmp_is_open():
    r = rig()
    frame = r.sender.build(slot_of(1))
    echo = Ether(frame)[ICMP]
    icmp = ICMP(type=0, id=echo.id, seq=echo.seq) / Raw(bytes(echo.payload))
    assert rows_of(r, reply(frame, icmp))[1] == [(slot_of(1), 1, "ip", STATES["open"], REASONS["echo-reply"])]


@pytest.mark.parametrize("number,code,state,reason", [
    (200, 2, "closed", "proto-unreach"), (47, 2, "closed", "proto-unreach"), (0, 2, "closed", "proto-unreach"),
    (17, 3, "open", "port-unreach"), (200, 13, "filtered", "admin-prohibited"), (6, 1, "filtered", "host-unreach"),
])
def test_icmp_errors(number, code, state, reason):
    r = rig()
    index = len(NUMBERS) * 2 + slot_of(number)
    assert rows_of(r, icmp_error(r.sender.build(index), code))[1] == [
        (index, number, "ip", STATES[state], REASONS[reason])]


def test_icmp_error_with_a_wrong_ip_id_rejected():
    def bad_id(q):
        q[5] ^= 0x10
    r = rig()
    p, rows = rows_of(r, icmp_error(r.sender.build(slot_of(200)), 2, bad_id))
    assert rows == [] and p.bad_cookie == 1


def test_icmp_error_about_a_protocol_not_scanned_ignored():
    def other(q):
        q[9] = 201
    r = rig()
    p, rows = rows_of(r, icmp_error(r.sender.build(slot_of(200)), 2, other))
    assert rows == [] and p.not_in_scan == 1


def test_reply_in_a_protocol_not_scanned_ignored():
    r = rig([1, 200])
    frame = r.sender.build(0)
    p, rows = rows_of(r, reply(frame, TCP(sport=80, dport=40000, flags="R")))
    assert rows == [] and p.not_in_scan == 1


def test_filter_takes_everything_to_us():
    assert rig().probes.bpf(4, SADDR) == f"ip dst host {SADDR}"


def test_ipv6_refused():
    with pytest.raises(InputError, match="IPv4"):
        Rig(["2001:2::1"], Probes([(IP_PROTO_SCAN, 1)]), KEY, "2001:2:0:ffff::1")


@pytest.mark.parametrize("number,code,reason", [(200, 2, "proto-unreach"), (17, 3, "port-unreach")])
def test_unreachable_from_a_router_is_filtered(number, code, reason):
    """nmap: protocol (port) unreachable means closed (open) only when the target itself says so."""
    r = rig()
    frame = r.sender.build(slot_of(number))
    ip = Ether(frame)[IP]
    error = bytes(Ether(src=DST_MAC, dst=SRC_MAC) / IP(src="198.19.0.9", dst=ip.src) / ICMP(type=3, code=code)
                  / Raw(frame[14:]))
    assert rows_of(r, error)[1] == [(slot_of(number), number, "ip", STATES["filtered"], REASONS[reason])]
