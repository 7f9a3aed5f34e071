# cython: language_level=3
"""SipHash-2-4 and the probe cookie: a keyed hash of (source, destination, destination port)
that a genuine reply must echo. Inline so that the builder and the parser share one definition."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t


cdef inline uint64_t _rotl(uint64_t x, int b) noexcept nogil:
    return (x << b) | (x >> (64 - b))


cdef inline void _sipround(uint64_t* v) noexcept nogil:
    v[0] += v[1]; v[1] = _rotl(v[1], 13); v[1] ^= v[0]; v[0] = _rotl(v[0], 32)
    v[2] += v[3]; v[3] = _rotl(v[3], 16); v[3] ^= v[2]
    v[0] += v[3]; v[3] = _rotl(v[3], 21); v[3] ^= v[0]
    v[2] += v[1]; v[1] = _rotl(v[1], 17); v[1] ^= v[2]; v[2] = _rotl(v[2], 32)


cdef inline uint64_t _load_le(const uint8_t* p, int n) noexcept nogil:
    cdef uint64_t m = 0
    cdef int i
    for i in range(n):
        m |= (<uint64_t>p[i]) << (8 * i)
    return m


cdef inline uint64_t siphash24(uint64_t k0, uint64_t k1, const uint8_t* data, int length) noexcept nogil:
    """SipHash-2-4 of `length` bytes, key (k0, k1) as the little-endian halves of the 16-byte key."""
    cdef uint64_t v[4]
    cdef uint64_t m
    cdef int i, tail
    v[0] = k0 ^ 0x736f6d6570736575ULL
    v[1] = k1 ^ 0x646f72616e646f6dULL
    v[2] = k0 ^ 0x6c7967656e657261ULL
    v[3] = k1 ^ 0x7465646279746573ULL
    i = 0
    while i + 8 <= length:
        m = _load_le(data + i, 8)
        v[3] ^= m
        _sipround(v); _sipround(v)
        v[0] ^= m
        i += 8
    tail = length - i
    m = _load_le(data + i, tail) | ((<uint64_t>(length & 0xff)) << 56)
    v[3] ^= m
    _sipround(v); _sipround(v)
    v[0] ^= m
    v[2] ^= 0xff
    _sipround(v); _sipround(v); _sipround(v); _sipround(v)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


cdef inline uint64_t cookie_v4(uint64_t k0, uint64_t k1, uint32_t saddr, uint32_t daddr,
                               uint16_t dport) noexcept nogil:
    """The cookie of an IPv4 probe from saddr to daddr:dport (addresses and port as host-order
    ints; dport is 0 for ICMP probes). Its low 32 bits go where a reply echoes a sequence number
    (TCP seq, ICMP timestamp, UDP payloads of protocols that echo a request id), bits 32..46 pick
    the source port, bits 0..15 the ICMP id, bits 48..63 the IPv4 id, bits 44..63 the IPv6 flow
    label (both quoted back in ICMP errors)."""
    cdef uint8_t msg[10]
    msg[0] = saddr >> 24; msg[1] = saddr >> 16; msg[2] = saddr >> 8; msg[3] = saddr
    msg[4] = daddr >> 24; msg[5] = daddr >> 16; msg[6] = daddr >> 8; msg[7] = daddr
    msg[8] = dport >> 8; msg[9] = dport
    return siphash24(k0, k1, msg, 10)


cdef inline uint64_t cookie_v6(uint64_t k0, uint64_t k1, const uint8_t* saddr, const uint8_t* daddr,
                               uint16_t dport) noexcept nogil:
    """The cookie of an IPv6 probe; addresses as 16 bytes in network order."""
    cdef uint8_t msg[34]
    cdef int i
    for i in range(16):
        msg[i] = saddr[i]
        msg[16 + i] = daddr[i]
    msg[32] = dport >> 8; msg[33] = dport
    return siphash24(k0, k1, msg, 34)


# Source ports carry 15 bits of the cookie, in the upper half of the port space.
cdef enum:
    SPORT_BASE = 32768
    SPORT_MASK = 0x7fff

cdef inline uint16_t cookie_sport(uint64_t c) noexcept nogil:
    return <uint16_t>(SPORT_BASE + ((c >> 32) & SPORT_MASK))

cdef inline uint32_t cookie_seq(uint64_t c) noexcept nogil:
    return <uint32_t>c

cdef inline uint32_t cookie_flow(uint64_t c) noexcept nogil:
    return <uint32_t>(c >> 44) & 0xfffff
