"""Typed stub for scanner._ext.constants (see ext/constants.pyx): constants shared with the compiled path."""

import numpy as np

__all__ = ["TCP_FLAGS", "PROTOCOLS", "ICMP_TYPES", "ECHOES", "PROBE_KIND_DTYPE"]

TCP_FLAGS: dict[str, int]
PROTOCOLS: dict[str, int]
ICMP_TYPES: dict[str, int]
ECHOES: dict[str, int]
"""ProbeKind.ck_echo values besides an offset: none (nothing echoed), snmp (the SNMP request-id)."""
PROBE_KIND_DTYPE: np.dtype
"""One probe kind (ext/probes.pxd ProbeKind): proto, tcp_flags, icmp_type, ck_len, offset, length, ts_offset,
ck_at, ck_echo, table, ip_scan (-sO)."""
