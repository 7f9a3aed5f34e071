# cython: language_level=3
"""The AF_XDP send path: the same frames, pacing and cookies as sender.ProbeSender (ext/batch.pxd
writes both), but written straight into a UMEM shared with the kernel and handed over through
an AF_XDP TX ring, one kick (an empty sendto) per batch. On veth, in copy mode, this costs the
kernel about 2/3 of what sendmmsg on an AF_PACKET socket does per frame.

UMEM frame i belongs to TX ring slot i (both NFRAMES long): a frame is rewritten only once the
completion ring counts it done. The kernel completes frames in the order it took them. The UMEM
is registered with unaligned chunks where the kernel allows it, so that frames sit `stride`
bytes apart (the longest probe rounded up to 64) instead of 2048: a batch's frames then share
pages and cache lines, which costs ~9% less CPU per probe than one frame per 2 KiB chunk."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memset
import numpy as np
cimport numpy as cnp

from netapi cimport (socket, setsockopt, bind, close, sockaddr, if_nametoindex, errno, strerror,
                     SOCK_RAW, MSG_DONTWAIT, EAGAIN, ENOBUFS, EINTR)
from xdpapi cimport *
from batch cimport (MAX_BATCH, Pacer, pacer_set, pacer_await, Writer, writer_init, write_index,
                    write_batch, write_indices, now_ns, sleep_ns)

cnp.import_array()

cdef enum:
    NFRAMES = 4096            # UMEM frames = TX ring = completion ring entries (a power of 2)
    FRAME_SIZE = 2048         # UMEM chunk: the longest probe frame must fit
    FILL_SIZE = 64            # bind needs a fill ring even to send only; it stays empty
    BIND_TRIES = 40           # a queue is busy for ~20 ms after the last socket on it closed
    STALL_NS = 1000000000     # a TX ring the kernel takes nothing from for this long: give up


cdef class XdpSender:
    """Sends the probes of a scan for positions of its permutation, through an AF_XDP socket
    bound to queue 0 of ifname in copy mode. Frames carry their link-layer header (l2_len bytes);
    the arguments are ProbeSender's without l3. Raises OSError where the kernel or the interface
    cannot do AF_XDP (the caller then falls back to ProbeSender)."""
    cdef int fd
    cdef Writer w
    cdef Pacer pacer
    cdef object _keep
    cdef uint8_t* umem
    cdef uint8_t* tx_map
    cdef uint8_t* cq_map
    cdef size_t tx_map_len, cq_map_len
    cdef uint32_t stride              # bytes between frames in the UMEM
    cdef uint32_t* tx_producer
    cdef uint32_t* tx_consumer
    cdef xdp_desc* tx_descs
    cdef uint32_t* cq_producer
    cdef uint32_t* cq_consumer
    cdef uint32_t prod             # TX descriptors handed over (wraps)
    cdef uint32_t done             # of them, completed (wraps)
    cdef uint32_t lens[MAX_BATCH]
    cdef readonly bint zerocopy
    cdef readonly uint64_t sent
    cdef readonly uint64_t kicks

    def __cinit__(self):
        self.fd = -1
        self.umem = self.tx_map = self.cq_map = NULL

    def __init__(self, str ifname, int l2_len, bytes templates, cnp.ndarray kinds, uint64_t k0, uint64_t k1,
                 bytes saddr, dict space, uint64_t seed, double rate):
        cdef xdp_umem_reg reg
        cdef xdp_mmap_offsets off
        cdef xdp_options opts
        cdef sockaddr_xdp sxdp
        cdef socklen_t optlen
        cdef int size = NFRAMES, fill = FILL_SIZE, budget = NFRAMES, tries, r
        cdef void* m
        self._keep = writer_init(&self.w, l2_len, templates, kinds, k0, k1, saddr, space, seed)
        self.set_rate(rate)
        if max(kinds["length"]) > FRAME_SIZE:
            raise OSError(f"a probe frame is longer than an AF_XDP frame ({FRAME_SIZE} bytes)")
        ifindex = if_nametoindex(ifname.encode())
        if ifindex == 0:
            raise OSError(f"no interface named {ifname!r}")

        self.fd = socket(AF_XDP, SOCK_RAW, 0)
        if self.fd < 0:
            self._fail("cannot open an AF_XDP socket")
        m = mmap(NULL, NFRAMES * FRAME_SIZE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0)      # UMEM: page-aligned
        if m == MAP_FAILED:
            self._fail("cannot map the UMEM")
        self.umem = <uint8_t*>m
        memset(&reg, 0, sizeof(reg))
        reg.addr = <uint64_t>self.umem
        reg.len = NFRAMES * FRAME_SIZE
        reg.chunk_size = FRAME_SIZE
        reg.flags = XDP_UMEM_UNALIGNED_CHUNK_FLAG        # frames anywhere: stride bytes apart
        self.stride = (max(kinds["length"]) + 63) & ~63
        r = setsockopt(self.fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof(reg))
        if r < 0 and errno == EINVAL:                    # a kernel without unaligned chunks
            reg.flags = 0
            self.stride = FRAME_SIZE
            r = setsockopt(self.fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof(reg))
        if r < 0:
            self._fail("cannot register the UMEM")
        if (setsockopt(self.fd, SOL_XDP, XDP_UMEM_FILL_RING, &fill, sizeof(int)) < 0
                or setsockopt(self.fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &size, sizeof(int)) < 0
                or setsockopt(self.fd, SOL_XDP, XDP_TX_RING, &size, sizeof(int)) < 0):
            self._fail("cannot size the AF_XDP rings")
        # One kick may send the whole ring (the default, 32, makes most kicks return EAGAIN).
        # Kernels before 6.17 lack the option: they send 32 per kick, more slowly, still correctly.
        setsockopt(self.fd, SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &budget, sizeof(int))
        optlen = sizeof(off)
        if getsockopt(self.fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &optlen) < 0:
            self._fail("cannot read the AF_XDP ring offsets")
        self.tx_map_len = off.tx.desc + NFRAMES * sizeof(xdp_desc)
        m = mmap(NULL, self.tx_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, self.fd,
                 XDP_PGOFF_TX_RING)
        if m == MAP_FAILED:
            self._fail("cannot map the TX ring")
        self.tx_map = <uint8_t*>m
        self.cq_map_len = off.cr.desc + NFRAMES * sizeof(uint64_t)
        m = mmap(NULL, self.cq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, self.fd,
                 XDP_UMEM_PGOFF_COMPLETION_RING)
        if m == MAP_FAILED:
            self._fail("cannot map the completion ring")
        self.cq_map = <uint8_t*>m
        self.tx_producer = <uint32_t*>(self.tx_map + off.tx.producer)
        self.tx_consumer = <uint32_t*>(self.tx_map + off.tx.consumer)
        self.tx_descs = <xdp_desc*>(self.tx_map + off.tx.desc)
        self.cq_producer = <uint32_t*>(self.cq_map + off.cr.producer)
        self.cq_consumer = <uint32_t*>(self.cq_map + off.cr.consumer)

        # Copy mode: zero-copy drivers send TX frames only with an XDP program on the queue.
        memset(&sxdp, 0, sizeof(sxdp))
        sxdp.sxdp_family = AF_XDP
        sxdp.sxdp_flags = XDP_COPY
        sxdp.sxdp_ifindex = ifindex
        sxdp.sxdp_queue_id = 0
        for tries in range(BIND_TRIES):
            if bind(self.fd, <sockaddr*>&sxdp, sizeof(sxdp)) == 0:
                break
            if errno != EBUSY or tries == BIND_TRIES - 1:
                self._fail(f"cannot bind an AF_XDP socket to {ifname}")
            sleep_ns(5000000)
        optlen = sizeof(opts)
        if getsockopt(self.fd, SOL_XDP, XDP_OPTIONS, &opts, &optlen) == 0:
            self.zerocopy = (opts.flags & XDP_OPTIONS_ZEROCOPY) != 0

    cdef _fail(self, str what):
        cdef int err = errno
        self.close()
        raise OSError(err, f"{what}: {strerror(err).decode()}")

    def __dealloc__(self):
        self.close()

    def close(self):
        """Releases the socket and its memory (also done when the sender is collected)."""
        if self.fd >= 0:
            close(self.fd)
            self.fd = -1
        if self.tx_map != NULL:
            munmap(self.tx_map, self.tx_map_len)
            self.tx_map = NULL
        if self.cq_map != NULL:
            munmap(self.cq_map, self.cq_map_len)
            self.cq_map = NULL
        if self.umem != NULL:
            munmap(self.umem, NFRAMES * FRAME_SIZE)
            self.umem = NULL

    @property
    def path(self):
        return "xdp"

    def set_rate(self, double rate):
        """Packets per second; 0 means as fast as possible. Restarts the pacing clock."""
        pacer_set(&self.pacer, rate)

    cdef inline void _reap(self) noexcept nogil:
        """Counts the frames the kernel has finished with."""
        cdef uint32_t p = ring_load_acquire(self.cq_producer)
        if p != self.done:
            self.done = p
            ring_store_release(self.cq_consumer, p)

    cdef int _kick(self) noexcept nogil:
        """Asks the kernel to send what is in the TX ring; returns 0, or an errno."""
        self.kicks += 1
        if sendto(self.fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0:
            # EAGAIN: the budget ran out or the device queue is full; EBUSY: the device dropped
            # one (it counts it). The rest goes with the next kick.
            if errno == EAGAIN or errno == EBUSY or errno == ENOBUFS or errno == EINTR:
                return 0
            return errno
        return 0

    cdef int _room(self, int want) noexcept nogil:
        """Waits until want frames are free (kicking the kernel meanwhile); returns 0 or an errno."""
        cdef uint64_t since = 0
        cdef uint32_t taken
        cdef int err
        self._reap()
        while <uint32_t>(self.prod - self.done) > <uint32_t>(NFRAMES - want):
            taken = self.done
            err = self._kick()
            if err:
                return err
            self._reap()
            if self.done == taken:
                if since == 0:
                    since = now_ns()
                elif now_ns() - since > STALL_NS:
                    return ENETDOWN
                sleep_ns(20000)
            else:
                since = 0
        return 0

    cdef int _drain(self) noexcept nogil:
        """Kicks until the kernel has taken every descriptor handed over; returns 0 or an errno."""
        cdef uint64_t since = 0
        cdef uint32_t left, before
        cdef int err
        while True:
            left = self.prod - ring_load_acquire(self.tx_consumer)
            if left == 0:
                self._reap()
                return 0
            err = self._kick()
            if err:
                return err
            if self.prod - ring_load_acquire(self.tx_consumer) == left:
                if since == 0:
                    since = now_ns()
                elif now_ns() - since > STALL_NS:
                    return ENETDOWN
                sleep_ns(20000)
            else:
                since = 0

    def send(self, uint64_t position, uint64_t stop, uint64_t step, uint64_t max_probes,
             cnp.ndarray answered=None):
        """Sends probes for permutation positions position, position+step, ... < stop, skipping
        those whose bit is set in `answered` (bit position // step: a bitmap over this shard's
        probes, see batch.pxd), until max_probes were sent; returns once the kernel has taken
        them all. Returns the next position to visit."""
        cdef const uint8_t* bitmap = NULL
        cdef uint64_t count = 0
        cdef uint32_t slot
        cdef int want, nf, i, err = 0
        if self.fd < 0:
            raise ValueError("this sender is closed")
        if answered is not None:
            bitmap = <const uint8_t*>cnp.PyArray_DATA(answered)
        with nogil:
            while position < stop and count < max_probes and err == 0:
                want = self.pacer.batch
                if <uint64_t>want > max_probes - count:
                    want = <int>(max_probes - count)
                want = pacer_await(&self.pacer, want)
                err = self._room(want)
                if err:
                    break
                nf = write_batch(&self.w, self.umem, self.stride, self.prod, NFRAMES - 1, want, &position,
                                 stop, step, bitmap, <uint32_t>(now_ns() // 1000000), self.lens)
                if nf == 0:
                    break
                for i in range(nf):
                    slot = (self.prod + i) & (NFRAMES - 1)
                    self.tx_descs[slot].addr = <uint64_t>slot * self.stride
                    self.tx_descs[slot].len = self.lens[i]
                    self.tx_descs[slot].options = 0
                self.prod += nf
                ring_store_release(self.tx_producer, self.prod)
                err = self._kick()
                self.pacer.paced += nf
                self.sent += nf
                count += nf
            if err == 0:
                err = self._drain()
        if err:
            raise OSError(err, "sending probes failed: " + strerror(err).decode())
        return position

    def send_indices(self, cnp.ndarray indices):
        """Sends the probes of these indices (a uint64 array), in order, paced like send() (the
        adaptive window's choice); returns once the kernel has taken them all."""
        cdef const uint64_t* idx
        cdef uint64_t n, i = 0
        cdef uint32_t slot
        cdef int want, nf, j, err = 0
        if self.fd < 0:
            raise ValueError("this sender is closed")
        indices = np.ascontiguousarray(indices, dtype=np.uint64)
        idx = <const uint64_t*>cnp.PyArray_DATA(indices)
        n = <uint64_t>indices.shape[0]
        with nogil:
            while i < n and err == 0:
                want = self.pacer.batch
                if <uint64_t>want > n - i:
                    want = <int>(n - i)
                want = pacer_await(&self.pacer, want)
                err = self._room(want)
                if err:
                    break
                nf = write_indices(&self.w, self.umem, self.stride, self.prod, NFRAMES - 1, want, idx + i,
                                   <uint32_t>(now_ns() // 1000000), self.lens)
                for j in range(nf):
                    slot = (self.prod + j) & (NFRAMES - 1)
                    self.tx_descs[slot].addr = <uint64_t>slot * self.stride
                    self.tx_descs[slot].len = self.lens[j]
                    self.tx_descs[slot].options = 0
                self.prod += nf
                ring_store_release(self.tx_producer, self.prod)
                err = self._kick()
                self.pacer.paced += nf
                self.sent += nf
                i += nf
            if err == 0:
                err = self._drain()
        if err:
            raise OSError(err, "sending probes failed: " + strerror(err).decode())

    def build(self, uint64_t index, uint32_t tsval=0):
        """The frame the send loop writes for an index (for tests and debugging)."""
        cdef bytearray frame = bytearray(FRAME_SIZE)
        cdef int n = write_index(&self.w, <uint8_t*>frame, index, tsval)
        return bytes(frame[:n])
