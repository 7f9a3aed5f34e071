"""Typed stub for scanner._ext.parser (see ext/parser.pyx): captured frames -> result rows."""

import numpy as np
import numpy.typing as npt

__all__ = ["RESULT_DTYPE", "STATES", "REASONS", "REPLY_KINDS", "ReplyParser"]

RESULT_DTYPE: np.dtype
"""One result: index, ip, ip6, port, proto, state, reason, ttl and the SYN-ACK's fingerprint fields."""
STATES: dict[str, int]
REASONS: dict[str, int]
REPLY_KINDS: dict[str, int]

class ReplyParser:
    """Parses captured frames for one scan: bounds-checked headers, the cookie check, the probe
    kind's table from reply kind to state."""

    bad_cookie: int
    not_in_scan: int
    parsed: int
    forged: int
    """Replies that echoed the source-port cookie but not the rest (UDP): suspected forgeries."""
    def __init__(self, k0: int, k1: int, saddr: bytes, l2_len: int, kinds: npt.NDArray[np.void],
                 space: dict, templates: bytes, template_l2_len: int = 14) -> None:
        """templates, template_l2_len: what the sender was given (Probes.compile()): ICMP errors
        quoting a UDP probe are compared with the probe rebuilt."""
    def parse(self, data: bytes | npt.NDArray[np.uint8], meta: bytes | npt.NDArray[np.uint8]) -> npt.NDArray[np.void]:
        """data, meta: what pcapy's next_batch() returned; the genuine replies as RESULT_DTYPE rows."""
