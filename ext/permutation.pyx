# cython: language_level=3
"""Keyed pseudo-random bijection over [0, n): the scan order.

Python facade over the inline C API in ``ext/permutation.pxd`` (a Feistel
network with cycle walking, see there).  ``Permutation(n, seed).at(i)`` for
``i`` in ``range(n)`` yields every integer of ``range(n)`` exactly once, in an
order fixed by ``seed`` (any int, taken mod 2**64).  ``n`` may be anything from
1 to 2**64 - 1; nothing of size ``n`` is ever stored.

Sharding convention (same as ``masscan --shard k/N``): shard ``k`` of ``N``
(1-based, ``1 <= k <= N``) walks positions ``k-1, k-1+N, k-1+2N, ...`` of the
*same* permutation (same ``n``, same ``seed``), i.e.
``perm.fill(k - 1 + j * N, count, step=N)`` for its successive batches.  Every
position belongs to exactly one shard, so the shards are pairwise disjoint and
together visit the whole index space.  All shards must agree on ``n`` and
``seed``.

Cython modules should not go through this class: cimport ``Permutation``,
``permutation_init`` and ``permutation_at`` from ``permutation`` (the .pxd)
and call them directly, without the GIL.
"""

import operator

import numpy as np

from libc.stdint cimport uint64_t

# The module is built as scanner._ext.permutation, so its .pxd (found through
# the include path) is not picked up implicitly: cimport it, renaming the C
# struct so that the Python class can be called Permutation.
from permutation cimport Permutation as CPermutation, permutation_init, permutation_at, permutation_position

__all__ = ["Permutation"]

cdef object _U64 = 1 << 64


cdef class Permutation:
    """Permutation(n, seed): pseudo-random bijection of range(n), keyed by seed."""

    cdef CPermutation _p
    cdef object _n
    cdef object _seed

    def __init__(self, n, seed):
        n = operator.index(n)
        seed = operator.index(seed) % _U64
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if n >= _U64:
            raise ValueError(f"n must be < 2**64, got {n}")
        self._n = n
        self._seed = seed
        permutation_init(&self._p, <uint64_t>n, <uint64_t>seed)

    @property
    def n(self):
        """Size of the permuted range [0, n)."""
        return self._n

    @property
    def seed(self):
        """Seed, reduced mod 2**64."""
        return self._seed

    def at(self, i):
        """Return the i-th element of the permutation (0 <= i < n)."""
        i = operator.index(i)
        if i < 0 or i >= self._n:
            raise IndexError(f"permutation index {i} out of range [0, {self._n})")
        return permutation_at(&self._p, <uint64_t>i)

    def fill(self, start, count, step=1):
        """Return ``[at(start + j*step) for j in range(count)]`` as a uint64 array.

        Stops early at the end of the permutation: positions >= n are not
        produced, so the result may be shorter than ``count`` (empty if
        ``start >= n``).  ``start >= 0``, ``count >= 0``, ``step >= 1``.
        """
        start = operator.index(start)
        count = operator.index(count)
        step = operator.index(step)
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if step < 1:
            raise ValueError(f"step must be >= 1, got {step}")
        cdef Py_ssize_t m = 0
        if start < self._n:
            m = min(count, (self._n - 1 - start) // step + 1)
        out = np.empty(m, dtype=np.uint64)
        if m == 0:
            return out
        cdef uint64_t[::1] view = out
        cdef uint64_t pos = <uint64_t>start
        # With m == 1 the step is never used; it may then exceed 64 bits.
        cdef uint64_t cstep = <uint64_t>(step if m > 1 else 1)
        cdef Py_ssize_t j
        cdef CPermutation* p = &self._p
        with nogil:
            for j in range(m):
                view[j] = permutation_at(p, pos)
                pos += cstep
        return out

    def positions(self, indices):
        """The positions of the given elements (a uint64 array): ``at(positions(x)[j]) == x[j]``.
        Every element must be < n."""
        idx = np.ascontiguousarray(indices, dtype=np.uint64)
        out = np.empty(len(idx), dtype=np.uint64)
        if len(idx) and int(idx.max()) >= self._n:
            raise IndexError(f"permutation element out of range [0, {self._n})")
        cdef const uint64_t[::1] src = idx
        cdef uint64_t[::1] dst = out
        cdef Py_ssize_t j
        cdef CPermutation* p = &self._p
        with nogil:
            for j in range(len(src)):
                dst[j] = permutation_position(p, src[j])
        return out

    def __reduce__(self):
        return (Permutation, (self._n, self._seed))

    def __repr__(self):
        return f"Permutation(n={self._n}, seed={self._seed})"

