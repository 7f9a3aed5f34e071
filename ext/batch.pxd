# cython: language_level=3
"""What every send path shares: the pacing clock (a token bucket on the monotonic clock) and the
loop that writes a batch of probe frames (permuted index -> address, port, cookie -> frame).
A send path only differs in where the frames live and how it hands them to the kernel."""
cimport numpy as cnp
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

from netapi cimport timespec, clock_gettime, nanosleep, CLOCK_MONOTONIC
from cookie cimport cookie_v4, cookie_v6
from permutation cimport Permutation, permutation_init, permutation_at
from space cimport Space, space_addr4, space_init
from probes cimport ProbeKind, write_probe, limit_hops

cdef enum:
    MAX_BATCH = 256


cdef inline uint64_t now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec


cdef inline void sleep_ns(uint64_t ns) noexcept nogil:
    cdef timespec ts
    ts.tv_sec = ns // 1000000000ULL
    ts.tv_nsec = ns % 1000000000ULL
    nanosleep(&ts, NULL)


# -- pacing ---------------------------------------------------------------------------------------

ctypedef struct Pacer:
    double rate               # packets per second; 0: as fast as possible
    int batch                 # probes written and handed over per call
    uint64_t t0, paced        # start of the pacing clock; probes sent since


cdef inline void pacer_set(Pacer* p, double rate) noexcept nogil:
    """Sets the rate and restarts the pacing clock."""
    p.rate = rate
    # Batches small enough that a batch takes about a millisecond at the target rate.
    if rate <= 0:
        p.batch = MAX_BATCH
    else:
        p.batch = <int>(rate / 1000)
        p.batch = 1 if p.batch < 1 else (MAX_BATCH if p.batch > MAX_BATCH else p.batch)
    p.t0 = 0
    p.paced = 0


cdef inline int pacer_await(Pacer* p, int want) noexcept nogil:
    """Blocks until at least one probe may leave; returns how many may leave now (<= want)."""
    cdef uint64_t now, due
    cdef double allowed
    if p.rate <= 0:
        return want
    now = now_ns()
    if p.t0 == 0:
        p.t0 = now
    while True:
        allowed = (now - p.t0) * p.rate / 1e9 + 1 - p.paced
        if allowed >= 1:
            if allowed > 4 * p.batch:
                # We were held up (not by pacing): forgive the debt instead of bursting.
                p.t0 = now - <uint64_t>((p.paced + p.batch) * 1e9 / p.rate)
                allowed = p.batch
            return want if allowed >= want else <int>allowed
        due = p.t0 + <uint64_t>(p.paced * 1e9 / p.rate)
        if due > now + 100000:
            sleep_ns(due - now - 50000)
        now = now_ns()


# -- writing probes -------------------------------------------------------------------------------

ctypedef struct Writer:
    Space space
    Permutation perm
    const uint8_t* templates  # the frames of every probe kind, back to back
    const ProbeKind* kinds
    uint64_t k0, k1           # cookie key
    uint32_t saddr4
    uint8_t saddr6[16]
    int l2_len


cdef inline object writer_init(Writer* w, int l2_len, bytes templates, cnp.ndarray kinds,
                               uint64_t k0, uint64_t k1, bytes saddr, dict space, uint64_t seed):
    """Points w at a scan's probes; returns what must be kept alive meanwhile."""
    cdef object keep = (space_init(&w.space, space, kinds, sizeof(ProbeKind)), templates, kinds)
    w.l2_len = l2_len
    w.k0, w.k1 = k0, k1
    if w.space.family == 4:
        w.saddr4 = int.from_bytes(saddr, "big")
    else:
        memcpy(w.saddr6, <const char*>saddr, 16)
    w.templates = <const uint8_t*><const char*>templates
    w.kinds = <const ProbeKind*>cnp.PyArray_DATA(kinds)
    permutation_init(&w.perm, w.space.n_hosts * w.space.n_slots, seed)
    return keep


cdef inline int write_index(const Writer* w, uint8_t* frame, uint64_t index, uint32_t tsval) noexcept nogil:
    """Writes the probe of an index into a frame; returns its length."""
    cdef uint64_t host = index // w.space.n_slots
    cdef uint16_t slot = <uint16_t>(index - host * w.space.n_slots)
    cdef uint16_t dport = w.space.slot_port[slot]
    cdef const ProbeKind* kind = &w.kinds[w.space.slot_kind[slot]]
    cdef uint32_t daddr4 = 0
    cdef const uint8_t* daddr6 = NULL
    cdef uint64_t c
    if w.space.family == 4:
        daddr4 = space_addr4(&w.space, host)
        c = cookie_v4(w.k0, w.k1, w.saddr4, daddr4, dport)
    else:
        daddr6 = w.space.hosts6 + 16 * host
        c = cookie_v6(w.k0, w.k1, w.saddr6, daddr6, dport)
    return write_probe(frame, w.templates, kind, w.l2_len, w.space.family, daddr4, daddr6,
                       dport, slot, c, tsval)


cdef inline int write_batch(const Writer* w, uint8_t* base, uint32_t stride, uint32_t first, uint32_t mask,
                            int want, uint64_t* position, uint64_t stop, uint64_t step,
                            const uint8_t* answered, uint32_t tsval, uint32_t* lens) noexcept nogil:
    """Writes the probes of permutation positions *position, +step, ... (< stop) whose bit is not set
    in `answered` into frames base + ((first + i) & mask) * stride, i = 0, 1, ..., at most want of
    them; lens[i] gets frame i's length. Advances *position past the positions visited; returns
    the number of frames written. `answered` (or NULL) is a bitmap over the shard's probes: a
    shard visits positions start, start + step, ... with start < step, so position p has bit
    p // step (N/step bits in all, not N)."""
    cdef int nf = 0
    cdef uint64_t index, ordinal = position[0] // step
    while nf < want and position[0] < stop:
        if answered != NULL and (answered[ordinal >> 3] >> (ordinal & 7)) & 1:
            position[0] += step
            ordinal += 1
            continue
        index = permutation_at(&w.perm, position[0])
        position[0] += step
        ordinal += 1
        lens[nf] = write_index(w, base + ((first + nf) & mask) * stride, index, tsval)
        nf += 1
    return nf


cdef inline int write_indices(const Writer* w, uint8_t* base, uint32_t stride, uint32_t first, uint32_t mask,
                              int want, const uint64_t* indices, uint32_t tsval, uint32_t* lens) noexcept nogil:
    """Writes the probes of indices[0], ..., indices[want - 1] (chosen by the caller: the adaptive
    window, its resends, -r's order) into frames as write_batch does; returns want."""
    cdef int nf
    for nf in range(want):
        lens[nf] = write_index(w, base + ((first + nf) & mask) * stride, indices[nf], tsval)
    return want


cdef inline int write_hop_limited(const Writer* w, uint8_t* base, uint32_t stride, int want,
                                  const uint64_t* indices, const uint8_t* ttls, uint32_t tsval,
                                  uint32_t* lens) noexcept nogil:
    """--traceroute: the probes of indices[i] with hop limit ttls[i] (probes.pxd limit_hops) into
    frames base + i * stride; returns want."""
    cdef int nf
    cdef uint64_t host
    cdef uint16_t slot
    for nf in range(want):
        lens[nf] = write_index(w, base + nf * stride, indices[nf], tsval)
        host = indices[nf] // w.space.n_slots
        slot = <uint16_t>(indices[nf] - host * w.space.n_slots)
        limit_hops(base + nf * stride, &w.kinds[w.space.slot_kind[slot]], w.l2_len, w.space.family, ttls[nf])
    return want
