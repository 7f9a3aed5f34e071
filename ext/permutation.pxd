# cython: language_level=3
# Keyed pseudo-random bijection over [0, n), shared by the scan hot paths.
#
# A scan visits every position i in [0, n) of its (address x port) index space
# and maps it to permutation_at(&perm, i); the result is a random-looking order
# that covers every index exactly once, with O(1) state and no storage.
#
# Construction: a balanced Feistel network over the smallest even bit width
# 2k with 4**k >= n (k >= 1, so at least 2 bits).  Each of the
# PERMUTATION_ROUNDS rounds does (L, R) -> (R, L ^ F_r(R)) on k-bit halves,
# where F_r(R) = mix64(R ^ key_r) masked to k bits and mix64 is the splitmix64
# finalizer.  The round keys come from the seed through splitmix64.  A Feistel
# network is a bijection on [0, 4**k) whatever its round function; cycle walking
# (re-apply it while the value is >= n) turns that into a bijection on [0, n).
# The domain is < 4n, so a lookup takes fewer than 4 Feistel passes on average.
#
# Works for every 1 <= n <= 2**64 - 1 (the scanner needs up to 2**62).
# Only inline functions, an enum and a struct live here: cimport it from any
# module (`from permutation cimport Permutation, permutation_init,
# permutation_at`) and no runtime import is generated.

from libc.stdint cimport uint32_t, uint64_t

cdef enum:
    PERMUTATION_ROUNDS = 6

ctypedef struct Permutation:
    uint64_t n                          # size of the permuted range [0, n)
    uint64_t seed                       # seed the round keys were derived from
    uint32_t half_bits                  # k: bits per Feistel half, domain is [0, 4**k)
    uint64_t half_mask                  # (1 << k) - 1
    uint64_t keys[PERMUTATION_ROUNDS]   # round keys


cdef inline uint64_t _permutation_mix64(uint64_t z) noexcept nogil:
    # splitmix64 finalizer (Stafford's Mix13): a strong 64-bit bijective mixer.
    z = (z ^ (z >> 30)) * <uint64_t>0xbf58476d1ce4e5b9ULL
    z = (z ^ (z >> 27)) * <uint64_t>0x94d049bb133111ebULL
    return z ^ (z >> 31)


cdef inline uint64_t _permutation_splitmix64(uint64_t* state) noexcept nogil:
    state[0] += <uint64_t>0x9e3779b97f4a7c15ULL
    return _permutation_mix64(state[0])


cdef inline uint64_t _permutation_feistel(const Permutation* p, uint64_t x) noexcept nogil:
    # One pass of the Feistel network; a bijection on [0, 4**k) (x must be < 4**k).
    cdef uint32_t k = p.half_bits
    cdef uint64_t mask = p.half_mask
    cdef uint64_t left = x >> k
    cdef uint64_t right = x & mask
    cdef uint64_t tmp
    cdef int r
    for r in range(PERMUTATION_ROUNDS):
        tmp = right
        right = left ^ (_permutation_mix64(right ^ p.keys[r]) & mask)
        left = tmp
    return (left << k) | right


cdef inline uint64_t _permutation_feistel_inverse(const Permutation* p, uint64_t x) noexcept nogil:
    # The inverse of _permutation_feistel: the rounds undone in reverse order.
    cdef uint32_t k = p.half_bits
    cdef uint64_t mask = p.half_mask
    cdef uint64_t left = x >> k
    cdef uint64_t right = x & mask
    cdef uint64_t tmp
    cdef int r
    for r in range(PERMUTATION_ROUNDS - 1, -1, -1):
        tmp = left
        left = right ^ (_permutation_mix64(left ^ p.keys[r]) & mask)
        right = tmp
    return (left << k) | right


cdef inline void permutation_init(Permutation* p, uint64_t n, uint64_t seed) noexcept nogil:
    # Set up the permutation of [0, n) selected by seed.  Requires n >= 1
    # (n == 0 is stored, but permutation_at must then never be called).
    cdef uint32_t k = 1
    cdef uint64_t state = seed
    cdef int r
    # smallest k >= 1 with n - 1 < 4**k, i.e. 4**k >= n
    while k < 32 and ((n - 1) >> (2 * k)) != 0:
        k += 1
    p.n = n
    p.seed = seed
    p.half_bits = k
    p.half_mask = (<uint64_t>1 << k) - 1
    for r in range(PERMUTATION_ROUNDS):
        p.keys[r] = _permutation_splitmix64(&state)


cdef inline uint64_t permutation_at(const Permutation* p, uint64_t i) noexcept nogil:
    # The i-th element of the permutation.  Precondition: 0 <= i < p.n (not
    # checked: an out-of-range i can loop forever).  Same (n, seed, i) always
    # gives the same result, on every platform.
    cdef uint64_t x = _permutation_feistel(p, i)
    while x >= p.n:
        x = _permutation_feistel(p, x)
    return x


cdef inline uint64_t permutation_position(const Permutation* p, uint64_t x) noexcept nogil:
    # The position of element x (0 <= x < p.n): permutation_at(p, permutation_position(p, x)) == x.
    # Cycle walking backwards: the forward walk from i passes only through values >= n before it
    # stops at x, so stepping back from x stops at the first value < n, which is i.
    cdef uint64_t i = _permutation_feistel_inverse(p, x)
    while i >= p.n:
        i = _permutation_feistel_inverse(p, i)
    return i
