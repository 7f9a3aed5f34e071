"""Tests for the keyed scan-order permutation (ext/permutation.pxd / .pyx)."""
import pickle
import random

import numpy as np
import pytest

from scanner._ext.permutation import Permutation

SEEDS = [0, 1, 42, 0xDEADBEEFCAFEBABE, 2**64 - 1]

SMALL_SIZES = [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 63, 64, 65, 100, 255, 256, 257,
               1000, 1023, 1024, 1025, 4095, 4096, 4097, 65535, 65536, 65537]
RANDOM_SIZES = random.Random(20240601).sample(range(2, 200_000), 12)

M64 = 2**64 - 1


# --- pure-Python reference of the documented construction -----------------

def _mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def _reference_at(n, seed, i, rounds=6):
    k = 1
    while 4**k < n:
        k += 1
    mask = (1 << k) - 1
    state = seed % 2**64
    keys = []
    for _ in range(rounds):
        state = (state + 0x9E3779B97F4A7C15) & M64
        keys.append(_mix64(state))

    def feistel(x):
        left, right = x >> k, x & mask
        for key in keys:
            left, right = right, left ^ (_mix64(right ^ key) & mask)
        return (left << k) | right

    x = feistel(i)
    while x >= n:
        x = feistel(x)
    return x


# --- bijection ---------------------------------------------------------------

@pytest.mark.parametrize("n", SMALL_SIZES + RANDOM_SIZES)
@pytest.mark.parametrize("seed", SEEDS)
def test_bijection(n, seed):
    perm = Permutation(n, seed)
    out = perm.fill(0, n)
    assert out.dtype == np.uint64
    assert len(out) == n
    np.testing.assert_array_equal(np.sort(out), np.arange(n, dtype=np.uint64))


@pytest.mark.parametrize("n", [1, 2, 5, 100, 4097])
def test_at_matches_fill(n):
    perm = Permutation(n, 7)
    assert [perm.at(i) for i in range(n)] == perm.fill(0, n).tolist()


@pytest.mark.parametrize("n", [1, 2, 3, 17, 1000, 65537, 2**40, 2**62 - 1, 2**64 - 1])
@pytest.mark.parametrize("seed", [0, 3, 2**63 + 5])
def test_matches_reference_construction(n, seed):
    perm = Permutation(n, seed)
    idx = sorted({0, n - 1, n // 2, n // 3} | {random.Random(n ^ seed).randrange(n) for _ in range(5)})
    assert [perm.at(i) for i in idx] == [_reference_at(n, seed, i) for i in idx]


# --- keying ------------------------------------------------------------------

def test_deterministic_for_same_seed():
    a = Permutation(1_000_003, 99).fill(0, 5000)
    b = Permutation(1_000_003, 99).fill(0, 5000)
    np.testing.assert_array_equal(a, b)


def test_different_seeds_give_different_orders():
    n = 1_000_003
    outs = [Permutation(n, s).fill(0, 1000) for s in (0, 1, 2, 2**64 - 1)]
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            # essentially independent: almost no position agrees
            assert np.count_nonzero(outs[i] == outs[j]) < 10


def test_seed_is_reduced_mod_2_64():
    assert Permutation(1000, -1).seed == 2**64 - 1
    assert Permutation(1000, 2**64 + 5).seed == 5
    np.testing.assert_array_equal(Permutation(1000, -1).fill(0, 1000),
                                  Permutation(1000, 2**64 - 1).fill(0, 1000))
    np.testing.assert_array_equal(Permutation(1000, 2**64 + 5).fill(0, 1000),
                                  Permutation(1000, 5).fill(0, 1000))


# --- sharding ------------------------------------------------------------------

@pytest.mark.parametrize("shards", [1, 2, 3, 4, 7])
def test_shards_disjoint_and_complete(shards):
    n, seed = 10007, 1234
    perm = Permutation(n, seed)
    full = perm.fill(0, n)
    parts = []
    for k in range(1, shards + 1):
        part = Permutation(n, seed).fill(k - 1, n, step=shards)
        np.testing.assert_array_equal(part, full[k - 1::shards])
        parts.append(part)
    assert sum(len(p) for p in parts) == n
    sets = [set(p.tolist()) for p in parts]
    for i in range(shards):
        assert len(sets[i]) == len(parts[i])
        for j in range(i + 1, shards):
            assert sets[i].isdisjoint(sets[j])
    assert set().union(*sets) == set(range(n))


def test_shard_in_batches_equals_one_shot():
    n, shards, k = 10007, 4, 3
    perm = Permutation(n, 5)
    one_shot = perm.fill(k - 1, n, step=shards)
    batches, pos = [], k - 1
    while True:
        batch = perm.fill(pos, 100, step=shards)
        if len(batch) == 0:
            break
        batches.append(batch)
        pos += 100 * shards
    np.testing.assert_array_equal(np.concatenate(batches), one_shot)


# --- huge index spaces -----------------------------------------------------------

@pytest.mark.parametrize("n", [2**40, 2**62 - 1, 2**62, 2**64 - 1])
def test_huge_n(n):
    perm = Permutation(n, 77)
    assert perm.n == n
    rng = random.Random(n)
    idx = [0, 1, n - 2, n - 1] + [rng.randrange(n) for _ in range(200)]
    vals = [perm.at(i) for i in idx]
    assert all(0 <= v < n for v in vals)
    assert len(set(vals)) == len(set(idx))
    tail = perm.fill(n - 5, 10)
    assert len(tail) == 5
    assert tail.tolist() == [perm.at(i) for i in range(n - 5, n)]
    head = perm.fill(0, 100_000)
    assert len(np.unique(head)) == len(head)
    assert int(head.max()) < n
    # spread over the whole range, not clustered near small values
    assert int(head.max()) > n // 2


# --- distribution ------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_rough_uniformity(seed):
    n = 65536
    first = Permutation(n, seed).fill(0, 1000).astype(np.float64)
    assert not np.all(np.diff(first) > 0)
    assert not np.all(np.diff(first) < 0)
    assert abs(first.mean() - n / 2) < 0.2 * (n / 2)
    hist, _ = np.histogram(first, bins=16, range=(0, n))
    assert hist.min() > 0
    # not the identity or a simple shift
    assert np.count_nonzero(first == np.arange(1000)) < 10


# --- API edges ------------------------------------------------------------------------

def test_at_range_checks():
    perm = Permutation(10, 1)
    assert perm.n == 10
    with pytest.raises(IndexError):
        perm.at(10)
    with pytest.raises(IndexError):
        perm.at(-1)
    with pytest.raises(TypeError):
        perm.at(1.5)
    assert perm.at(np.uint64(3)) == perm.at(3)


@pytest.mark.parametrize("n", [0, -1, 2**64])
def test_bad_n(n):
    with pytest.raises(ValueError):
        Permutation(n, 0)


def test_fill_edges():
    perm = Permutation(100, 3)
    full = perm.fill(0, 100)
    assert len(perm.fill(0, 1000)) == 100
    assert len(perm.fill(100, 10)) == 0
    assert len(perm.fill(2**70, 10)) == 0
    assert len(perm.fill(5, 0)) == 0
    assert perm.fill(0, 0).dtype == np.uint64
    np.testing.assert_array_equal(perm.fill(10, 5), full[10:15])
    np.testing.assert_array_equal(perm.fill(3, 1000, step=7), full[3::7])
    np.testing.assert_array_equal(perm.fill(99, 5, step=2**80), full[99:])
    for bad in [dict(start=-1, count=1), dict(start=0, count=-1), dict(start=0, count=1, step=0)]:
        with pytest.raises(ValueError):
            perm.fill(**bad)


def test_pickle_and_repr():
    perm = Permutation(12345, 2**64 - 3)
    clone = pickle.loads(pickle.dumps(perm))
    assert (clone.n, clone.seed) == (perm.n, perm.seed)
    np.testing.assert_array_equal(clone.fill(0, 12345), perm.fill(0, 12345))
    assert repr(perm) == f"Permutation(n=12345, seed={2**64 - 3})"
