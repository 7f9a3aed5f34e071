"""Typed stub for scanner._ext.xdp (see ext/xdp.pyx)."""

import numpy as np
import numpy.typing as npt

__all__ = ["XdpSender"]

class XdpSender:
    """Sends a scan's probes through an AF_XDP socket (copy mode, queue 0): the same frames,
    pacing and cookies as scanner._ext.sender.ProbeSender. Raises OSError where the kernel or
    the interface cannot do AF_XDP."""

    zerocopy: bool
    sent: int
    kicks: int

    def __init__(self, ifname: str, l2_len: int, templates: bytes, kinds: npt.NDArray[np.void], k0: int,
                 k1: int, saddr: bytes, space: dict, seed: int, rate: float) -> None: ...
    @property
    def path(self) -> str:
        """"xdp"."""
    def close(self) -> None: ...
    def set_rate(self, rate: float) -> None:
        """Packets per second; 0 means as fast as possible."""
    def send(self, position: int, stop: int, step: int, max_probes: int,
             answered: npt.NDArray[np.uint8] | None = None) -> int:
        """Sends the probes of positions position, position+step, ... < stop whose bit
        (position // step) is not set in answered, at most max_probes; returns the next position."""
    def send_indices(self, indices: npt.NDArray[np.uint64]) -> None:
        """Sends the probes of these indices, in order, paced like send()."""
    def build(self, index: int, tsval: int = 0) -> bytes:
        """The frame sent for an index."""
