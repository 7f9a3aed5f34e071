# cython: language_level=3
"""The send path: permuted index -> (address, port) -> probe frame in a preallocated buffer ->
sendmmsg, paced by a token bucket on the monotonic clock. The loop runs with the GIL released;
Python calls `send` once per chunk of probes."""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset
from libc.stdlib cimport calloc, free

from netapi cimport *
from batch cimport (MAX_BATCH, Pacer, pacer_set, pacer_await, Writer, writer_init, write_index,
                    write_batch, write_indices, now_ns, sleep_ns)
from batch cimport write_hop_limited
from probes cimport TRACE_MAX_TTL

cnp.import_array()


cdef class ProbeSender:
    """Sends the probes of a scan for positions of its permutation, with sendmmsg.

    ifname: interface to send on (None: build frames only); l3: send through a raw IP socket
    (loopback, neighbours on the link: the kernel addresses the frames) instead of AF_PACKET
    frames, skipping the first l2_len bytes of each frame. templates: the frames of every probe
    kind, back to back, per-probe fields zero; kinds: PROBE_KIND_DTYPE array describing them;
    saddr: our address (4 or 16 bytes); space: ScanSpace.arrays().
    """
    cdef int fd
    cdef bint l3
    cdef int stride
    cdef Writer w
    cdef Pacer pacer
    cdef object _keep          # arrays whose memory the writer points into
    cdef cnp.ndarray frames
    cdef uint32_t lens[MAX_BATCH]
    cdef mmsghdr* msgs
    cdef iovec* iovs
    cdef sockaddr_in* dests
    cdef sockaddr_in6* dests6
    cdef readonly uint64_t sent

    def __cinit__(self):
        self.fd = -1

    def __init__(self, object ifname, bint l3, int l2_len, bytes templates, cnp.ndarray kinds,
                 uint64_t k0, uint64_t k1, bytes saddr, dict space, uint64_t seed, double rate):
        cdef sockaddr_ll sll
        cdef int one = 1, sndbuf = 16 * 1024 * 1024, i
        self.l3 = l3
        self._keep = writer_init(&self.w, l2_len, templates, kinds, k0, k1, saddr, space, seed)
        self.set_rate(rate)

        if ifname is None:
            pass   # builds frames only (tests, dry runs)
        elif l3:     # IPPROTO_RAW implies that we write the IP header
            self.fd = socket(AF_INET if self.w.space.family == 4 else AF_INET6, SOCK_RAW, IPPROTO_RAW)
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
            if l3 and self.w.space.family == 4:
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

    def close(self):
        """Releases the socket (also done when the sender is collected). The GIL is released
        meanwhile: closing an AF_PACKET socket waits for an RCU grace period (~10 ms), which
        the scan spends elsewhere when it closes from another thread."""
        cdef int fd = self.fd
        self.fd = -1
        if fd >= 0:
            with nogil:
                close(fd)

    @property
    def path(self):
        return "packet"

    def set_rate(self, double rate):
        """Packets per second; 0 means as fast as possible. Restarts the pacing clock."""
        pacer_set(&self.pacer, rate)

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

    def send(self, uint64_t position, uint64_t stop, uint64_t step, uint64_t max_probes,
             cnp.ndarray answered=None):
        """Sends probes for permutation positions position, position+step, ... < stop, skipping
        those whose bit is set in `answered` (bit position // step: a bitmap over this shard's
        probes, see batch.pxd), until max_probes were sent. Returns the next position to visit."""
        cdef uint8_t* base = <uint8_t*>cnp.PyArray_DATA(self.frames)
        cdef const uint8_t* bitmap = NULL
        cdef const uint8_t* ip
        cdef uint64_t count = 0
        cdef int want, nf, i, err = 0, skip = self.w.l2_len if self.l3 else 0
        if self.fd < 0:
            raise ValueError("this sender has no socket")
        if answered is not None:
            bitmap = <const uint8_t*>cnp.PyArray_DATA(answered)
        with nogil:
            while position < stop and count < max_probes and err == 0:
                want = self.pacer.batch
                if <uint64_t>want > max_probes - count:
                    want = <int>(max_probes - count)
                want = pacer_await(&self.pacer, want)
                nf = write_batch(&self.w, base, self.stride, 0, MAX_BATCH - 1, want, &position, stop, step,
                                 bitmap, <uint32_t>(now_ns() // 1000000), self.lens)
                for i in range(nf):
                    self.iovs[i].iov_len = self.lens[i] - skip
                    if self.l3:      # the kernel addresses the frame: its destination, from the frame
                        ip = base + i * self.stride + skip
                        if self.w.space.family == 4:
                            memcpy(&self.dests[i].sin_addr.s_addr, ip + 16, 4)
                        else:
                            memcpy(self.dests6[i].sin6_addr.s6_addr, ip + 24, 16)
                if nf:
                    err = self._flush(nf)
                    self.pacer.paced += nf
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
        cdef const uint8_t* ip
        cdef uint64_t n, i = 0
        cdef int want, nf, j, err = 0, skip = self.w.l2_len if self.l3 else 0
        if self.fd < 0:
            raise ValueError("this sender has no socket")
        indices = np.ascontiguousarray(indices, dtype=np.uint64)
        idx = <const uint64_t*>cnp.PyArray_DATA(indices)
        n = <uint64_t>indices.shape[0]
        with nogil:
            while i < n and err == 0:
                want = self.pacer.batch
                if <uint64_t>want > n - i:
                    want = <int>(n - i)
                want = pacer_await(&self.pacer, want)
                nf = write_indices(&self.w, base, self.stride, 0, MAX_BATCH - 1, want, idx + i,
                                   <uint32_t>(now_ns() // 1000000), self.lens)
                for j in range(nf):
                    self.iovs[j].iov_len = self.lens[j] - skip
                    if self.l3:      # the kernel addresses the frame: its destination, from the frame
                        ip = base + j * self.stride + skip
                        if self.w.space.family == 4:
                            memcpy(&self.dests[j].sin_addr.s_addr, ip + 16, 4)
                        else:
                            memcpy(self.dests6[j].sin6_addr.s6_addr, ip + 24, 16)
                err = self._flush(nf)
                self.pacer.paced += nf
                self.sent += nf
                i += nf
        if err:
            raise OSError(err, "sending probes failed: " + strerror(err).decode())

    def send_hop_limited(self, cnp.ndarray indices, cnp.ndarray ttls):
        """--traceroute: sends the probes of these indices (uint64) with these hop limits (uint8,
        1..TRACE_MAX_TTL), in order, paced like send() (batch.pxd write_hop_limited)."""
        cdef uint8_t* base = <uint8_t*>cnp.PyArray_DATA(self.frames)
        cdef const uint64_t* idx
        cdef const uint8_t* hop
        cdef const uint8_t* ip
        cdef uint64_t n, i = 0
        cdef int want, nf, j, err = 0, skip = self.w.l2_len if self.l3 else 0
        if self.fd < 0:
            raise ValueError("this sender has no socket")
        indices = np.ascontiguousarray(indices, dtype=np.uint64)
        ttls = np.ascontiguousarray(ttls, dtype=np.uint8)
        if len(ttls) != len(indices) or (len(ttls) and (ttls.min() < 1 or ttls.max() > TRACE_MAX_TTL)):
            raise ValueError(f"one hop limit (1..{TRACE_MAX_TTL}) per index")
        idx = <const uint64_t*>cnp.PyArray_DATA(indices)
        hop = <const uint8_t*>cnp.PyArray_DATA(ttls)
        n = <uint64_t>indices.shape[0]
        with nogil:
            while i < n and err == 0:
                want = self.pacer.batch
                if <uint64_t>want > n - i:
                    want = <int>(n - i)
                want = pacer_await(&self.pacer, want)
                nf = write_hop_limited(&self.w, base, self.stride, want, idx + i, hop + i,
                                       <uint32_t>(now_ns() // 1000000), self.lens)
                for j in range(nf):
                    self.iovs[j].iov_len = self.lens[j] - skip
                    if self.l3:
                        ip = base + j * self.stride + skip
                        if self.w.space.family == 4:
                            memcpy(&self.dests[j].sin_addr.s_addr, ip + 16, 4)
                        else:
                            memcpy(self.dests6[j].sin6_addr.s6_addr, ip + 24, 16)
                err = self._flush(nf)
                self.pacer.paced += nf
                self.sent += nf
                i += nf
        if err:
            raise OSError(err, "sending probes failed: " + strerror(err).decode())

    def build_hop_limited(self, uint64_t index, uint8_t ttl):
        """The frame send_hop_limited writes for an index and hop limit (tests, debugging)."""
        cdef uint8_t* base = <uint8_t*>cnp.PyArray_DATA(self.frames)
        cdef uint64_t i = index
        cdef uint8_t t = ttl
        cdef int n = write_hop_limited(&self.w, base, self.stride, 1, &i, &t, 0, self.lens)
        return bytes(self.frames[0, :self.lens[0]])

    def build(self, uint64_t index, uint32_t tsval=0):
        """The frame the send loop writes for an index (for tests and debugging)."""
        cdef uint8_t* base = <uint8_t*>cnp.PyArray_DATA(self.frames)
        cdef int n = write_index(&self.w, base, index, tsval)
        return bytes(self.frames[0, :n])
