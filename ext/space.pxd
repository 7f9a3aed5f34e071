# cython: language_level=3
"""The scan's index space: index = host_number * n_slots + slot. Hosts are merged IPv4 intervals
(never expanded) or a sorted list of IPv6 addresses; a slot is one probe to one host (a probe
kind and a destination port). Reply ports map back to slots through two 65536-entry tables."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from libc.string cimport memcmp

ctypedef struct Space:
    int family                  # 4 or 6
    const uint32_t* starts      # v4: first address of each interval, ascending
    const uint64_t* cum         # v4: hosts before interval i; cum[n_intervals] = n_hosts
    uint64_t n_intervals
    const uint8_t* hosts6       # v6: n_hosts sorted 16-byte addresses
    uint64_t n_hosts
    uint64_t n_slots
    const uint16_t* slot_port   # destination port of each slot (0 for ICMP probes)
    const uint16_t* slot_kind   # probe kind of each slot
    const int32_t* tcp_slot     # TCP port -> slot, or -1
    const int32_t* udp_slot     # UDP port -> slot, or -1
    const int32_t* sctp_slot    # SCTP port -> slot, or -1
    const int32_t* ip_slot      # -sO: IP protocol (0-255) -> slot, or -1
    int32_t arp_slot            # the ARP request's slot, or -1


cdef inline uint32_t space_addr4(const Space* s, uint64_t host) noexcept nogil:
    """The IPv4 address of a host number."""
    cdef uint64_t lo = 0, hi = s.n_intervals - 1, mid
    while lo < hi:            # last interval whose cum <= host
        mid = (lo + hi + 1) >> 1
        if s.cum[mid] <= host:
            lo = mid
        else:
            hi = mid - 1
    return <uint32_t>(s.starts[lo] + (host - s.cum[lo]))


cdef inline int64_t space_host4(const Space* s, uint32_t addr) noexcept nogil:
    """The host number of an IPv4 address, or -1 when it is not a target."""
    cdef uint64_t lo = 0, hi = s.n_intervals - 1, mid
    if s.family != 4 or s.n_intervals == 0 or addr < s.starts[0]:
        return -1
    while lo < hi:            # last interval whose start <= addr
        mid = (lo + hi + 1) >> 1
        if s.starts[mid] <= addr:
            lo = mid
        else:
            hi = mid - 1
    if <uint64_t>(addr - s.starts[lo]) >= s.cum[lo + 1] - s.cum[lo]:
        return -1
    return <int64_t>(s.cum[lo] + (addr - s.starts[lo]))


cdef inline int64_t space_host6(const Space* s, const uint8_t* addr) noexcept nogil:
    """The host number of an IPv6 address, or -1 when it is not a target."""
    cdef int64_t lo = 0, hi = <int64_t>s.n_hosts - 1, mid
    cdef int c
    if s.family != 6:
        return -1
    while lo <= hi:
        mid = (lo + hi) >> 1
        c = memcmp(s.hosts6 + 16 * mid, addr, 16)
        if c == 0:
            return mid
        if c < 0:
            lo = mid + 1
        else:
            hi = mid - 1
    return -1


cimport numpy as cnp

cdef inline object space_init(Space* s, dict a, object kinds=None, Py_ssize_t kind_size=0):
    """Points s at the arrays of ScanSpace.arrays(); returns what must be kept alive meanwhile.
    With kinds (the probe kinds array), checks it has the compiled layout and covers every slot."""
    cdef tuple keep = tuple(a.values())
    if kinds is not None:
        if kinds.dtype.itemsize != kind_size or not kinds.flags.c_contiguous:
            raise ValueError("probe kinds must be a contiguous PROBE_KIND_DTYPE array")
        if len(a["slot_kind"]) and int(a["slot_kind"].max()) >= len(kinds):
            raise ValueError("a slot names a probe kind that does not exist")
    s.family = a["family"]
    s.starts = <const uint32_t*>cnp.PyArray_DATA(a["starts"])
    s.cum = <const uint64_t*>cnp.PyArray_DATA(a["cum"])
    s.n_intervals = len(a["starts"])
    s.hosts6 = <const uint8_t*>cnp.PyArray_DATA(a["hosts6"])
    s.n_hosts = a["n_hosts"]
    s.n_slots = len(a["slot_port"])
    s.slot_port = <const uint16_t*>cnp.PyArray_DATA(a["slot_port"])
    s.slot_kind = <const uint16_t*>cnp.PyArray_DATA(a["slot_kind"])
    s.tcp_slot = <const int32_t*>cnp.PyArray_DATA(a["tcp_slot"])
    s.udp_slot = <const int32_t*>cnp.PyArray_DATA(a["udp_slot"])
    s.sctp_slot = <const int32_t*>cnp.PyArray_DATA(a["sctp_slot"])
    s.ip_slot = <const int32_t*>cnp.PyArray_DATA(a["ip_slot"])
    s.arp_slot = a["arp_slot"]
    return keep
