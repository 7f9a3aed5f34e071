# cython: language_level=3
"""The send path: permuted index -> (address, port) -> probe frame in a preallocated buffer ->
sendmmsg, paced by a token bucket on the monotonic clock. The loop runs with the GIL released;
Python calls `send` once per chunk of probes."""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t
from libc.string cimport memcpy, memset
from libc.stdlib cimport calloc, free

from netapi cimport *
from cookie cimport cookie_v4, cookie_v6
from permutation cimport Permutation, permutation_init, permutation_at
from space cimport Space, space_addr4, space_init
from probes cimport ProbeKind, write_probe

cnp.import_array()

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


cdef class ProbeSender:
    """Sends the probes of a scan for positions of its permutation.

    ifname: interface to send on (None: build frames only); l3: send through a raw IP socket
    (loopback, neighbours on the link: the kernel addresses the frames) instead of AF_PACKET frames, skipping the first l2_len bytes of each frame. templates: the
    frames of every probe kind, back to back, per-probe fields zero; kinds: PROBE_KIND_DTYPE
    array describing them; saddr: our address (4 or 16 bytes); space: ScanSpace.arrays().
    """
    cdef int fd
    cdef bint l3
    cdef int l2_len, stride, batch
    cdef uint64_t k0, k1
    cdef uint32_t saddr4
    cdef uint8_t saddr6[16]
    cdef Space space
    cdef Permutation perm
    cdef object _keep          # arrays whose memory space/kinds/templates point into
    cdef const uint8_t* templates
    cdef const ProbeKind* kinds
    cdef cnp.ndarray frames
    cdef mmsghdr* msgs
    cdef iovec* iovs
    cdef sockaddr_in* dests
    cdef sockaddr_in6* dests6
    cdef double rate
    cdef uint64_t t0, paced
    cdef readonly uint64_t sent

    def __cinit__(self):
        self.fd = -1

    def __init__(self, object ifname, bint l3, int l2_len, bytes templates, cnp.ndarray kinds,
                 uint64_t k0, uint64_t k1, bytes saddr, dict space, uint64_t seed, double rate):
        cdef sockaddr_ll sll
        cdef int one = 1, sndbuf = 16 * 1024 * 1024, i
        self.l3 = l3
        self.l2_len = l2_len
        self.k0, self.k1 = k0, k1
        self._keep = (space_init(&self.space, space, kinds, sizeof(ProbeKind)), templates, kinds)
        if self.space.family == 4:
            self.saddr4 = int.from_bytes(saddr, "big")
        else:
            memcpy(self.saddr6, <const char*>saddr, 16)
        self.templates = <const uint8_t*><const char*>templates
        self.kinds = <const ProbeKind*>cnp.PyArray_DATA(kinds)
        permutation_init(&self.perm, self.space.n_hosts * self.space.n_slots, seed)
        self.set_rate(rate)

        if ifname is None:
            pass   # builds frames only (tests, dry runs)
        elif l3:     # IPPROTO_RAW implies that we write the IP header
            self.fd = socket(AF_INET if self.space.family == 4 else AF_INET6, SOCK_RAW, IPPROTO_RAW)
        else:
            self.fd = socket(AF_PACKET, SOCK_RAW, 0)           # protocol 0: send only, receive nothing
        if ifname is not None and self.fd < 0:
            raise PermissionError(errno, "cannot open a raw socket: " + strerror(errno).decode())
        if self.fd >= 0 and setsockopt(self.fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)) < 0:
            setsockopt(self.fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf))
        if ifname is not None and not l3:
            setsockopt(self.fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one))
            memset(&sll, 0, sizeof(sll))
            sll.sll_family = AF_PACKET
            sll.sll_ifindex = if_nametoindex(ifname.encode())
            if sll.sll_ifindex == 0:
                raise OSError(f"no interface named {ifname!r}")
            if bind(self.fd, <sockaddr*>&sll, sizeof(sll)) < 0:
                raise OSError(errno, strerror(errno).decode())

        # Preallocated frames, sized for the longest probe kind.
        self.stride = (max(kinds["length"]) + 63) & ~63
        self.frames = np.zeros((MAX_BATCH, self.stride), dtype=np.uint8)
        self.msgs = <mmsghdr*>calloc(MAX_BATCH, sizeof(mmsghdr))
        self.iovs = <iovec*>calloc(MAX_BATCH, sizeof(iovec))
        self.dests = <sockaddr_in*>calloc(MAX_BATCH, sizeof(sockaddr_in))
        self.dests6 = <sockaddr_in6*>calloc(MAX_BATCH, sizeof(sockaddr_in6))
        if self.msgs == NULL or self.iovs == NULL or self.dests == NULL or self.dests6 == NULL:
            raise MemoryError()
        cdef uint8_t* base = <uint8_t*>cnp.PyArray_DATA(self.frames)
        for i in range(MAX_BATCH):
            self.iovs[i].iov_base = base + i * self.stride + (l2_len if l3 else 0)
            self.msgs[i].msg_hdr.msg_iov = &self.iovs[i]
            self.msgs[i].msg_hdr.msg_iovlen = 1
            if l3 and self.space.family == 4:
                self.dests[i].sin_family = AF_INET
                self.msgs[i].msg_hdr.msg_name = &self.dests[i]
                self.msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_in)
            elif l3:
                self.dests6[i].sin6_family = AF_INET6
                self.msgs[i].msg_hdr.msg_name = &self.dests6[i]
                self.msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_in6)

    def __dealloc__(self):
        if self.fd >= 0:
            close(self.fd)
        free(self.msgs)
        free(self.iovs)
        free(self.dests)
        free(self.dests6)

    def set_rate(self, double rate):
        """Packets per second; 0 means as fast as possible. Restarts the pacing clock."""
        self.rate = rate
        # Batches small enough that a batch takes about a millisecond at the target rate.
        self.batch = MAX_BATCH if rate <= 0 else max(1, min(MAX_BATCH, <int>(rate / 1000)))
        self.t0 = 0
        self.paced = 0

    cdef int _await_tokens(self, int want) noexcept nogil:
        """Blocks until at least one probe may leave; returns how many may leave now (<= want)."""
        cdef uint64_t now, due
        cdef double allowed
        if self.rate <= 0:
            return want
        now = now_ns()
        if self.t0 == 0:
            self.t0 = now
        while True:
            allowed = (now - self.t0) * self.rate / 1e9 + 1 - self.paced
            if allowed >= 1:
                if allowed > 4 * self.batch:
                    # We were held up (not by pacing): forgive the debt instead of bursting.
                    self.t0 = now - <uint64_t>((self.paced + self.batch) * 1e9 / self.rate)
                    allowed = self.batch
                return want if allowed >= want else <int>allowed
            due = self.t0 + <uint64_t>(self.paced * 1e9 / self.rate)
            if due > now + 100000:
                sleep_ns(due - now - 50000)
            now = now_ns()

    cdef int _flush(self, int n) noexcept nogil:
        """sendmmsg the first n slots; returns 0, or an errno."""
        cdef int done = 0, r
        while done < n:
            r = sendmmsg(self.fd, self.msgs + done, n - done, 0)
            if r < 0:
                if errno == ENOBUFS or errno == EAGAIN or errno == EINTR:
                    sleep_ns(20000)              # the device queue is full: let it drain
                    continue
                return errno
            done += r
        return 0

    cdef inline int _write(self, uint8_t* frame, uint64_t index, uint32_t tsval, int slot_no) noexcept nogil:
        """Writes the probe of an index into a frame; returns its length."""
        cdef uint64_t host = index // self.space.n_slots
        cdef uint16_t slot = <uint16_t>(index - host * self.space.n_slots)
        cdef uint16_t dport = self.space.slot_port[slot]
        cdef const ProbeKind* kind = &self.kinds[self.space.slot_kind[slot]]
        cdef uint32_t daddr4 = 0
        cdef const uint8_t* daddr6 = NULL
        cdef uint64_t c
        if self.space.family == 4:
            daddr4 = space_addr4(&self.space, host)
            c = cookie_v4(self.k0, self.k1, self.saddr4, daddr4, dport)
            if self.l3:
                self.dests[slot_no].sin_addr.s_addr = htonl(daddr4)
        else:
            daddr6 = self.space.hosts6 + 16 * host
            c = cookie_v6(self.k0, self.k1, self.saddr6, daddr6, dport)
            if self.l3:
                memcpy(self.dests6[slot_no].sin6_addr.s6_addr, daddr6, 16)
        return write_probe(frame, self.templates, kind, self.l2_len, self.space.family, daddr4, daddr6,
                           dport, slot, c, tsval)

    def send(self, uint64_t position, uint64_t stop, uint64_t step, uint64_t max_probes,
             cnp.ndarray answered=None):
        """Sends probes for permutation positions position, position+step, ... < stop, skipping
        indices whose bit is set in `answered` (a bitmap over [0, N)), until max_probes were sent.
        Returns the next position to visit."""
        cdef uint8_t* base = <uint8_t*>cnp.PyArray_DATA(self.frames)
        cdef const uint8_t* bitmap = NULL
        cdef uint64_t index, count = 0
        cdef uint32_t tsval
        cdef int want, nf, err = 0, skip = self.l2_len if self.l3 else 0
        if self.fd < 0:
            raise ValueError("this sender has no socket")
        if answered is not None:
            bitmap = <const uint8_t*>cnp.PyArray_DATA(answered)
        with nogil:
            while position < stop and count < max_probes and err == 0:
                want = self.batch
                if <uint64_t>want > max_probes - count:
                    want = <int>(max_probes - count)
                want = self._await_tokens(want)
                tsval = <uint32_t>(now_ns() // 1000000)
                nf = 0
                while nf < want and position < stop:
                    index = permutation_at(&self.perm, position)
                    position += step
                    if bitmap != NULL and (bitmap[index >> 3] >> (index & 7)) & 1:
                        continue
                    self.iovs[nf].iov_len = self._write(base + nf * self.stride, index, tsval, nf) - skip
                    nf += 1
                if nf:
                    err = self._flush(nf)
                    self.paced += nf
                    self.sent += nf
                    count += nf
        if err:
            raise OSError(err, "sending probes failed: " + strerror(err).decode())
        return position

    def send_indices(self, cnp.ndarray indices):
        """Sends the probes of these indices (a uint64 array), in order, paced like send():
        the adaptive scan chooses them itself (its window, its retries, -r's order)."""
        cdef uint8_t* base = <uint8_t*>cnp.PyArray_DATA(self.frames)
        cdef const uint64_t* idx
        cdef uint64_t n, i = 0
        cdef uint32_t tsval
        cdef int want, nf, err = 0, skip = self.l2_len if self.l3 else 0
        if self.fd < 0:
            raise ValueError("this sender has no socket")
        indices = np.ascontiguousarray(indices, dtype=np.uint64)
        idx = <const uint64_t*>cnp.PyArray_DATA(indices)
        n = <uint64_t>indices.shape[0]
        with nogil:
            while i < n and err == 0:
                want = self.batch
                if <uint64_t>want > n - i:
                    want = <int>(n - i)
                want = self._await_tokens(want)
                tsval = <uint32_t>(now_ns() // 1000000)
                for nf in range(want):
                    self.iovs[nf].iov_len = self._write(base + nf * self.stride, idx[i + nf], tsval, nf) - skip
                err = self._flush(want)
                self.paced += want
                self.sent += want
                i += want
        if err:
            raise OSError(err, "sending probes failed: " + strerror(err).decode())

    def build(self, uint64_t index, uint32_t tsval=0):
        """The frame the send loop writes for an index (for tests and debugging)."""
        cdef uint8_t* base = <uint8_t*>cnp.PyArray_DATA(self.frames)
        cdef int n = self._write(base, index, tsval, 0)
        return bytes(self.frames[0, :n])
