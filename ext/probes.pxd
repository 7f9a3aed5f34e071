# cython: language_level=3
"""Probe kinds and how one probe is written into a frame: the kind's template is copied, then
only addresses, ports, cookie, timestamp and checksums are filled in."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int16_t, int32_t
from libc.string cimport memcpy
from checksum cimport get16, put16, put32, csum_add, csum_fold, ipv4_header_checksum
from checksum cimport get32
from cookie cimport cookie_sport, cookie_seq, cookie_flow
from codes cimport RK_COUNT
from sctp cimport PROTO_SCTP, sctp_write

cdef enum:
    TCP_FIN = 0x01
    TCP_SYN = 0x02
    TCP_RST = 0x04
    TCP_PSH = 0x08
    TCP_ACK = 0x10
    TCP_URG = 0x20
    PROTO_ARP = 0             # not an IP protocol: ARP requests for host discovery on the link
    PROTO_ICMP = 1
    PROTO_TCP = 6
    PROTO_UDP = 17
    PROTO_ICMP6 = 58
    ICMP_ECHO = 8
    ICMP_TIMESTAMP = 13
    ICMP6_ECHO = 128

# Where a reply echoes the cookie bytes of a UDP payload (ProbeKind.ck_echo), besides an offset.
cdef enum:
    ECHO_NONE = -1            # the protocol echoes nothing (or the port has no payload)
    ECHO_SNMP = -2            # the request-id of an SNMP response (a BER INTEGER, any length)

# One entry per probe kind; scanner/techniques.py builds the same layout (PROBE_KIND_DTYPE).
cdef packed struct ProbeKind:
    uint8_t proto             # PROTO_*
    uint8_t tcp_flags
    uint8_t icmp_type
    uint8_t ck_len            # UDP: bytes of the payload that carry the cookie (0, 2 or 4)
    int32_t offset            # of its template frame in the template blob
    int32_t length            # of the frame
    int32_t ts_offset         # of the TCP timestamp value in the frame, or -1
    int16_t ck_at             # UDP: where those bytes are in the payload
    int16_t ck_echo           # UDP: where a reply's payload echoes them, or ECHO_*
    uint8_t table[RK_COUNT]   # reply kind -> port state (0: not a reply to this kind)
    uint8_t ip_scan           # -sO: the slot's port is the protocol; the template has its own port


cdef inline uint32_t payload_cookie(const ProbeKind* k, uint64_t c) noexcept nogil:
    """The cookie bits a UDP payload carries (the low 32 bits of the cookie, which UDP does not
    use otherwise). SNMP: a positive request-id whose 4-byte BER form is minimal (bits 31-30: 01)."""
    if k.ck_echo == ECHO_SNMP:
        return 0x40000000 | (<uint32_t>c & 0x3fffffff)
    if k.ck_len == 2:
        return <uint32_t>c & 0xffff
    return <uint32_t>c


cdef inline int write_probe(uint8_t* frame, const uint8_t* templates, const ProbeKind* k, int l2_len,
                            int family, uint32_t daddr4, const uint8_t* daddr6, uint16_t dport,
                            uint16_t slot, uint64_t c, uint32_t tsval) noexcept nogil:
    """Writes the probe of kind k to (daddr, dport) into frame; returns the frame length."""
    cdef uint8_t* ip = frame + l2_len
    cdef uint8_t* l4
    cdef int l4_len, i
    cdef uint64_t pseudo = 0
    cdef uint16_t sum
    memcpy(frame, templates + k.offset, k.length)
    if k.proto == PROTO_ARP and not k.ip_scan:       # who-has daddr: only the target address varies
        put32(frame + l2_len + 24, daddr4)
        return k.length
    if family == 4:
        l4 = ip + 20
        l4_len = k.length - l2_len - 20
        put16(ip + 4, <uint16_t>(c >> 48))           # IP id: varied, like a real stack's
        put32(ip + 16, daddr4)
        put16(ip + 10, ipv4_header_checksum(ip))
        if k.proto != PROTO_ICMP:                    # ICMPv4 has no pseudo-header
            pseudo = csum_add(0, ip + 12, 8) + k.proto + <uint64_t>l4_len
    else:
        l4 = ip + 40
        l4_len = k.length - l2_len - 40
        memcpy(ip + 24, daddr6, 16)
        put32(ip, 0x60000000 | cookie_flow(c))       # flow label: quoted back in ICMPv6 errors
        pseudo = csum_add(0, ip + 8, 32) + k.proto + <uint64_t>l4_len
    if k.ip_scan and (k.proto == PROTO_TCP or k.proto == PROTO_UDP or k.proto == PROTO_SCTP):
        dport = get16(l4 + 2)                        # -sO: nmap's fixed port; the slot names the protocol
    if k.proto == PROTO_TCP:
        if get16(l4) == 0:                           # else -g: the template's fixed source port
            put16(l4, cookie_sport(c))
        put16(l4 + 2, dport)
        put32(l4 + 4, cookie_seq(c))
        if k.tcp_flags & TCP_ACK:
            put32(l4 + 8, cookie_seq(c))             # a RST to an ACK echoes our ack as its seq
        if k.ts_offset >= 0:
            put32(frame + k.ts_offset, tsval)
        sum = csum_fold(csum_add(pseudo, l4, l4_len))
        put16(l4 + 16, sum)
    elif k.proto == PROTO_UDP:
        if get16(l4) == 0:
            put16(l4, cookie_sport(c))
        put16(l4 + 2, dport)
        if k.ck_len == 4:                            # cookie bits where the protocol echoes them
            put32(l4 + 8 + k.ck_at, payload_cookie(k, c))
        elif k.ck_len == 2:
            put16(l4 + 8 + k.ck_at, <uint16_t>payload_cookie(k, c))
        sum = csum_fold(csum_add(pseudo, l4, l4_len))
        put16(l4 + 6, sum if sum else 0xffff)
    elif k.proto == PROTO_SCTP:                      # CRC32c, no pseudo-header
        sctp_write(l4, l4_len, dport, c)
    elif k.proto == PROTO_ICMP or k.proto == PROTO_ICMP6:     # echo or timestamp request
        put16(l4 + 4, <uint16_t>c)                   # identifier
        put16(l4 + 6, slot)                          # sequence: which slot this probe is
        put32(l4 + 8, cookie_seq(c))                 # echoed back: payload / originate time
        sum = csum_fold(csum_add(pseudo, l4, l4_len))
        put16(l4 + 2, sum)
    return k.length


# --traceroute: the TTL of a hop-limited probe rides in a field that both the target's reply and a
# router's time-exceeded quote carry back, added to the cookie's value there (the parser subtracts
# it: ReplyParser.parse_trace). At most TRACE_MAX_TTL hops.
cdef enum:
    TRACE_MAX_TTL = 64
    TRACE_SPORT_BASE = 32768
    TRACE_SPORT_MASK = 0x7fff


cdef inline void limit_hops(uint8_t* frame, const ProbeKind* k, int l2_len, int family, uint8_t ttl) noexcept nogil:
    """Turns a probe written by write_probe into a hop-limited one: IP TTL (hop limit) ttl, and ttl
    added to the TCP sequence number (and ack), the UDP source port (within the cookie's port
    range) or the ICMP identifier; checksums redone."""
    cdef uint8_t* ip = frame + l2_len
    cdef uint8_t* l4
    cdef int l4_len
    cdef uint64_t pseudo = 0
    cdef uint16_t sum
    if family == 4:
        l4 = ip + 20
        l4_len = k.length - l2_len - 20
        ip[8] = ttl
        put16(ip + 10, 0)
        put16(ip + 10, ipv4_header_checksum(ip))
        if k.proto != PROTO_ICMP:
            pseudo = csum_add(0, ip + 12, 8) + k.proto + <uint64_t>l4_len
    else:
        l4 = ip + 40
        l4_len = k.length - l2_len - 40
        ip[7] = ttl
        pseudo = csum_add(0, ip + 8, 32) + k.proto + <uint64_t>l4_len
    if k.proto == PROTO_TCP:
        put32(l4 + 4, get32(l4 + 4) + ttl)
        if k.tcp_flags & TCP_ACK:
            put32(l4 + 8, get32(l4 + 8) + ttl)
        put16(l4 + 16, 0)
        put16(l4 + 16, csum_fold(csum_add(pseudo, l4, l4_len)))
    elif k.proto == PROTO_UDP:
        put16(l4, <uint16_t>(TRACE_SPORT_BASE + ((get16(l4) - TRACE_SPORT_BASE + ttl) & TRACE_SPORT_MASK)))
        put16(l4 + 6, 0)
        sum = csum_fold(csum_add(pseudo, l4, l4_len))
        put16(l4 + 6, sum if sum else 0xffff)
    elif k.proto == PROTO_ICMP or k.proto == PROTO_ICMP6:
        put16(l4 + 4, <uint16_t>(get16(l4 + 4) + ttl))
        put16(l4 + 2, 0)
        put16(l4 + 2, csum_fold(csum_add(pseudo, l4, l4_len)))
