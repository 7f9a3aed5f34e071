# cython: language_level=3
"""Internet checksums (RFC 1071) over frames in network byte order."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t


cdef inline uint64_t csum_add(uint64_t acc, const uint8_t* p, int n) noexcept nogil:
    cdef int i = 0
    while i + 1 < n:
        acc += (<uint64_t>p[i] << 8) | p[i + 1]
        i += 2
    if i < n:
        acc += <uint64_t>p[i] << 8
    return acc


cdef inline uint16_t csum_fold(uint64_t acc) noexcept nogil:
    while acc >> 16:
        acc = (acc & 0xffff) + (acc >> 16)
    return <uint16_t>(~acc & 0xffff)


cdef inline uint16_t ipv4_header_checksum(const uint8_t* ip) noexcept nogil:
    return csum_fold(csum_add(0, ip, (ip[0] & 0x0f) * 4))


cdef inline uint16_t ipv4_l4_checksum(const uint8_t* ip, const uint8_t* l4, int l4_len, uint8_t proto) noexcept nogil:
    """Checksum of a TCP/UDP segment with the IPv4 pseudo-header (checksum field must be zero)."""
    cdef uint64_t acc = csum_add(0, ip + 12, 8)
    acc += proto
    acc += <uint64_t>l4_len
    return csum_fold(csum_add(acc, l4, l4_len))


cdef inline void put16(uint8_t* p, uint16_t v) noexcept nogil:
    p[0] = v >> 8; p[1] = v & 0xff

cdef inline void put32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = v >> 24; p[1] = (v >> 16) & 0xff; p[2] = (v >> 8) & 0xff; p[3] = v & 0xff

cdef inline uint16_t get16(const uint8_t* p) noexcept nogil:
    return (<uint16_t>p[0] << 8) | p[1]

cdef inline uint32_t get32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]
