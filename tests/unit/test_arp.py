"""ARP ping (-PR): the request frame, decoded by scapy, and the parser's reading of replies."""
import pcapy
import pytest
from scapy.layers.l2 import ARP, Ether

from probekit import SRC_MAC, Rig, one
from scanner.errors import InputError
from scanner.states import REASONS, STATES
from scanner.techniques import DISCOVERY, SYN_SCAN, Probes

KEY = bytes(range(16))
SADDR = "198.19.255.1"
TARGETS = ["198.19.255.2-198.19.255.6"]


def rig():
    return Rig(TARGETS, Probes([(DISCOVERY["PR"], 0)]), KEY, SADDR)


def test_request_frame():
    r = rig()
    for addr in ("198.19.255.2", "198.19.255.6"):
        frame = r.build(addr, 0)
        eth = Ether(frame)
        assert eth.dst == "ff:ff:ff:ff:ff:ff" and eth.src == "02:00:00:aa:bb:cc" and eth.type == 0x0806
        arp = eth[ARP]
        assert (arp.hwtype, arp.ptype, arp.hwlen, arp.plen, arp.op) == (1, 0x0800, 6, 4, 1)
        assert arp.hwsrc == "02:00:00:aa:bb:cc" and arp.psrc == SADDR
        assert arp.pdst == addr and arp.hwdst == "00:00:00:00:00:00"


def reply(psrc, pdst=SADDR, op=2):
    return bytes(Ether(dst="02:00:00:aa:bb:cc", src="02:00:00:11:22:33") /
                 ARP(op=op, hwsrc="02:00:00:11:22:33", psrc=psrc, hwdst="02:00:00:aa:bb:cc", pdst=pdst))


def test_reply_means_up():
    r = rig()
    rows = one(r.parser(), reply("198.19.255.4"))
    assert len(rows) == 1
    row = rows[0]
    assert int(row["state"]) == STATES["up"] and int(row["reason"]) == REASONS["arp-response"]
    assert int(row["index"]) == r.index("198.19.255.4", 0) and int(row["proto"]) == 0


def test_other_arp_is_ignored():
    p = rig().parser()
    assert len(one(p, reply("198.19.255.4", op=1))) == 0              # a request, not a reply
    assert len(one(p, reply("198.19.255.4", pdst="198.19.255.9"))) == 0   # for someone else
    assert len(one(p, reply("198.19.255.99"))) == 0                   # from a non-target
    assert p.not_in_scan == 1
    full = reply("198.19.255.4")
    for n in range(14 + 28):                                          # truncated: nothing
        assert len(one(p, full, caplen=n)) == 0


def test_arp_only_alone_and_only_ipv4():
    with pytest.raises(InputError, match="cannot be combined"):
        Probes([(DISCOVERY["PR"], 0), (DISCOVERY["PE"], 0)])
    with pytest.raises(InputError, match="IPv4"):
        Probes([(DISCOVERY["PR"], 0)]).compile(6, SRC_MAC, SRC_MAC, bytes(16))
    bpf = Probes([(DISCOVERY["PR"], 0)]).bpf(4, SADDR)
    program = pcapy.compile(pcapy.DLT_EN10MB, 256, bpf, 1, 0xffffffff)      # the kernel's filter
    assert program.filter(reply("198.19.255.4")) > 0
    assert program.filter(reply("198.19.255.4", op=1)) == 0
    assert program.filter(reply("198.19.255.4", pdst="198.19.255.9")) == 0
    assert "arp" not in Probes([(SYN_SCAN, 80)]).bpf(4, SADDR)
