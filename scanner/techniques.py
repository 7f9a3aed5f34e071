"""Scan techniques as small declarative units, like zmap's probe modules: the flags a probe
carries and the state each kind of reply means. The engine and the compiled path are shared."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .states import REPLY_KINDS, STATES

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

# A SYN with the options a current Linux sends, in its order: MSS, SACK permitted,
# timestamps, NOP, window scale. Probes that look like real stacks get real answers.
SYN_OPTIONS = bytes.fromhex("020405b4" "0402" "080a" "00000000" "00000000" "01" "030307")
SYN_TSVAL_OFFSET = 8           # TSval within SYN_OPTIONS


@dataclass(frozen=True)
class TcpTechnique:
    name: str                   # nmap's name for it
    flag: str                   # nmap's option, e.g. "-sS"
    tcp_flags: int
    replies: dict = field(default_factory=dict)   # reply kind -> state
    no_response: str = "filtered"

    def state_table(self) -> list:
        """State code per reply kind, in the order the parser indexes them (0: ignore)."""
        table = [0] * len(REPLY_KINDS)
        for kind, state in self.replies.items():
            table[REPLY_KINDS[kind]] = STATES[state]
        table[REPLY_KINDS["no-response"]] = STATES[self.no_response]
        return table

    def template(self, src_mac: bytes, dst_mac: bytes, saddr: int, window: int = 64240):
        """One Ethernet + IPv4 + TCP frame with per-probe fields zero; returns
        (frame, l2_len, offset of the TSval in the frame or -1)."""
        options = SYN_OPTIONS if self.tcp_flags & SYN else b""
        tcp_len = 20 + len(options)
        eth = dst_mac + src_mac + b"\x08\x00"
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + tcp_len, 0, 0, 64, 6, 0,
                         saddr.to_bytes(4, "big"), bytes(4))
        tcp = struct.pack("!HHIIBBHHH", 0, 0, 0, 0, (tcp_len // 4) << 4, self.tcp_flags,
                          window, 0, 0) + options
        ts_offset = len(eth) + 20 + 20 + SYN_TSVAL_OFFSET if options else -1
        return eth + ip + tcp, len(eth), ts_offset

    def bpf(self, saddr: str) -> str:
        """Kernel filter for replies: TCP to our cookie source ports, ICMP unreachables."""
        from ._ext.cookie import SOURCE_PORT_RANGE
        low, high = SOURCE_PORT_RANGE
        return (f"dst host {saddr} and ((tcp dst portrange {low}-{high} and tcp[13] & 0x14 != 0)"
                f" or (icmp and icmp[0] == 3))")


SYN_SCAN = TcpTechnique(
    "SYN Stealth Scan", "-sS", SYN,
    {"syn-ack": "open", "reset": "closed", "reset-window": "closed", "icmp-unreach": "filtered"},
    "filtered")

TECHNIQUES = {t.flag: t for t in (SYN_SCAN,)}
