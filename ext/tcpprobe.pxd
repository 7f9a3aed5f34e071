# cython: language_level=3
"""Where the per-probe fields sit in a TCP probe frame, and how one probe is written into a copy
of the template: only addresses, ports, cookie, timestamp and checksums change per probe."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from checksum cimport put16, put32, ipv4_header_checksum, ipv4_l4_checksum
from cookie cimport cookie_sport, cookie_seq

cdef enum:
    TCP_FIN = 0x01
    TCP_SYN = 0x02
    TCP_RST = 0x04
    TCP_PSH = 0x08
    TCP_ACK = 0x10
    TCP_URG = 0x20


cdef inline void write_tcp_probe(uint8_t* frame, int l2_len, int tcp_len, int ts_offset, bint ack_flag,
                                 uint32_t daddr, uint16_t dport, uint64_t cookie, uint32_t tsval) noexcept nogil:
    cdef uint8_t* ip = frame + l2_len
    cdef uint8_t* tcp = ip + 20
    cdef uint32_t seq = cookie_seq(cookie)
    put16(ip + 4, <uint16_t>(cookie >> 48))          # IP id: varied, like a real stack's
    put32(ip + 16, daddr)
    ip[10] = 0; ip[11] = 0
    put16(ip + 10, ipv4_header_checksum(ip))
    put16(tcp, cookie_sport(cookie))
    put16(tcp + 2, dport)
    put32(tcp + 4, seq)
    if ack_flag:
        put32(tcp + 8, seq)                           # a RST to an ACK echoes our ack as its seq
    if ts_offset >= 0:
        put32(frame + ts_offset, tsval)
    tcp[16] = 0; tcp[17] = 0
    put16(tcp + 16, ipv4_l4_checksum(ip, tcp, tcp_len, 6))
