"""The scan's index space on the Python side: index = host_number * n_slots + slot, where a
slot is one probe (technique, port) of scanner.techniques.Probes. Mirrors ext/space.pxd, for
the few places Python needs it (dry runs, unanswered probes)."""
from __future__ import annotations

import numpy as np

from .states import RESULT_DTYPE
from .targets import TargetSet
from .techniques import Probes


class ScanSpace:
    def __init__(self, targets: TargetSet, probes: Probes):
        self.targets = targets
        self.probes = probes
        self.family = targets.family
        if self.family == 4:
            self.starts = np.ascontiguousarray(targets.starts, dtype=np.uint32)
            sizes = targets.ends.astype(np.uint64) - self.starts + np.uint64(1)
            self.cum = np.concatenate(([0], np.cumsum(sizes))).astype(np.uint64)
            self.hosts6 = np.zeros((0, 16), dtype=np.uint8)
        else:
            self.starts = np.zeros(1, dtype=np.uint32)
            self.cum = np.zeros(2, dtype=np.uint64)
            self.hosts6 = np.ascontiguousarray(targets.hosts6)
        self.n_hosts = targets.count
        self.n_slots = probes.n_slots
        self.size = self.n_hosts * self.n_slots
        protos = {t: t.ip_proto(self.family) for t, *_ in probes.kinds}
        self.slot_proto = np.array([protos[t] for t, *_ in probes.kinds], dtype=np.uint8)[probes.slot_kind]

    def arrays(self) -> dict:
        """What the compiled sender and parser take (ext/space.pxd space_init)."""
        return {"family": self.family, "starts": self.starts, "cum": self.cum, "hosts6": self.hosts6,
                "n_hosts": self.n_hosts, "slot_port": self.probes.slot_port,
                "slot_kind": self.probes.slot_kind, "tcp_slot": self.probes.tcp_slot,
                "udp_slot": self.probes.udp_slot, "sctp_slot": self.probes.sctp_slot, "ip_slot": self.probes.ip_slot,
                "arp_slot": self.probes.arp_slot}

    def locate(self, indices: np.ndarray):
        """(host numbers, slots) of the given indices."""
        indices = np.asarray(indices, dtype=np.uint64)
        n_slots = np.uint64(self.n_slots)
        host = indices // n_slots
        return host, (indices - host * n_slots).astype(np.int64)

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """RESULT_DTYPE rows (address, port, proto filled in) for the given indices."""
        host, slot = self.locate(indices)
        rows = np.zeros(len(host), dtype=RESULT_DTYPE)
        rows["index"] = indices
        if self.family == 4:
            interval = np.searchsorted(self.cum, host, side="right") - 1
            rows["ip"] = (self.starts[interval].astype(np.uint64) + host - self.cum[interval]).astype(np.uint32)
        else:
            rows["ip6"] = self.hosts6[host.astype(np.int64)]
        rows["port"] = self.probes.slot_port[slot]
        rows["proto"] = self.slot_proto[slot]
        return rows
