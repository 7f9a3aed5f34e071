"""A fuzzer for the compiled reply parser: genuine replies of every kind (built by scapy, IPv4
and IPv6, VLAN tags, extension headers, fragments), mutated (bit flips, extreme header fields,
truncations, extensions, splices, inserted/deleted bytes) and wrapped into hostile ICMP errors
(quotes of our own probes, mutated or cut anywhere). Two parsers read every frame:

- the scan's own (right key): it may accept a frame only as the answer to the probe the frame
  was made from (a mutation never turns a reply into another probe's answer);
- a parser with another key: every frame is a forgery to it, and it accepts none (replies to
  UDP ports whose protocol echoes nothing carry 15 cookie bits: counted, bounded, reported).

SCANNER_FUZZ_FRAMES (default 200,000) and SCANNER_FUZZ_SEED set how many frames and which."""
import ipaddress
import os
import random
import struct
import time

import numpy as np
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt,
                                IPv6ExtHdrFragment, IPv6ExtHdrHopByHop)
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from probekit import Rig
from scanner.lab_services import udp_answer
from scanner.techniques import ACK_SCAN, DISCOVERY, SYN_SCAN, UDP_SCAN, Probes, udp_payload_cookie

FRAMES = int(os.environ.get("SCANNER_FUZZ_FRAMES", "200000"))
SEED = int(os.environ.get("SCANNER_FUZZ_SEED", "20261202"))
KEY = bytes.fromhex("5a1e2d3c4b5a69788796a5b4c3d2e1f0")
OTHER_KEY = bytes.fromhex("a5e1d2c3b4a59687786a5b4c3d2e1f0f")
ECHO_UDP = [7, 53, 111, 123, 137, 161, 5353, 11211]
PLAIN_UDP = [9, 40000]
US, GW = "02:00:00:00:00:01", "02:00:00:00:00:02"


def slots(family):
    s = [(SYN_SCAN, 22), (SYN_SCAN, 80), (ACK_SCAN, 443)] + [(UDP_SCAN, p) for p in ECHO_UDP + PLAIN_UDP]
    s.append((DISCOVERY["PE"], 0))
    if family == 4:
        s.append((DISCOVERY["PP"], 0))
    return s


def rigs():
    return {4: Rig(["198.18.0.0/29"], Probes(slots(4)), KEY, "198.19.255.1"),
            6: Rig(["2001:db8::/125"], Probes(slots(6)), KEY, "2001:db8::ffff")}


def genuine_replies(rig, family):
    """[(frame, index of the probe it answers, weak)]: every reply kind each slot can get;
    weak: the reply carries only the 15-bit port cookie (UDP, nothing echoed)."""
    out = []
    ip_cls = IP if family == 4 else IPv6
    saddr = "198.19.255.1" if family == 4 else "2001:db8::ffff"
    router = "198.19.0.9" if family == 4 else "2001:db8:ffff::9"
    for host in rig.hosts[:4]:
        target = str(ipaddress.ip_address(host))
        for slot, (technique, port) in enumerate(rig.probes.slots):
            index = rig.index(target, slot)
            probe = Ether(rig.build(target, slot))
            l3 = probe[ip_cls]
            back = Ether(src=GW, dst=US) / (IP(src=target, dst=saddr, ttl=61) if family == 4 else
                                             IPv6(src=target, dst=saddr, hlim=61))
            frames, weak = [], False
            unreach = (ICMP(type=3, code=3 if technique.proto == "udp" else 13) if family == 4
                       else ICMPv6DestUnreach(code=4 if technique.proto == "udp" else 1))
            quoted = l3.build()
            if technique.proto == "tcp":
                t = probe[TCP]
                if technique is ACK_SCAN:
                    frames.append(back / TCP(sport=port, dport=t.sport, seq=t.ack, flags="R", window=0))
                else:
                    frames.append(back / TCP(sport=port, dport=t.sport, seq=99, ack=t.seq + 1, flags="SA",
                                             options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]))
                    frames.append(back / TCP(sport=port, dport=t.sport, ack=t.seq + 1, flags="RA"))
            elif technique.proto == "udp":
                u = probe[UDP]
                frames.append(back / UDP(sport=port, dport=u.sport) / udp_answer(port, bytes(u.payload)))
                weak = udp_payload_cookie(port) is None
            elif family == 4:
                echo = bytearray(probe[ICMP].build())           # echo or timestamp, answered as is
                echo[0] = 0 if echo[0] == 8 else 14
                frames.append(Ether(src=GW, dst=US) / IP(src=target, dst=saddr, ttl=61, proto=1) / Raw(bytes(echo)))
            else:
                i = probe[ICMPv6EchoRequest]
                frames.append(back / ICMPv6EchoReply(id=i.id, seq=i.seq, data=i.data))
            if technique.proto != "icmp":
                outer = Ether(src=GW, dst=US) / (IP(src=router, dst=saddr) if family == 4 else
                                                 IPv6(src=router, dst=saddr))
                frames.append(outer / unreach / quoted)
                frames.append(outer / unreach / quoted[:(28 if family == 4 else 48)])
            for f in frames:
                raw = bytes(f)
                out.append((raw, index, weak and UDP in f and ICMP not in f and ICMPv6DestUnreach not in f))
                out.append((raw[:12] + b"\x81\x00\x00\x07" + raw[12:], index, out[-1][2]))      # VLAN
                if family == 6:
                    pkt = Ether(raw)
                    ip6 = pkt[IPv6]
                    for ext in (IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt(), IPv6ExtHdrFragment(m=1, id=5)):
                        out.append((bytes(Ether(src=GW, dst=US) / IPv6(src=ip6.src, dst=ip6.dst, hlim=ip6.hlim)
                                          / ext / ip6.payload.copy()), index, out[-1][2]))
                elif b"\x00\x00" == raw[20:22]:
                    first = bytearray(raw)                          # a first fragment (MF set)
                    first[20] |= 0x20
                    out.append((bytes(first), index, out[-1][2]))
    return out


def icmp_wrap(family, quote, rng):
    """A hostile ICMP error (unreachable, random code) around `quote`, from a random router."""
    if family == 4:
        icmp = struct.pack("!BBHI", 3, rng.choice((0, 1, 2, 3, 9, 10, 13, rng.randrange(256))), 0, 0) + quote
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 1, 0, 60, 1, 0,
                         rng.randbytes(4), bytes([198, 19, 255, 1]))
        return bytes.fromhex("020000000001020000000002" "0800") + ip + icmp
    icmp = struct.pack("!BBHI", 1, rng.choice((0, 1, 3, 4, 5, 6, rng.randrange(256))), 0, 0) + quote
    ip = struct.pack("!IHBB16s16s", 0x60000000, len(icmp), 58, 60, b"\x20\x01\x0d\xb8" + rng.randbytes(12),
                     ipaddress.IPv6Address("2001:db8::ffff").packed)
    return bytes.fromhex("020000000001020000000002" "86dd") + ip + icmp


def mutate(frame, corpus, rng, sources):
    """A mutation of frame; a splice adds the index of the other reply to `sources` (the probes
    whose genuine bytes the result may hold)."""
    b = bytearray(frame)
    if len(b) < 2:
        return rng.randbytes(rng.randint(1, 64))
    op = rng.randrange(8)
    if op == 0:                                          # flip a few bytes anywhere
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= rng.randrange(1, 256)
    elif op == 1:                                        # an extreme value in a header
        i = rng.randrange(min(len(b), 96))
        b[i] = rng.choice((0, 0xFF, 0x80, 0x7F, 1, 0x45, 0x4F, 0x60, 6, 17, 58, 44, 0, rng.randrange(256)))
    elif op == 2:                                        # captured short
        del b[rng.randrange(len(b)):]
    elif op == 3:                                        # trailing junk
        b += rng.randbytes(rng.randint(1, 64))
    elif op == 4:                                        # a splice of two replies
        other, other_index, _ = rng.choice(corpus)
        sources.add(other_index)
        b = b[:rng.randrange(len(b))] + other[rng.randrange(len(other)):]
    elif op == 5:                                        # a byte inserted or removed
        i = rng.randrange(len(b))
        if rng.random() < 0.5:
            del b[i]
        else:
            b.insert(i, rng.randrange(256))
    elif op == 6:                                        # a 16-bit field (length, port, id) set
        i = rng.randrange(max(1, min(len(b), 96) - 1))
        b[i:i + 2] = struct.pack("!H", rng.choice((0, 1, 7, 8, 19, 20, 28, 40, 48, 0xFFFF, rng.randrange(65536))))
    else:                                                # whole reply random after the link header
        b[14:] = rng.randbytes(max(0, len(b) - 14))
    return bytes(b)


def hostile_quote(rig, family, rng):
    """An ICMP error quoting one of our probes (known to the attacker only by its shape): the
    right addresses and port, the cookie fields guessed or left, the quote cut anywhere."""
    host = rng.randrange(min(4, len(rig.hosts)))
    slot = rng.randrange(len(rig.probes.slots))
    index = host * len(rig.probes.slots) + slot
    probe = bytearray(rig.sender.build(index, 0))[14:]
    hl = 20 if family == 4 else 40
    how = rng.randrange(5)
    if how == 0:                                         # guess the port cookie
        probe[hl:hl + 2] = struct.pack("!H", rng.randrange(32768, 65536))
    elif how == 1:                                       # guess every cookie byte
        for i in range(hl, len(probe)):
            if rng.random() < 0.3:
                probe[i] = rng.randrange(256)
    elif how == 2:                                       # IPv4 id / IPv6 flow label guessed
        if family == 4:
            probe[4:6] = rng.randbytes(2)
        else:
            probe[1] = (probe[1] & 0xF0) | rng.randrange(16)
            probe[2:4] = rng.randbytes(2)
    elif how == 3:                                       # a quoted header length that lies
        if family == 4:
            probe[0] = 0x40 | rng.randrange(16)
        else:
            probe[6] = rng.choice((0, 43, 44, 60, 59, 6, 17, 58))
    quote = bytes(probe[:rng.randrange(len(probe) + 1)])
    return icmp_wrap(family, quote, rng), index


def test_parser_fuzz():
    rng = random.Random(SEED)
    t0 = time.monotonic()
    stats = {"frames": 0, "accepted": 0, "wrong_key_weak": 0, "hostile_quotes": 0, "genuine": 0}
    for family, rig in rigs().items():
        corpus = genuine_replies(rig, family)
        right, wrong = rig.parser(), rig.parser(key=OTHER_KEY)
        # the genuine replies themselves: each accepted, as the answer to its own probe
        for frame, index, _ in corpus:
            rows = right.parse(frame, struct.pack("=IIII", 0, 0, 0, len(frame)))
            assert rows["index"].tolist() == [index], (family, frame.hex())
            stats["genuine"] += 1
        right = rig.parser()                             # fresh taint table for the fuzzing
        n, done = FRAMES // 2, 0
        for k in range(n):
            if k % 5 == 4:
                frame, index = hostile_quote(rig, family, rng)
                weak, sources = False, {index}
                stats["hostile_quotes"] += 1
            else:
                base, index, weak = corpus[rng.randrange(len(corpus))]
                sources = {index}
                frame = mutate(base, corpus, rng, sources)
                if rng.random() < 0.3:
                    frame = mutate(frame, corpus, rng, sources)
            if len(frame) == 0:
                continue
            meta = struct.pack("=IIII", 0, 0, 0, len(frame))
            rows = right.parse(frame, meta)
            # a mutated reply is only ever taken for the answer to a probe whose reply it came from
            assert set(rows["index"].tolist()) <= sources, (family, frame.hex(), rows, sources)
            stats["accepted"] += len(rows)
            forged = wrong.parse(frame, meta)
            if len(forged):
                assert weak, ("a forgery passed the cookie check", family, frame.hex(), forged)
                stats["wrong_key_weak"] += len(forged)
            stats["frames"] += 1
            done += 1
        assert right.parsed == wrong.parsed == done
    # 15-bit replies: a random source port hits 1 in 32768 times (and the taint table cuts that)
    assert stats["wrong_key_weak"] <= 3 + stats["frames"] // 32768
    print(f"fuzzed {stats['frames']} frames ({stats['hostile_quotes']} hostile ICMP quotes) from "
          f"{stats['genuine']} genuine replies in {time.monotonic() - t0:.1f}s: {stats['accepted']} accepted as "
          f"answers to their own probes, {stats['wrong_key_weak']} weak-UDP hits under another key")
