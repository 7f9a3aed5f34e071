"""Typed stub for scanner._ext.constants (see ext/constants.pyx): constants shared with the compiled path."""

import numpy as np

__all__ = ["TCP_FLAGS", "PROTOCOLS", "ICMP_TYPES", "PROBE_KIND_DTYPE"]

TCP_FLAGS: dict[str, int]
PROTOCOLS: dict[str, int]
ICMP_TYPES: dict[str, int]
PROBE_KIND_DTYPE: np.dtype
"""One probe kind (ext/probes.pxd ProbeKind): proto, tcp_flags, icmp_type, offset, length, ts_offset, table."""
