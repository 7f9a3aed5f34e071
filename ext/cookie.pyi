"""Typed stub for scanner._ext.cookie (see ext/cookie.pyx): the probe cookie as the hot path computes it."""

__all__ = ["SOURCE_PORT_RANGE", "split_key", "siphash24", "probe_cookie"]

SOURCE_PORT_RANGE: tuple[int, int]
"""The source ports cookies are drawn from (first, last)."""

def split_key(key: bytes) -> tuple[int, int]:
    """The 16-byte SipHash key as its two little-endian 64-bit halves; ValueError otherwise."""
def siphash24(key: bytes, data: bytes) -> int: ...
def probe_cookie(key: bytes, saddr: int, daddr: int, dport: int) -> tuple[int, int]:
    """(sequence number, source port) of the IPv4 probe saddr -> daddr:dport."""
