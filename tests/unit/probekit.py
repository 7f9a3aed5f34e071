"""Shared helpers for the unit tests of the compiled path: a scan's space, its compiled probe
kinds, a socketless ProbeSender (frames only) and a ReplyParser, all for one key and source."""
import ipaddress
import struct

import numpy as np

from scanner._ext.cookie import split_key
from scanner._ext.parser import ReplyParser
from scanner._ext.sender import ProbeSender
from scanner.space import ScanSpace
from scanner.targets import TargetSet

SRC_MAC = bytes.fromhex("020000aabbcc")
DST_MAC = bytes.fromhex("020000112233")


def addr_bytes(addr) -> bytes:
    return ipaddress.ip_address(addr).packed


def batch(frames, gap=0):
    """(data, meta) as pcapy's next_batch() returns them; `gap` junk bytes between frames."""
    data = bytearray()
    meta = bytearray()
    for i, f in enumerate(frames):
        data += b"\xee" * gap
        meta += struct.pack("=IIII", 1700000000 + i, i * 10, len(data), len(f))
        data += f
    return bytes(data), bytes(meta)


class Rig:
    """A scan of `targets` (specs, or a TargetSet) with `probes` (a Probes) from `saddr`."""

    def __init__(self, targets, probes, key, saddr, seed=1, src_mac=SRC_MAC, dst_mac=DST_MAC, kinds=None):
        self.targets = targets if isinstance(targets, TargetSet) else TargetSet.from_specs(list(targets))
        self.probes = probes
        self.key = key
        self.k0, self.k1 = split_key(key)
        self.saddr = addr_bytes(saddr)
        self.family = self.targets.family
        self.space = ScanSpace(self.targets, probes)
        self.blob, self.kinds, self.l2_len = probes.compile(self.family, src_mac, dst_mac, self.saddr)
        if kinds is not None:
            self.kinds = kinds
        self.sender = ProbeSender(None, False, self.l2_len, self.blob, self.kinds, self.k0, self.k1,
                                  self.saddr, self.space.arrays(), seed, 0.0)
        self._hosts = None

    @property
    def hosts(self):
        """The target addresses in host-number order, as ints."""
        if self._hosts is None:
            self._hosts = [a for s, e in self.targets.ranges() for a in range(s, e + 1)]
        return self._hosts

    def slot(self, technique_or_proto, port):
        """The slot number of (technique, port), or of the first slot of that protocol and port."""
        for i, (t, p) in enumerate(self.probes.slots):
            if p == port and (t is technique_or_proto or t.proto == technique_or_proto):
                return i
        raise KeyError((technique_or_proto, port))

    def index(self, addr, slot):
        host = self.hosts.index(int(ipaddress.ip_address(addr)))
        return host * len(self.probes.slots) + slot

    def build(self, addr, slot, tsval=0):
        return self.sender.build(self.index(addr, slot), tsval)

    def parser(self, key=None, l2_len=None, kinds=None):
        k0, k1 = split_key(key) if key is not None else (self.k0, self.k1)
        return ReplyParser(k0, k1, self.saddr, self.l2_len if l2_len is None else l2_len,
                           self.kinds if kinds is None else kinds, self.space.arrays(), self.blob, self.l2_len)


def parse(parser, *frames, gap=0):
    data, meta = batch(frames, gap)
    return parser.parse(data, meta)


def one(parser, frame, caplen=None, offset=0):
    """Parses one frame given alone in its buffer (caplen: how much of it was captured)."""
    n = len(frame) - offset if caplen is None else caplen
    return parser.parse(frame, struct.pack("=IIII", 0, 0, offset, n))


def kinds_copy(kinds):
    return np.array(kinds, copy=True)
