"""Typed stub for scanner._ext.permutation (see ext/permutation.pyx)."""

import numpy as np
import numpy.typing as npt

__all__ = ["Permutation"]

class Permutation:
    """Keyed pseudo-random bijection of range(n), 1 <= n < 2**64.

    Shard k of N (1-based, like ``masscan --shard k/N``) visits positions
    k-1, k-1+N, k-1+2N, ... of the same permutation: ``fill(k - 1, count, step=N)``.
    """

    def __init__(self, n: int, seed: int) -> None: ...
    @property
    def n(self) -> int: ...
    @property
    def seed(self) -> int:
        """The seed reduced mod 2**64."""
    def at(self, i: int) -> int:
        """The i-th element; raises IndexError unless 0 <= i < n."""
    def fill(self, start: int, count: int, step: int = 1) -> npt.NDArray[np.uint64]:
        """at(start + j*step) for j in range(count), stopping before position n."""
    def positions(self, indices: npt.ArrayLike) -> npt.NDArray[np.uint64]:
        """The inverse: the positions of the given elements (each < n)."""
    def __reduce__(self) -> tuple[type[Permutation], tuple[int, int]]: ...
