"""The scan's index space on the Python side: index = host_number * n_ports + port_number.
Mirrors ext/space.pxd, for the few places Python needs it (dry runs, unanswered probes)."""
from __future__ import annotations

import numpy as np

from .targets import TargetSet


class ScanSpace:
    def __init__(self, targets: TargetSet, ports: np.ndarray):
        self.targets = targets
        self.starts = np.ascontiguousarray(targets.starts, dtype=np.uint32)
        sizes = targets.ends.astype(np.uint64) - self.starts + np.uint64(1)
        self.cum = np.concatenate(([0], np.cumsum(sizes))).astype(np.uint64)
        self.ports = np.ascontiguousarray(ports, dtype=np.uint16)
        self.port_index = np.full(65536, -1, dtype=np.int32)
        self.port_index[self.ports] = np.arange(len(self.ports), dtype=np.int32)
        self.n_hosts = int(self.cum[-1])
        self.size = self.n_hosts * len(self.ports)

    def arrays(self):
        """What the compiled sender and parser take: starts, cum, ports, port_index."""
        return self.starts, self.cum, self.ports, self.port_index

    def locate(self, indices: np.ndarray):
        """(addresses as uint32, ports as uint16) of the given indices."""
        indices = np.asarray(indices, dtype=np.uint64)
        n_ports = np.uint64(len(self.ports))
        host = indices // n_ports
        interval = np.searchsorted(self.cum, host, side="right") - 1
        addrs = (self.starts[interval].astype(np.uint64) + host - self.cum[interval]).astype(np.uint32)
        return addrs, self.ports[(indices % n_ports).astype(np.int64)]
