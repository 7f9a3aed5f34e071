# cython: language_level=3
"""Python view of the probe cookie, for tests and for Python code that must agree with the hot path."""
from libc.stdint cimport uint8_t, uint64_t
from cookie cimport siphash24 as _siphash24, cookie_v4, cookie_sport, cookie_seq, SPORT_BASE, SPORT_MASK

SOURCE_PORT_RANGE = (SPORT_BASE, SPORT_BASE + SPORT_MASK)


def split_key(bytes key):
    """The 16-byte SipHash key as its two little-endian 64-bit halves."""
    if len(key) != 16:
        raise ValueError("the cookie key is 16 bytes")
    return int.from_bytes(key[:8], "little"), int.from_bytes(key[8:], "little")


def siphash24(bytes key, bytes data):
    k0, k1 = split_key(key)
    return _siphash24(k0, k1, <const uint8_t*>data, len(data))


def probe_cookie(bytes key, unsigned int saddr, unsigned int daddr, unsigned short dport):
    """(sequence number, source port) of the probe saddr -> daddr:dport."""
    k0, k1 = split_key(key)
    cdef uint64_t c = cookie_v4(k0, k1, saddr, daddr, dport)
    return cookie_seq(c), cookie_sport(c)
