# cython: language_level=3
"""The IP protocol scan (nmap's -sO) as one unit of the compiled path. A slot names an IP
protocol (its "port" is the protocol number, which the cookie is keyed with); the probe kind
carries nmap's header for that protocol (ICMP echo, TCP ACK to port 80, UDP to port 40125, SCTP
INIT to port 80, IGMP query, else a bare IP header) with ProbeKind.ip_scan set. The Python half
is scanner/protocols/ipproto.py; the parser's reading of replies is ReplyParser._ipproto_reply and
the ip_scan cases of ReplyParser._quoted (ext/parser.pyx).

The cookie: the IPv4 id of every probe, quoted back in ICMP errors; a reply in the probed protocol
must echo the cookie where that protocol can (TCP: the RST's sequence number, our source port;
UDP: our source port; SCTP: the verification tag); other protocols have no place for one."""
from libc.stdint cimport uint8_t, uint16_t

cdef enum:
    PROTO_IP_SCAN = 255       # a result row's proto for -sO (nmap's protocol="ip"); port = protocol
    IPSCAN_TCP_PORT = 80      # nmap's DEFAULT_TCP_PROBE_PORT and DEFAULT_SCTP_PROBE_PORT
    IPSCAN_UDP_PORT = 40125   # nmap's DEFAULT_UDP_PROBE_PORT
