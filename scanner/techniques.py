"""Scan techniques as small declarative units, like zmap's probe modules: what a probe carries
and the state each kind of reply means. A scan's probes are a list of slots (technique, port);
the compiled sender and parser are shared by all of them."""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import groupby

import numpy as np

from ._ext.constants import ICMP_TYPES, TCP_FLAGS
from .errors import InputError
from .states import ECHO_NONE, ECHO_SNMP, PROBE_KIND_DTYPE, PROTO_NUMBERS, REPLY_KINDS, STATES

TCP_FLAG_NAMES = TCP_FLAGS
FIN, SYN, RST, PSH, ACK, URG = (TCP_FLAGS[name] for name in ("FIN", "SYN", "RST", "PSH", "ACK", "URG"))

# A SYN with the options a current Linux sends, in its order: MSS, SACK permitted,
# timestamps, NOP, window scale. Probes that look like real stacks get real answers.
SYN_OPTIONS = bytes.fromhex("020405b4" "0402" "080a" "00000000" "00000000" "01" "030307")
SYN_TSVAL_OFFSET = 8           # TSval within SYN_OPTIONS
ICMP_ECHO, ICMP_TIMESTAMP, ICMP6_ECHO = ICMP_TYPES["echo"], ICMP_TYPES["timestamp"], ICMP_TYPES["echo6"]

ICMP_ERRORS = {"icmp-unreach": "filtered", "port-unreach": "filtered", "proto-unreach": "filtered"}


@dataclass(frozen=True, eq=False)     # compared and hashed by identity: one object per technique
class Technique:
    key: str                    # short name: syn, connect, ack, ...
    name: str                   # nmap's name for it
    flag: str                   # nmap's option
    proto: str = "tcp"          # tcp, udp or icmp
    tcp_flags: int = 0
    replies: dict = field(default_factory=dict)   # reply kind -> state
    no_response: str = "filtered"
    raw: bool = True            # needs raw sockets (all but the connect scan)
    icmp_type: int = 0

    def ip_proto(self, family: int) -> int:
        """The IP protocol number of this technique's probes (ICMP is ICMPv6 over IPv6; ARP: 0)."""
        return 58 if self.proto == "icmp" and family == 6 else PROTO_NUMBERS[self.proto]

    def table(self) -> list:
        """State code per reply kind, in the order the parser indexes them (0: ignore)."""
        table = [0] * len(REPLY_KINDS)
        for kind, state in self.replies.items():
            table[REPLY_KINDS[kind]] = STATES[state]
        table[REPLY_KINDS["no-response"]] = STATES[self.no_response]
        return table


def tcp_technique(key, name, flag, tcp_flags, replies, no_response):
    return Technique(key, name, flag, "tcp", tcp_flags, {**ICMP_ERRORS, **replies}, no_response)


SYN_SCAN = tcp_technique("syn", "SYN Stealth Scan", "-sS", SYN,
                         {"syn-ack": "open", "reset": "closed", "reset-window": "closed"}, "filtered")
CONNECT_SCAN = Technique("connect", "Connect Scan", "-sT", raw=False)
ACK_SCAN = tcp_technique("ack", "ACK Scan", "-sA", ACK,
                         {"reset": "unfiltered", "reset-window": "unfiltered"}, "filtered")
WINDOW_SCAN = tcp_technique("window", "Window Scan", "-sW", ACK,
                            {"reset": "closed", "reset-window": "open"}, "filtered")
NULL_SCAN = tcp_technique("null", "NULL Scan", "-sN", 0,
                          {"reset": "closed", "reset-window": "closed"}, "open|filtered")
FIN_SCAN = tcp_technique("fin", "FIN Scan", "-sF", FIN,
                         {"reset": "closed", "reset-window": "closed"}, "open|filtered")
XMAS_SCAN = tcp_technique("xmas", "Xmas Scan", "-sX", FIN | PSH | URG,
                          {"reset": "closed", "reset-window": "closed"}, "open|filtered")
MAIMON_SCAN = tcp_technique("maimon", "Maimon Scan", "-sM", FIN | ACK,
                            {"reset": "closed", "reset-window": "closed"}, "open|filtered")
UDP_SCAN = Technique("udp", "UDP Scan", "-sU", "udp", 0,
                     {"udp-response": "open", "port-unreach": "closed", "icmp-unreach": "filtered",
                      "proto-unreach": "filtered"},
                     "open|filtered")

TCP_TECHNIQUES = {t.flag: t for t in (SYN_SCAN, CONNECT_SCAN, ACK_SCAN, WINDOW_SCAN, NULL_SCAN,
                                      FIN_SCAN, XMAS_SCAN, MAIMON_SCAN)}


def parse_scanflags(text: str) -> int:
    """nmap's --scanflags: a number (9, 0x29) or flag names run together (URGPSHFIN)."""
    text = text.strip().upper()
    try:
        value = int(text, 0)
    except ValueError:
        value, rest = 0, text
        while rest:
            name = next((n for n in TCP_FLAG_NAMES if rest.startswith(n)), None)
            if name is None:
                raise InputError(f"bad --scanflags '{text}': use flag names (URG ACK PSH RST SYN FIN "
                                 "ECE CWR) run together, or a number") from None
            value |= TCP_FLAG_NAMES[name]
            rest = rest[len(name):]
    if not 0 <= value <= 255:
        raise InputError(f"bad --scanflags '{text}': must be 0-255")
    return value


def with_flags(base: Technique, tcp_flags: int) -> Technique:
    """--scanflags: send these flags, read the replies as the base technique does (nmap)."""
    return Technique(base.key, base.name, base.flag, "tcp", tcp_flags, base.replies, base.no_response)


# Host discovery (nmap's -PE -PP -PS -PA -PU): any genuine answer means the host is up.
UP = "up"
DISCOVERY = {
    "PE": Technique("PE", "ICMP echo", "-PE", "icmp", replies={"echo-reply": UP}, icmp_type=ICMP_ECHO),
    "PP": Technique("PP", "ICMP timestamp", "-PP", "icmp", replies={"timestamp-reply": UP},
                    icmp_type=ICMP_TIMESTAMP),
    "PS": Technique("PS", "TCP SYN ping", "-PS", "tcp", SYN,
                    {"syn-ack": UP, "reset": UP, "reset-window": UP}),
    "PA": Technique("PA", "TCP ACK ping", "-PA", "tcp", ACK, {"reset": UP, "reset-window": UP}),
    "PU": Technique("PU", "UDP ping", "-PU", "udp", replies={"udp-response": UP, "port-unreach": UP}),
    "PR": Technique("PR", "ARP ping", "-PR", "arp", replies={"arp-response": UP}),
}
DISCOVERY_DEFAULT_PORTS = {"PS": 80, "PA": 80, "PU": 40125}
# nmap's default discovery as root: echo, SYN to 443, ACK to 80, timestamp; for IPv4 targets on
# the local Ethernet link, ARP alone.
DEFAULT_DISCOVERY = (("PE", 0), ("PS", 443), ("PA", 80), ("PP", 0))
LOCAL_LINK_DISCOVERY = (("PR", 0),)


@dataclass(frozen=True)
class PayloadCookie:
    """Where a UDP payload carries cookie bits (`length` bytes at `at`) and where a genuine reply
    echoes them: at offset `echo` of its payload, or ECHO_SNMP (the SNMP request-id)."""
    at: int
    length: int
    echo: int

    @classmethod
    def parse(cls, text: str) -> "PayloadCookie | None":
        if text == "-":
            return None
        where, echo = text.split(">")
        at, length = where.split("+")
        return cls(int(at), int(length), ECHO_SNMP if echo == "snmp" else int(echo))


@lru_cache(maxsize=1)
def _udp_payload_table() -> dict:
    """UDP port -> (payload, PayloadCookie or None), from scanner/data/udp-payloads.txt."""
    from .ports import DATA
    with open(f"{DATA}/udp-payloads.txt", encoding="ascii") as f:
        text = f.read()
    table = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            ports, _name, hexdata, cookie = line.split()
            payload, where = bytes.fromhex(hexdata), PayloadCookie.parse(cookie)
            if where and not (where.length in (2, 4) and where.at + where.length <= len(payload)):
                raise ValueError(f"udp-payloads.txt: bad cookie place {cookie} for {ports}")
            for port in ports.split(","):
                table[int(port)] = (payload, where)
    return table


def udp_payloads() -> dict:
    """UDP port -> the payload its service answers (scanner/data/udp-payloads.txt)."""
    return {port: payload for port, (payload, _) in _udp_payload_table().items()}


def udp_payload_cookie(port: int) -> "PayloadCookie | None":
    """Where the payload sent to a UDP port carries cookie bits that its answer echoes."""
    return _udp_payload_table().get(port, (b"", None))[1]


class Probes:
    """The probes one scan sends to every host: a list of slots, each a (technique, port), and
    the distinct probe kinds (technique + payload) the slots use. ttl and padding (--ttl,
    --data-length) change every template."""
    ttl = 64
    padding = b""
    source_port = 0             # -g (0: each probe's cookie chooses it)

    def __init__(self, slots=(), runs=None):
        """slots: [(technique, port)]; or runs: [(technique, ports)] in slot order, the same
        slots without a Python object per slot (a -p- scan has 65535 of them)."""
        if runs is None:
            runs = [(t, [port for _, port in group]) for t, group in groupby(slots, key=lambda slot: slot[0])]
        runs = [(t, np.asarray(ports, dtype=np.int64).reshape(-1)) for t, ports in runs]
        runs = [(t, ports) for t, ports in runs if len(ports)]
        count = sum(len(ports) for _, ports in runs)
        if not count:
            raise InputError("nothing to scan: no ports for the chosen scan types")
        if count > 65535:
            raise InputError("too many probes per host (at most 65535 ports and probe types)")
        self._slots = None                            # [(technique, port)], made when first asked for
        self.kinds = []                               # [(technique, payload, PayloadCookie|None)]
        kind_of: dict = {}
        slot_kind = []
        payloads = _udp_payload_table() if any(t.proto == "udp" for t, _ in runs) else {}
        for technique, ports in runs:
            if technique.proto == "udp":              # a kind per distinct payload
                keys = [(technique, *payloads.get(port, (b"", None))) for port in ports.tolist()]
            elif technique.proto == "ip":             # -sO: a kind per protocol; its number stands as the payload
                keys = [(technique, bytes([p]), None) for p in ports.tolist()]
            else:
                keys = [(technique, b"", None)]
            kinds = []
            for key in keys:
                kind = kind_of.get(key)
                if kind is None:
                    kind = kind_of[key] = len(self.kinds)
                    self.kinds.append(key)
                kinds.append(kind)
            slot_kind.append(np.asarray(kinds, dtype=np.uint16) if len(kinds) > 1 else
                             np.full(len(ports), kinds[0], dtype=np.uint16))
        self.slot_kind = np.concatenate(slot_kind)
        self.slot_port = np.concatenate([ports for _, ports in runs]).astype(np.uint16)
        proto_of = np.array([t.proto for t, *_ in self.kinds])[self.slot_kind]
        self.tcp_slot = self._slot_map(proto_of == "tcp", "tcp")
        self.udp_slot = self._slot_map(proto_of == "udp", "udp")
        self.sctp_slot = self._slot_map(proto_of == "sctp", "sctp")
        self.ip_slot = self._slot_map(proto_of == "ip", "ip")[:256]
        arp = np.flatnonzero(proto_of == "arp").tolist()
        if arp and count > 1:
            raise InputError("-PR (ARP ping) cannot be combined with other probes")
        self.arp_slot = arp[0] if arp else -1

    @property
    def slots(self) -> list:
        """[(technique, port)] of every slot, in order."""
        if self._slots is None:
            technique = [t for t, *_ in self.kinds]
            self._slots = [(technique[k], port) for k, port in zip(self.slot_kind.tolist(), self.slot_port.tolist())]
        return self._slots

    @property
    def n_slots(self) -> int:
        return len(self.slot_port)

    def _slot_map(self, mine: np.ndarray, proto: str) -> np.ndarray:
        """port -> slot of this protocol's probes (-1: none); mine: which slots are of it."""
        table = np.full(65536, -1, dtype=np.int32)
        slots = np.flatnonzero(mine)
        ports = self.slot_port[slots]
        unique, counts = np.unique(ports, return_counts=True)
        if len(unique) < len(ports):
            raise InputError(f"two probes to {proto} port {int(unique[counts > 1][0])} in one scan")
        table[ports] = slots
        return table

    @classmethod
    def ports(cls, technique: Technique, tcp_ports, udp_ports=(), sctp: "Technique | None" = None,
              sctp_ports=()) -> "Probes":
        return cls(runs=[(technique, tcp_ports), (UDP_SCAN, udp_ports), (sctp, sctp_ports)])

    @property
    def protos(self) -> set:
        return {t.proto for t, *_ in self.kinds}

    def shaped(self, ttl=None, data_length: int = 0, source_port=None) -> "Probes":
        """These probes with nmap's --ttl, --data-length (random bytes after the header or
        payload) and -g (a fixed source port for TCP and UDP probes)."""
        import os
        self.ttl = 64 if ttl is None else ttl
        self.padding = os.urandom(data_length)
        self.source_port = source_port or 0
        return self

    def compile(self, family: int, src_mac: bytes, dst_mac: bytes, saddr: bytes):
        """(template blob, PROBE_KIND_DTYPE array, link header length) for the sender/parser."""
        kinds = np.zeros(len(self.kinds), dtype=PROBE_KIND_DTYPE)
        blob = b""
        for i, (technique, payload, cookie) in enumerate(self.kinds):
            frame, ts_offset = template(technique, payload, family, src_mac, dst_mac, saddr, self.ttl, self.padding,
                                        self.source_port)
            if technique.proto == "arp" and family != 4:
                raise InputError("-PR (ARP ping) is for IPv4 targets")
            proto, tcp_flags, itype = technique.ip_proto(family), technique.tcp_flags, icmp_type(technique, family)
            if technique.proto == "ip":
                from .protocols import ipproto
                proto, tcp_flags, itype = ipproto.kind_fields(payload[0], family)
            kinds[i] = (proto, tcp_flags, itype, cookie.length if cookie else 0, len(blob), len(frame), ts_offset,
                        cookie.at if cookie else 0, cookie.echo if cookie else ECHO_NONE, technique.table(),
                        technique.proto == "ip")
            blob += frame
        return blob, kinds, 14

    def bpf(self, family: int, saddr: str) -> str:
        """Kernel filter for replies: to our cookie source ports, and ICMP."""
        from ._ext.cookie import SOURCE_PORT_RANGE
        low, high = SOURCE_PORT_RANGE
        if self.source_port:                # -g: every reply comes back to that one port
            low = high = self.source_port
        if "arp" in self.protos:    # ARP replies (operation 2) for our address
            return f"arp and arp[6:2] == 2 and arp[24:4] == {int(ipaddress.IPv4Address(saddr)):#x}"
        ip = "ip" if family == 4 else "ip6"
        if "ip" in self.protos:             # -sO: a reply may come in any protocol (as nmap's filter)
            return f"{ip} dst host {saddr}"
        parts = ["icmp" if family == 4 else "icmp6"]
        if "tcp" in self.protos:
            # IPv4 lets the kernel drop our own outgoing probes (no ACK/RST) as well.
            flags = " and tcp[13] & 0x14 != 0" if family == 4 else ""
            parts.append(f"(tcp dst portrange {low}-{high}{flags})")
        if "udp" in self.protos:
            parts.append(f"(udp dst portrange {low}-{high})")
        from .protocols import PROTOCOLS
        parts += [unit.bpf_clause(low, high) for proto, unit in PROTOCOLS.items() if proto in self.protos]
        return f"{ip} dst host {saddr} and ({' or '.join(parts)})"


def icmp_type(technique: Technique, family: int) -> int:
    if technique.proto != "icmp":
        return 0
    if family == 6 and technique.icmp_type != ICMP_ECHO:
        raise InputError(f"{technique.flag} ({technique.name}) has no IPv6 form: use -PE for IPv6")
    return ICMP6_ECHO if family == 6 else technique.icmp_type


def template(technique: Technique, payload: bytes, family: int, src_mac: bytes, dst_mac: bytes,
             saddr: bytes, ttl: int = 64, padding: bytes = b"", sport: int = 0):
    """One frame of a probe kind with the per-probe fields zero; returns (frame, offset of the
    TCP timestamp value in the frame or -1). ttl: the IP TTL (hop limit); padding: bytes
    appended to the probe (--data-length)."""
    ts_offset = -1
    if technique.proto == "arp":     # who-has <target> tell <us>, to the broadcast address
        arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src_mac, saddr, bytes(6), bytes(4))
        return b"\xff" * 6 + src_mac + b"\x08\x06" + arp, -1
    if technique.proto == "tcp":
        options = SYN_OPTIONS if technique.tcp_flags & SYN else b""
        l4 = struct.pack("!HHIIBBHHH", sport, 0, 0, 0, ((20 + len(options)) // 4) << 4, technique.tcp_flags,
                         64240 if technique.tcp_flags & SYN else 1024, 0, 0) + options
    elif technique.proto == "udp":
        l4 = struct.pack("!HHHH", sport, 0, 8 + len(payload), 0) + payload
    elif technique.proto == "sctp":
        from .protocols import PROTOCOLS
        l4 = PROTOCOLS[technique.proto].template_l4(technique, sport)
    elif technique.proto == "ip":
        from .protocols import ipproto
        l4 = ipproto.template_l4(payload[0], family, sport)
    else:
        kind = icmp_type(technique, family)
        body = bytes(12) if kind == ICMP_TIMESTAMP else bytes(4) + b"scanner!"   # cookie in the first 4
        l4 = struct.pack("!BBHHH", kind, 0, 0, 0, 0) + body
    if padding and technique.proto == "udp":
        l4 = l4[:4] + struct.pack("!H", len(l4) + len(padding)) + l4[6:]
    l4 += padding
    proto = technique.ip_proto(family) if technique.proto != "ip" else ipproto.kind_fields(payload[0], family)[0]
    if family == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0, ttl, proto, 0, saddr, bytes(4))
        ethertype = b"\x08\x00"
    else:
        ip = struct.pack("!IHBB16s16s", 0x60000000, len(l4), proto, ttl, saddr, bytes(16))
        ethertype = b"\x86\xdd"
    eth = dst_mac + src_mac + ethertype
    if technique.proto == "tcp" and technique.tcp_flags & SYN:
        ts_offset = len(eth) + len(ip) + 20 + SYN_TSVAL_OFFSET
    return eth + ip + l4, ts_offset
