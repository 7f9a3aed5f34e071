"""Protocol units: each module holds one protocol's techniques, probe template and BPF clause;
its compiled half (the per-probe write and the reply classifier) is ext/<name>.pxd. TCP, UDP,
ICMP and ARP still live in scanner/techniques.py and ext/probes.pxd; SCTP is the first unit.

PROTOCOLS maps a Technique.proto to its unit (template_l4, bpf_clause)."""
from __future__ import annotations

from . import sctp

PROTOCOLS = {"sctp": sctp}
