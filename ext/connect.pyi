"""Typed stub for scanner._ext.connect (see ext/connect.pyx): the connect scan's socket loop."""

import numpy as np
import numpy.typing as npt

__all__ = ["ConnectLoop", "TIMED_OUT"]

TIMED_OUT: int

class ConnectLoop:
    """Up to `capacity` non-blocking connections in flight on one epoll (GIL released)."""

    def __init__(self, capacity: int) -> None: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def room(self) -> int: ...
    def start(self, addrs: npt.NDArray[np.uint8], tags: npt.NDArray[np.int64], ipv6: bool) -> int:
        """Opens connections to the (n, 28) sockaddr rows in order while there is room; returns
        how many rows were used."""
    def poll(self, wait: float, timeout: float) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32],
                                                         npt.NDArray[np.float64]]:
        """(tags, errno or 0 or TIMED_OUT, round trips in seconds) of the verdicts so far."""
