"""A fuzzer for --traceroute's parser (ReplyParser.parse_trace): genuine answers to hop-limited
probes (routers' time-exceeded quoting them, the targets' own replies; IPv4 and IPv6) mutated as
test_parser_fuzz mutates replies, and hostile time-exceeded quotes of our probes with the cookie
fields guessed. The scan's parser takes a frame only for a probe the frame was made from, with the
hop limit that probe carried; a parser with another key takes none (SCANNER_FUZZ_FRAMES / 8)."""
import ipaddress
import random
import struct
import time

from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6TimeExceeded, IPv6
from scapy.layers.l2 import Ether

from probekit import Rig
from scanner.techniques import DISCOVERY, SYN_SCAN, UDP_SCAN, Probes
from test_parser_fuzz import FRAMES, GW, KEY, OTHER_KEY, SEED, US, icmp_wrap, mutate

SLOTS = [(SYN_SCAN, 22), (SYN_SCAN, 80), (UDP_SCAN, 54), (UDP_SCAN, 33434), (DISCOVERY["PE"], 0)]
SADDR = {4: "198.19.255.1", 6: "2001:db8::ffff"}       # as icmp_wrap addresses its errors
ROUTER = {4: "198.19.253.2", 6: "2001:db8:fe01::2"}


def rigs():
    return {4: Rig(["198.18.0.0/29"], Probes(SLOTS), KEY, SADDR[4]),
            6: Rig(["2001:db8::/125"], Probes(SLOTS), KEY, SADDR[6])}


def answers(rig, family):
    """[(frame, (index, ttl))]: a time-exceeded for every probe at several hop limits, and the
    target's own answer (SYN-ACK, port unreachable, echo reply)."""
    out = []
    for host in rig.hosts[:4]:
        target = str(ipaddress.ip_address(host))
        for slot, (technique, _) in enumerate(rig.probes.slots):
            index = rig.index(target, slot)
            for ttl in (1, 2, 7, 30, 64):
                frame = rig.sender.build_hop_limited(index, ttl)
                if family == 4:
                    te = Ether(src=GW, dst=US) / IP(src=ROUTER[4], dst=SADDR[4]) / ICMP(type=11) / frame[14:14 + 28]
                else:
                    te = Ether(src=GW, dst=US) / IPv6(src=ROUTER[6], dst=SADDR[6]) / ICMPv6TimeExceeded() / frame[14:]
                out.append((bytes(te), (index, ttl)))
                probe = (IP if family == 4 else IPv6)(frame[14:])
                ip = (IP(src=target, dst=SADDR[4]) if family == 4 else IPv6(src=target, dst=SADDR[6]))
                if technique.proto == "tcp":
                    reply = ip / TCP(sport=probe[TCP].dport, dport=probe[TCP].sport, flags="SA", seq=9,
                                     ack=(probe[TCP].seq + 1) & 0xFFFFFFFF)
                elif technique.proto == "udp":
                    reply = ip / (ICMP(type=3, code=3) / frame[14:14 + 28] if family == 4 else
                                  ICMPv6DestUnreach(code=4) / frame[14:])
                elif family == 4:
                    reply = ip / ICMP(type=0, id=probe[ICMP].id, seq=probe[ICMP].seq) / bytes(probe[ICMP].payload)
                else:
                    reply = ip / ICMPv6EchoReply(id=probe.payload.id, seq=probe.payload.seq, data=probe.payload.data)
                out.append((bytes(Ether(src=GW, dst=US) / reply), (index, ttl)))
    return out


def hostile(rig, family, rng):
    """An ICMP error quoting one of our hop-limited probes with its cookie fields guessed."""
    index = rng.randrange(4) * len(SLOTS) + rng.randrange(len(SLOTS))
    probe = bytearray(rig.sender.build_hop_limited(index, rng.randint(1, 64)))[14:]
    hl = 20 if family == 4 else 40
    for i in range(hl, min(len(probe), hl + 8)):
        if rng.random() < 0.4:
            probe[i] = rng.randrange(256)
    if rng.random() < 0.5:
        if family == 4:
            probe[4:6] = rng.randbytes(2)
        else:
            probe[1] = (probe[1] & 0xF0) | rng.randrange(16)
            probe[2:4] = rng.randbytes(2)
    return icmp_wrap(family, bytes(probe[:rng.randrange(hl, len(probe) + 1)]), rng), index


def test_trace_parser_fuzz():
    rng = random.Random(SEED + 1)
    t0 = time.monotonic()
    frames = accepted = 0
    for family, rig in rigs().items():
        corpus = answers(rig, family)
        right, wrong = rig.parser(), rig.parser(key=OTHER_KEY)
        for frame, (index, ttl) in corpus:
            rows = right.parse_trace(frame, struct.pack("=IIII", 0, 0, 0, len(frame)))
            assert [(int(r["index"]), int(r["ttl"])) for r in rows] == [(index, ttl)], frame.hex()
        assert not len(wrong.parse_trace(*_batch(f for f, _ in corpus)))
        plain = [(f, i, False) for f, (i, _) in corpus]
        for k in range(FRAMES // 16):
            if k % 4 == 3:
                frame, index = hostile(rig, family, rng)
                sources = {index}
            else:
                base, index, _ = plain[rng.randrange(len(plain))]
                sources = {index}
                frame = mutate(base, plain, rng, sources)
            if not frame:
                continue
            meta = struct.pack("=IIII", 0, 0, 0, len(frame))
            rows = right.parse_trace(frame, meta)
            assert set(rows["index"].tolist()) <= sources, (family, frame.hex())
            assert all(1 <= t <= 64 for t in rows["ttl"].tolist())
            accepted += len(rows)
            assert not len(wrong.parse_trace(frame, meta)), ("a forgery passed", family, frame.hex())
            frames += 1
    print(f"trace fuzz: {frames} frames in {time.monotonic() - t0:.1f}s, {accepted} accepted for their own probes")


def _batch(frames):
    data, meta = b"", b""
    for f in frames:
        meta += struct.pack("=IIII", 0, 0, len(data), len(f))
        data += f
    return data, meta
