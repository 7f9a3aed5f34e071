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
from cookie cimport cookie_v4
from permutation cimport Permutation, permutation_init, permutation_at
from space cimport Space, space_locate
from tcpprobe cimport write_tcp_probe, TCP_ACK

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
    """Sends TCP probes for positions of the scan's permutation.

    ifname: interface to send on; l3: send through a raw IP socket (loopback, no link layer)
    instead of AF_PACKET frames. template: one complete frame (Ethernet + IPv4 + TCP with options,
    addresses and checksums to be filled in); with l3 the first l2_len bytes are skipped.
    """
    cdef int fd
    cdef bint l3
    cdef int l2_len, frame_len, tcp_len, ts_offset, stride, batch
    cdef bint ack_flag
    cdef uint64_t k0, k1
    cdef uint32_t saddr
    cdef Space space
    cdef Permutation perm
    cdef object _keep          # numpy arrays whose memory `space` points into
    cdef cnp.ndarray frames
    cdef mmsghdr* msgs
    cdef iovec* iovs
    cdef sockaddr_in* dests
    cdef double rate
    cdef uint64_t t0, paced
    cdef readonly uint64_t sent
    cdef readonly int last_errno

    def __cinit__(self):
        self.fd = -1

    def __init__(self, str ifname, bint l3, bytes template, int l2_len, int ts_offset,
                 uint64_t k0, uint64_t k1, uint32_t saddr,
                 cnp.ndarray starts, cnp.ndarray cum, cnp.ndarray ports, cnp.ndarray port_index,
                 uint64_t seed, double rate):
        cdef sockaddr_ll sll
        cdef int one = 1, sndbuf = 16 * 1024 * 1024, i
        self.l3 = l3
        self.l2_len = l2_len
        self.frame_len = len(template)
        self.tcp_len = self.frame_len - l2_len - 20
        self.ts_offset = ts_offset
        self.ack_flag = (template[l2_len + 20 + 13] & TCP_ACK) != 0
        self.k0, self.k1, self.saddr = k0, k1, saddr
        starts = np.ascontiguousarray(starts, dtype=np.uint32)
        cum = np.ascontiguousarray(cum, dtype=np.uint64)
        ports = np.ascontiguousarray(ports, dtype=np.uint16)
        port_index = np.ascontiguousarray(port_index, dtype=np.int32)
        self._keep = (starts, cum, ports, port_index)
        self.space.starts = <const uint32_t*>cnp.PyArray_DATA(starts)
        self.space.cum = <const uint64_t*>cnp.PyArray_DATA(cum)
        self.space.n_intervals = len(starts)
        self.space.ports = <const uint16_t*>cnp.PyArray_DATA(ports)
        self.space.n_ports = len(ports)
        self.space.port_index = <const int32_t*>cnp.PyArray_DATA(port_index)
        self.space.n_hosts = cum[len(starts)]
        permutation_init(&self.perm, self.space.n_hosts * self.space.n_ports, seed)
        self.set_rate(rate)

        if l3:
            self.fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW)   # IPPROTO_RAW implies IP_HDRINCL
        else:
            self.fd = socket(AF_PACKET, SOCK_RAW, 0)           # protocol 0: send only, receive nothing
        if self.fd < 0:
            raise PermissionError(errno, "cannot open a raw socket: " + strerror(errno).decode())
        if setsockopt(self.fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)) < 0:
            setsockopt(self.fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf))
        if not l3:
            setsockopt(self.fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one))
            memset(&sll, 0, sizeof(sll))
            sll.sll_family = AF_PACKET
            sll.sll_ifindex = if_nametoindex(ifname.encode())
            if sll.sll_ifindex == 0:
                raise OSError(f"no interface named {ifname!r}")
            if bind(self.fd, <sockaddr*>&sll, sizeof(sll)) < 0:
                raise OSError(errno, strerror(errno).decode())

        # Preallocated frames: the template is copied into every slot once; the loop then writes
        # only the per-probe fields.
        self.stride = (self.frame_len + 63) & ~63
        self.frames = np.zeros((MAX_BATCH, self.stride), dtype=np.uint8)
        self.msgs = <mmsghdr*>calloc(MAX_BATCH, sizeof(mmsghdr))
        self.iovs = <iovec*>calloc(MAX_BATCH, sizeof(iovec))
        self.dests = <sockaddr_in*>calloc(MAX_BATCH, sizeof(sockaddr_in))
        if self.msgs == NULL or self.iovs == NULL or self.dests == NULL:
            raise MemoryError()
        cdef uint8_t* base = <uint8_t*>cnp.PyArray_DATA(self.frames)
        cdef int skip = l2_len if l3 else 0
        for i in range(MAX_BATCH):
            memcpy(base + i * self.stride, <const char*>template, self.frame_len)
            self.iovs[i].iov_base = base + i * self.stride + skip
            self.iovs[i].iov_len = self.frame_len - skip
            self.msgs[i].msg_hdr.msg_iov = &self.iovs[i]
            self.msgs[i].msg_hdr.msg_iovlen = 1
            if l3:
                self.dests[i].sin_family = AF_INET
                self.msgs[i].msg_hdr.msg_name = &self.dests[i]
                self.msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_in)

    def __dealloc__(self):
        if self.fd >= 0:
            close(self.fd)
        free(self.msgs)
        free(self.iovs)
        free(self.dests)

    @property
    def size(self):
        """N: the number of (address, port) probes in one pass."""
        return self.space.n_hosts * self.space.n_ports

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

    def send(self, uint64_t position, uint64_t stop, uint64_t step, uint64_t max_probes,
             cnp.ndarray answered=None):
        """Sends probes for permutation positions position, position+step, ... < stop, skipping
        indices whose bit is set in `answered` (a bitmap over [0, N)), until max_probes were sent.
        Returns the next position to visit."""
        cdef uint8_t* base = <uint8_t*>cnp.PyArray_DATA(self.frames)
        cdef const uint8_t* bitmap = NULL
        cdef uint64_t index, count = 0, c
        cdef uint32_t daddr, tsval
        cdef uint16_t dport
        cdef int want, nf, err = 0
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
                    space_locate(&self.space, index, &daddr, &dport)
                    c = cookie_v4(self.k0, self.k1, self.saddr, daddr, dport)
                    write_tcp_probe(base + nf * self.stride, self.l2_len, self.tcp_len, self.ts_offset,
                                    self.ack_flag, daddr, dport, c, tsval)
                    if self.l3:
                        self.dests[nf].sin_addr.s_addr = htonl(daddr)
                    nf += 1
                if nf:
                    err = self._flush(nf)
                    self.paced += nf
                    self.sent += nf
                    count += nf
        if err:
            self.last_errno = err
            raise OSError(err, "sending probes failed: " + strerror(err).decode())
        return position


def build_probe(bytes template, int l2_len, int ts_offset, uint64_t k0, uint64_t k1, uint32_t saddr,
                uint32_t daddr, uint16_t dport, uint32_t tsval=0):
    """The frame the send loop would write for daddr:dport (for tests and debugging)."""
    cdef bytearray frame = bytearray(template)
    cdef uint8_t* f = <uint8_t*>(<char*>frame)
    cdef bint ack_flag = (template[l2_len + 20 + 13] & TCP_ACK) != 0
    write_tcp_probe(f, l2_len, len(template) - l2_len - 20, ts_offset, ack_flag, daddr, dport,
                    cookie_v4(k0, k1, saddr, daddr, dport), tsval)
    return bytes(frame)
