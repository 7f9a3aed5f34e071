"""Typed stub for scanner._ext.sender (see ext/sender.pyx): probes written and sent in batches."""

import numpy as np
import numpy.typing as npt

__all__ = ["ProbeSender"]

class ProbeSender:
    """Sends the probes of a scan for positions of its permutation (sendmmsg, GIL released,
    paced by a token bucket)."""

    sent: int
    def __init__(self, ifname: str | None, l3: bool, l2_len: int, templates: bytes, kinds: npt.NDArray[np.void],
                 k0: int, k1: int, saddr: bytes, space: dict, seed: int, rate: float) -> None: ...
    @property
    def path(self) -> str:
        """"packet" (scanner._ext.xdp.XdpSender says "xdp")."""
    def close(self) -> None:
        """Releases the socket (also done when the sender is collected); the GIL is released
        meanwhile (the kernel waits for an RCU grace period)."""
    def set_rate(self, rate: float) -> None:
        """Packets per second from now on (0: as fast as possible)."""
    def send(self, position: int, stop: int, step: int, max_probes: int,
             answered: npt.NDArray[np.uint8] | None = None) -> int:
        """Sends probes for positions position, position+step, ... < stop, skipping those whose
        bit (position // step: a bitmap over this shard's probes) is set in answered, until
        max_probes were sent; returns the next position."""
    def send_indices(self, indices: npt.NDArray[np.uint64]) -> None:
        """Sends the probes of these indices, in order, paced like send()."""
    def send_hop_limited(self, indices: npt.NDArray[np.uint64], ttls: npt.NDArray[np.uint8]) -> None:
        """--traceroute: the probes of these indices with these hop limits (1..64), in order,
        the hop limit also added to the field a reply or a time-exceeded quote carries back."""
    def build_hop_limited(self, index: int, ttl: int) -> bytes:
        """The frame send_hop_limited writes for an index and hop limit (tests, debugging)."""
    def build(self, index: int, tsval: int = 0) -> bytes:
        """The frame the send loop writes for an index (tests, debugging)."""
