"""Typed stub for scanner._ext.parser (see ext/parser.pyx): captured frames -> result rows."""

import numpy as np
import numpy.typing as npt

__all__ = ["RESULT_DTYPE", "TRACE_DTYPE", "STATES", "REASONS", "REPLY_KINDS", "ReplyParser"]

RESULT_DTYPE: np.dtype
"""One result: index, ip, ip6, port, proto, state, reason, ttl and the SYN-ACK's fingerprint fields."""
TRACE_DTYPE: np.dtype
"""--traceroute: index, ttl (the probe's hop limit), final (the target answered), hop, hop6, time."""
STATES: dict[str, int]
REASONS: dict[str, int]
REPLY_KINDS: dict[str, int]

class ReplyParser:
    """Parses captured frames for one scan: bounds-checked headers, the cookie check, the probe
    kind's table from reply kind to state."""

    bad_cookie: int
    source_port: int        # -g: the probes' fixed source port (0: the cookie's)
    data_length: int        # --data-length: RSTs may acknowledge the probe's data as well
    not_in_scan: int
    parsed: int
    forged: int
    """Replies that echoed the source-port cookie but not the rest (UDP): suspected forgeries."""
    def __init__(self, k0: int, k1: int, saddr: bytes, l2_len: int, kinds: npt.NDArray[np.void],
                 space: dict, templates: bytes, template_l2_len: int = 14) -> None:
        """templates, template_l2_len: what the sender was given (Probes.compile()): ICMP errors
        quoting a UDP probe are compared with the probe rebuilt."""
    def parse_trace(self, data: bytes | npt.NDArray[np.uint8], meta: bytes | npt.NDArray[np.uint8]) -> npt.NDArray[np.void]:
        """--traceroute: answers to hop-limited probes (time-exceeded quotes, the target's replies)."""
    def parse(self, data: bytes | npt.NDArray[np.uint8], meta: bytes | npt.NDArray[np.uint8]) -> npt.NDArray[np.void]:
        """data, meta: what pcapy's next_batch() returned; the genuine replies as RESULT_DTYPE rows."""
