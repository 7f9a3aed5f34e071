"""UDP replies and ICMP errors quoting UDP probes must echo more than the 15-bit source-port
cookie: the payload's cookie bits where the protocol echoes them (DNS/NetBIOS/mDNS/memcached
ids, RPC XID, NTP origin timestamp, SNMP request-id, echo), and in ICMP quotes the IPv4 id or
IPv6 flow label, the UDP checksum and the quoted payload. Frames built by scapy."""
import random
import struct

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6
from scapy.layers.l2 import Ether

from probekit import Rig, parse
from scanner.lab_services import udp_answer
from scanner.techniques import UDP_SCAN, Probes, udp_payload_cookie

KEY = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
SADDR = "198.19.255.1"
TARGETS = ["198.18.0.1-198.18.0.4"]
ECHO_PORTS = [7, 53, 111, 123, 137, 161, 5353, 11211]
PLAIN_PORTS = [9, 40000]                       # no payload, or one whose answer echoes nothing
PORTS = ECHO_PORTS + PLAIN_PORTS


def eth(t=0x0800):
    return Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01", type=t)


def rig(targets=TARGETS, saddr=SADDR, ports=PORTS):
    return Rig(targets, Probes.ports(UDP_SCAN, [], ports), KEY, saddr)


def sent(r, target, port):
    return Ether(r.build(target, r.slot("udp", port)))


def reply(r, target, port, payload=None, sport=None):
    """A UDP answer from target:port to our probe (by default the genuine one)."""
    probe = sent(r, target, port)
    if payload is None:
        payload = udp_answer(port, bytes(probe[UDP].payload))
    return bytes(eth() / IP(src=target, dst=SADDR) / UDP(sport=port, dport=probe[UDP].sport if sport is None
                                                          else sport) / payload)


def unreach(r, target, port, quoted=None, mangle=None, length=None):
    """A port unreachable quoting our probe; mangle(bytearray of the quoted IP packet)."""
    q = bytearray(sent(r, target, port)[IP].build() if quoted is None else quoted)
    if mangle:
        mangle(q)
    q = bytes(q if length is None else q[:length])
    return bytes(eth() / IP(src=target, dst=SADDR) / ICMP(type=3, code=3) / q)


@pytest.mark.parametrize("port", ECHO_PORTS)
def test_genuine_answers_echo_the_payload_cookie(port):
    assert udp_payload_cookie(port) is not None
    r = rig()
    p = r.parser()
    rows = parse(p, *[reply(r, t, port) for t in ("198.18.0.1", "198.18.0.4")])
    assert [(int(x["port"]), int(x["state"])) for x in rows] == [(port, 1), (port, 1)]
    assert p.forged == 0 and p.bad_cookie == 0


@pytest.mark.parametrize("port", ECHO_PORTS)
def test_right_port_wrong_echo_is_a_suspected_forgery(port):
    r = rig()
    p = r.parser()
    genuine = reply(r, "198.18.0.2", port)
    payload = bytes(Ether(genuine)[UDP].payload)
    where = udp_payload_cookie(port)
    rng = random.Random(port)
    tried = 0
    for _ in range(200):                         # other values where the echo must be
        bad = bytearray(payload)
        at = where.echo if where.echo >= 0 else payload.index(bytes(sent(r, "198.18.0.2", port)[UDP].payload)
                                                              [where.at:where.at + where.length])
        bad[at:at + where.length] = rng.randbytes(where.length)
        if bytes(bad) == payload:
            continue
        tried += 1
        assert len(parse(p, reply(r, "198.18.0.2", port, payload=bytes(bad)))) == 0
    for short in (b"", payload[:where.length - 1 + max(where.echo, 0)], b"scanner-lab\n"[:3]):
        assert len(parse(p, reply(r, "198.18.0.2", port, payload=short))) == 0
        tried += 1
    assert p.forged == tried and p.bad_cookie == 0
    assert len(parse(p, genuine)) == 1


def test_snmp_request_id_in_any_ber_form():
    r = rig()
    p = r.parser()
    probe = bytes(sent(r, "198.18.0.3", 161)[UDP].payload)
    rid = struct.unpack("!I", probe[17:21])[0]
    assert rid >> 30 == 1                        # positive, minimal in 4 bytes

    def msg(id_bytes, community=b"public", length_form=None, tag=0xA2):
        pdu = bytes([2, len(id_bytes)]) + id_bytes + bytes.fromhex("0201000201003000")
        body = bytes.fromhex("0201010406")[:3] + bytes([4, len(community)]) + community
        body += bytes([tag, len(pdu)]) + pdu
        head = bytes([0x30, len(body)]) if length_form is None else bytes([0x30, 0x82]) + struct.pack("!H", len(body))
        return head + body

    good = [msg(struct.pack("!I", rid)), msg(b"\0" + struct.pack("!I", rid)), msg(struct.pack("!I", rid), length_form=2),
            msg(struct.pack("!I", rid), community=b"x" * 100), msg(struct.pack("!I", rid), tag=0xA8)]
    assert len(parse(p, *[reply(r, "198.18.0.3", 161, payload=m) for m in good])) == len(good)  # (the tracker dedups)
    p = r.parser()
    bad = [msg(struct.pack("!I", rid ^ 1)), msg(struct.pack("!I", rid | 0x80000000)), msg(struct.pack("!I", rid)[1:]),
           msg(struct.pack("!I", rid), tag=0x30), msg(struct.pack("!I", rid))[:-12], b"\x30\x84\xff\xff\xff\xff",
           msg(struct.pack("!I", rid))[:5]]
    bad += [msg(struct.pack("!I", rid))[:n] for n in range(0, 22)]
    assert len(parse(p, *[reply(r, "198.18.0.3", 161, payload=m) for m in bad])) == 0
    assert p.forged == len(bad)


@pytest.mark.parametrize("port", [53, 40000])
def test_every_source_port_from_a_dead_host_forges_nothing(port):
    """The targeted attack: one answer to each of the 32768 cookie source ports. Ports whose
    answer echoes a cookie: the forger's echo is wrong; ports whose answer echoes nothing: the
    first wrong guess taints the (host, port), so only a first-packet hit (2^-15) could pass."""
    r = rig()
    p = r.parser()
    right = sent(r, "198.18.0.2", port)[UDP].sport
    first = 32768 if right != 32768 else 32769
    template = bytearray(reply(r, "198.18.0.2", port, payload=b"\x12\x34forged", sport=0))
    forged = []
    for s in [first] + [s for s in range(32768, 65536) if s != first]:
        template[14 + 20 + 2:14 + 20 + 4] = struct.pack("!H", s)    # the parser ignores the UDP sum
        forged.append(bytes(template))
    rows = parse(p, *forged)
    assert len(rows) == 0
    assert p.bad_cookie == 32767 and p.forged == 1
    # other hosts' and ports' answers are unaffected
    assert len(parse(p, reply(r, "198.18.0.3", port), reply(r, "198.18.0.2", 9))) == 2


def test_a_genuine_answer_first_is_kept():
    r = rig()
    p = r.parser()
    assert len(parse(p, reply(r, "198.18.0.1", 40000))) == 1
    wrong = sent(r, "198.18.0.1", 40000)[UDP].sport ^ 1
    assert len(parse(p, reply(r, "198.18.0.1", 40000, sport=wrong), reply(r, "198.18.0.1", 40000))) == 0
    assert p.forged == 1                       # a repeat after the taint: withheld and counted


@pytest.mark.parametrize("port", [53, 123, 161, 9, 40000])
def test_icmp_quotes_checked_beyond_the_port(port):
    r = rig()
    p = r.parser()
    t = "198.18.0.4"
    genuine = [unreach(r, t, port), unreach(r, t, port, length=28)]   # the whole probe; 8 bytes of UDP
    assert len(parse(r.parser(), genuine[0])) == 1 and len(parse(r.parser(), genuine[1])) == 1

    def flip(at):
        def f(q):
            q[at] ^= 0x40
        return f

    bad = [unreach(r, t, port, mangle=flip(4)), unreach(r, t, port, mangle=flip(5)),      # IP id
           unreach(r, t, port, mangle=flip(20 + 4)), unreach(r, t, port, mangle=flip(20 + 6)),  # length, sum
           unreach(r, t, port, mangle=flip(20 + 7), length=28)]
    cookie = udp_payload_cookie(port)
    if cookie:
        bad.append(unreach(r, t, port, mangle=flip(28 + cookie.at + cookie.length - 1)))
    assert len(parse(p, *bad)) == 0
    assert p.forged == len(bad)
    # TTL, TOS and the IP checksum change on the way: still genuine
    def router(q):
        q[8] -= 3
        q[1] = 0x02
        q[10:12] = b"\0\0"
    assert len(parse(p, unreach(r, t, port, mangle=router))) == 1


def test_icmp_quotes_from_a_dead_host_with_every_port_forge_nothing():
    """An ICMP forger must also guess the 16-bit IP id (and, for payload ports, the checksum)."""
    r = rig()
    p = r.parser()
    rng = random.Random(7)
    probe = bytearray(sent(r, "198.18.0.2", 40000)[IP].build())
    right_sport, right_id = probe[20:22], probe[4:6]
    frames, lucky = [], 0
    template = bytearray(unreach(r, "198.18.0.2", 40000))
    quote = 14 + 20 + 8                                   # the quoted IP header in the frame
    for sport in range(32768, 65536):
        q = bytearray(template)
        q[quote + 20:quote + 22] = struct.pack("!H", sport)
        q[quote + 4:quote + 6] = rng.randbytes(2)
        lucky += q[quote + 20:quote + 22] == right_sport and q[quote + 4:quote + 6] == right_id
        frames.append(bytes(q))
    assert len(parse(p, *frames)) == lucky == 0
    assert p.bad_cookie == 32767 and p.forged == 1


def test_ipv6_quotes_check_the_flow_label():
    saddr6 = "2001:db8::ffff"
    r = rig(["2001:db8::10/127"], saddr6, [53, 40000])
    p = r.parser()
    for port in (53, 40000):
        probe = Ether(r.build("2001:db8::11", r.slot("udp", port)))
        assert probe[IPv6].fl != 0               # cookie bits 44-63 (test_frames checks which)

        def icmp6(q):
            return bytes(eth(0x86DD) / IPv6(src="2001:db8::11", dst=saddr6) / ICMPv6DestUnreach(code=4) / bytes(q))
        q = bytearray(probe[IPv6].build())
        assert len(parse(p, icmp6(q))) == 1
        for at in (1, 2, 3):                    # the flow label's bytes (not the traffic class)
            bad = bytearray(q)
            bad[at] ^= 0x01
            assert len(parse(r.parser(), icmp6(bad))) == 0
        tc = bytearray(q)
        tc[0] ^= 0x01                           # the traffic class may be rewritten
        tc[1] ^= 0x10
        assert len(parse(r.parser(), icmp6(tc))) == 1
        assert len(parse(r.parser(), icmp6(q[:48]))) == 1


def test_ipv6_udp_answers_echo_too():
    saddr6 = "2001:db8::ffff"
    r = rig(["2001:db8::10/127"], saddr6, [53, 123])
    p = r.parser()
    for port in (53, 123):
        probe = Ether(r.build("2001:db8::10", r.slot("udp", port)))[UDP]
        good = udp_answer(port, bytes(probe.payload))
        frames = [bytes(eth(0x86DD) / IPv6(src="2001:db8::10", dst=saddr6) / UDP(sport=port, dport=probe.sport) / pl)
                  for pl in (good, b"\xff" * len(good))]
        assert len(parse(p, *frames)) == 1
    assert p.forged == 2
