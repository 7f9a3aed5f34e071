"""Protocol units: each module holds one protocol's techniques, probe template and BPF clause;
its compiled half (the per-probe write and the reply classifier) is ext/<name>.pxd. TCP, UDP,
ICMP and ARP still live in scanner/techniques.py and ext/probes.pxd; SCTP (-sY, -sZ) and the IP
protocol scan (-sO, ipproto) are units.

PROTOCOLS maps a Technique.proto to a unit that writes its probes' transport header
(template_l4) and filters its replies (bpf_clause). ipproto is not among them: its probes are
each protocol's own, and its filter takes everything addressed to us (techniques.Probes.bpf)."""
from __future__ import annotations

from . import sctp

PROTOCOLS = {"sctp": sctp}
