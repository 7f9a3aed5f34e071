# cython: language_level=3
"""The connect scan's socket work in C: non-blocking connects, one epoll, verdicts collected in
arrays, with the GIL released. Python keeps the decisions (what to connect, how many at once,
timeouts, retries); this loop only saves the per-connection Python objects and calls."""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t, int32_t
from libc.stdlib cimport calloc, free

cnp.import_array()

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct sockaddr:
        pass
    int socket(int domain, int type, int protocol)
    int connect(int fd, const sockaddr* addr, socklen_t len)
    int getsockopt(int fd, int level, int name, void* value, socklen_t* len)
    int getpeername(int fd, sockaddr* addr, socklen_t* len)
    int setsockopt(int fd, int level, int name, const void* value, socklen_t len)
    enum: AF_INET, AF_INET6, SOCK_STREAM, SOCK_NONBLOCK, SOCK_CLOEXEC, SOL_SOCKET, SO_ERROR, SO_LINGER

cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        int fd
        uint64_t u64
    struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event)
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)
    enum: EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLL_CTL_ADD, EPOLL_CLOEXEC

cdef extern from "<errno.h>" nogil:
    int errno
    enum: EINPROGRESS, EAGAIN, EINTR, EMFILE, ENFILE

cdef extern from "<unistd.h>" nogil:
    int close(int fd)

cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec* ts)
    enum: CLOCK_MONOTONIC

cdef struct Linger:
    int onoff
    int seconds

cdef enum:
    C_TIMED_OUT = -1
TIMED_OUT = C_TIMED_OUT     # the verdict of a connection whose deadline passed


cdef inline int64_t now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef class ConnectLoop:
    """Up to `capacity` connections in flight. start() opens connections to sockaddrs (rows of
    28 bytes: sockaddr_in or sockaddr_in6 as the kernel lays them out), each with a tag; poll()
    returns (tags, errors, round trips in seconds) of those that reached a verdict: errno 0 for
    an open port, the connect errno, or TIMED_OUT once `timeout` seconds passed."""
    cdef int epfd, capacity, n_free, n_done
    cdef int* fds
    cdef int64_t* tags
    cdef int64_t* started
    cdef int* free_slots
    cdef int64_t* done_tag
    cdef int32_t* done_err
    cdef int64_t* done_rtt
    cdef epoll_event* events

    def __cinit__(self, int capacity):
        self.capacity = capacity
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(errno, "epoll_create1 failed")
        self.fds = <int*>calloc(capacity, sizeof(int))
        self.tags = <int64_t*>calloc(capacity, sizeof(int64_t))
        self.started = <int64_t*>calloc(capacity, sizeof(int64_t))
        self.free_slots = <int*>calloc(capacity, sizeof(int))
        # Verdicts wait here until poll() hands them over: start() stops at 2 x capacity of
        # them (a connect often reaches its verdict at once), poll() adds at most capacity.
        self.done_tag = <int64_t*>calloc(3 * capacity, sizeof(int64_t))
        self.done_err = <int32_t*>calloc(3 * capacity, sizeof(int32_t))
        self.done_rtt = <int64_t*>calloc(3 * capacity, sizeof(int64_t))
        self.events = <epoll_event*>calloc(capacity, sizeof(epoll_event))
        if (self.fds == NULL or self.tags == NULL or self.started == NULL or self.free_slots == NULL
                or self.done_tag == NULL or self.done_err == NULL or self.done_rtt == NULL or self.events == NULL):
            raise MemoryError()
        for i in range(capacity):
            self.fds[i] = -1
            self.free_slots[i] = capacity - 1 - i
        self.n_free = capacity

    def __dealloc__(self):
        if self.fds != NULL:
            for i in range(self.capacity):
                if self.fds[i] >= 0:
                    close(self.fds[i])
        if self.epfd >= 0:
            close(self.epfd)
        free(self.fds); free(self.tags); free(self.started); free(self.free_slots)
        free(self.done_tag); free(self.done_err); free(self.done_rtt); free(self.events)

    @property
    def in_flight(self) -> int:
        return self.capacity - self.n_free

    @property
    def room(self) -> int:
        return min(self.n_free, 2 * self.capacity - self.n_done)

    cdef inline void _verdict(self, int slot, int err, int64_t now) noexcept nogil:
        cdef Linger linger
        cdef int fd = self.fds[slot]
        if err == 0:            # open: close with a RST, no TIME_WAIT pile-up on big scans
            linger.onoff, linger.seconds = 1, 0
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, sizeof(linger))
        close(fd)               # also leaves the epoll set
        self.fds[slot] = -1
        self.done_tag[self.n_done] = self.tags[slot]
        self.done_err[self.n_done] = err
        self.done_rtt[self.n_done] = now - self.started[slot]
        self.n_done += 1
        self.free_slots[self.n_free] = slot
        self.n_free += 1

    def start(self, cnp.ndarray addrs, cnp.ndarray tags, bint ipv6):
        """Opens connections for the rows of addrs (n x 28 uint8) in order, while there is room;
        returns how many rows were used (fewer when the process is out of descriptors: the
        connections in flight free some). No socket at all, with none in flight: OSError."""
        cdef const uint8_t* base = <const uint8_t*>cnp.PyArray_DATA(addrs)
        cdef const int64_t* tag = <const int64_t*>cnp.PyArray_DATA(tags)
        cdef Py_ssize_t n = addrs.shape[0], i = 0
        cdef int fd, slot, r, err = 0, soerr
        cdef socklen_t elen, plen
        cdef uint8_t peer[28]
        cdef epoll_event ev
        cdef socklen_t alen = 28 if ipv6 else 16
        cdef int family = AF_INET6 if ipv6 else AF_INET
        cdef int64_t now
        if addrs.dtype != np.uint8 or addrs.ndim != 2 or addrs.shape[1] != 28 or not addrs.flags.c_contiguous:
            raise ValueError("addrs: a C-contiguous (n, 28) uint8 array")
        if tags.dtype != np.int64 or tags.shape[0] < n or not tags.flags.c_contiguous:
            raise ValueError("tags: an int64 array as long as addrs")
        with nogil:
            while i < n and self.n_free > 0 and self.n_done < 2 * self.capacity:
                now = now_ns()          # each connection's own start: its round trip is measured
                fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
                if fd < 0:
                    err = errno
                    break
                self.n_free -= 1
                slot = self.free_slots[self.n_free]
                self.fds[slot], self.tags[slot], self.started[slot] = fd, tag[i], now
                r = connect(fd, <const sockaddr*>(base + 28 * i), alen)
                if r == 0:
                    self._verdict(slot, 0, now)
                elif errno == EINPROGRESS or errno == EAGAIN:
                    # The answer is often in already: over a local or virtual link the kernel
                    # handles the reply before connect() returns. A verdict now spares the
                    # epoll registration and round (two syscalls more when it is not in).
                    soerr, elen, plen = 0, sizeof(int), sizeof(peer)
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &elen)
                    if soerr != 0:
                        self._verdict(slot, soerr, now_ns())
                    elif getpeername(fd, <sockaddr*>peer, &plen) == 0:
                        self._verdict(slot, 0, now_ns())
                    else:
                        ev.events = EPOLLOUT | EPOLLERR | EPOLLHUP
                        ev.data.u64 = <uint64_t>slot
                        epoll_ctl(self.epfd, EPOLL_CTL_ADD, fd, &ev)
                else:
                    self._verdict(slot, errno, now)
                i += 1
        if err and i == 0 and self.n_free == self.capacity:     # none in flight to wait for
            raise OSError(err, "cannot open a socket for the connect scan")
        return i

    def poll(self, double wait, double timeout):
        """Waits up to `wait` seconds for verdicts, calls connections older than `timeout`
        seconds TIMED_OUT, and returns (tags, errors, round trips) of every verdict so far."""
        cdef int n, k, slot, err
        cdef socklen_t elen
        cdef int64_t now, oldest
        with nogil:
            while True:
                n = epoll_wait(self.epfd, self.events, self.capacity, <int>(wait * 1000))
                if n >= 0 or errno != EINTR:
                    break
            now = now_ns()
            for k in range(n if n > 0 else 0):
                slot = <int>self.events[k].data.u64
                if self.fds[slot] < 0:
                    continue
                err = 0
                elen = sizeof(int)
                getsockopt(self.fds[slot], SOL_SOCKET, SO_ERROR, &err, &elen)
                self._verdict(slot, err, now)
            oldest = now - <int64_t>(timeout * 1e9)
            for slot in range(self.capacity):
                if self.fds[slot] >= 0 and self.started[slot] <= oldest:
                    self._verdict(slot, C_TIMED_OUT, now)
        out = (np.array(<int64_t[:self.n_done]>self.done_tag, dtype=np.int64) if self.n_done else np.zeros(0, np.int64),
               np.array(<int32_t[:self.n_done]>self.done_err, dtype=np.int32) if self.n_done else np.zeros(0, np.int32),
               np.array(<int64_t[:self.n_done]>self.done_rtt, dtype=np.float64) / 1e9 if self.n_done
               else np.zeros(0, np.float64))
        self.n_done = 0
        return out
