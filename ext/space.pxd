# cython: language_level=3
"""The scan's index space: index = host_number * n_ports + port_number, over merged IPv4
intervals. Only the interval bounds and the port list are stored, never the expanded space."""
from libc.stdint cimport uint16_t, uint32_t, uint64_t, int32_t, int64_t

ctypedef struct Space:
    const uint32_t* starts      # first address of each interval, ascending
    const uint64_t* cum         # hosts before interval i; cum[n_intervals] = n_hosts
    uint64_t n_intervals
    const uint16_t* ports       # ports in scan order
    uint64_t n_ports
    const int32_t* port_index   # 65536 entries: position of a port in `ports`, or -1
    uint64_t n_hosts


cdef inline void space_locate(const Space* s, uint64_t index, uint32_t* addr, uint16_t* port) noexcept nogil:
    cdef uint64_t host = index // s.n_ports
    cdef uint64_t lo = 0, hi = s.n_intervals - 1, mid
    port[0] = s.ports[index - host * s.n_ports]
    while lo < hi:            # last interval whose cum <= host
        mid = (lo + hi + 1) >> 1
        if s.cum[mid] <= host:
            lo = mid
        else:
            hi = mid - 1
    addr[0] = <uint32_t>(s.starts[lo] + (host - s.cum[lo]))


cdef inline int64_t space_index(const Space* s, uint32_t addr, uint16_t port) noexcept nogil:
    """The index of (addr, port), or -1 when the pair is not in the scan."""
    cdef int32_t pi = s.port_index[port]
    cdef uint64_t lo = 0, hi = s.n_intervals - 1, mid
    if pi < 0 or s.n_intervals == 0 or addr < s.starts[0]:
        return -1
    while lo < hi:            # last interval whose start <= addr
        mid = (lo + hi + 1) >> 1
        if s.starts[mid] <= addr:
            lo = mid
        else:
            hi = mid - 1
    if <uint64_t>(addr - s.starts[lo]) >= s.cum[lo + 1] - s.cum[lo]:
        return -1
    return <int64_t>((s.cum[lo] + (addr - s.starts[lo])) * s.n_ports + <uint64_t>pi)
