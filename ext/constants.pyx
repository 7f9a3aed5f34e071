# cython: language_level=3
"""The constants Python shares with the compiled path, taken from the .pxd files that define them
(probes.pxd, codes.pxd), so that there is one definition of each: TCP flags, IP protocol numbers,
ICMP types, and the layout of a probe kind as a numpy dtype built from the C struct itself."""
import numpy as np

from probes cimport (ProbeKind, TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK, TCP_URG, PROTO_ARP, PROTO_ICMP,
                     PROTO_TCP, PROTO_UDP, PROTO_ICMP6, ICMP_ECHO, ICMP_TIMESTAMP, ICMP6_ECHO, ECHO_NONE,
                     ECHO_SNMP)
from codes cimport RK_COUNT
from sctp cimport PROTO_SCTP
from ipproto cimport PROTO_IP_SCAN

TCP_FLAGS = {"FIN": TCP_FIN, "SYN": TCP_SYN, "RST": TCP_RST, "PSH": TCP_PSH, "ACK": TCP_ACK, "URG": TCP_URG,
             "ECE": 0x40, "CWR": 0x80}
# IP protocol numbers by scanner's protocol names (ARP is not an IP protocol: 0 marks it).
PROTOCOLS = {"arp": PROTO_ARP, "icmp": PROTO_ICMP, "tcp": PROTO_TCP, "udp": PROTO_UDP, "icmpv6": PROTO_ICMP6,
             "sctp": PROTO_SCTP, "ip": PROTO_IP_SCAN}
ICMP_TYPES = {"echo": ICMP_ECHO, "timestamp": ICMP_TIMESTAMP, "echo6": ICMP6_ECHO}
# Where a UDP reply echoes its probe's payload cookie, besides an offset (ProbeKind.ck_echo).
ECHOES = {"none": ECHO_NONE, "snmp": ECHO_SNMP}

cdef ProbeKind _kind
cdef size_t _base = <size_t>&_kind


cdef size_t _at(void* field):
    return <size_t>field - _base


# One probe kind as numpy sees it: the offsets are the C struct's own, so the two cannot disagree.
PROBE_KIND_DTYPE = np.dtype({
    "names": ["proto", "tcp_flags", "icmp_type", "ck_len", "offset", "length", "ts_offset", "ck_at", "ck_echo",
              "table", "ip_scan"],
    "formats": ["u1", "u1", "u1", "u1", "<i4", "<i4", "<i4", "<i2", "<i2", ("u1", (RK_COUNT,)), "u1"],
    "offsets": [_at(&_kind.proto), _at(&_kind.tcp_flags), _at(&_kind.icmp_type), _at(&_kind.ck_len),
                _at(&_kind.offset), _at(&_kind.length), _at(&_kind.ts_offset), _at(&_kind.ck_at),
                _at(&_kind.ck_echo), _at(&_kind.table), _at(&_kind.ip_scan)],
    "itemsize": sizeof(ProbeKind),
})
