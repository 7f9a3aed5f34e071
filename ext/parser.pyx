# cython: language_level=3
"""The capture side: one pass over a batch from pcapy-ng's next_batch(), checking bounds and
cookies, classifying each genuine reply into a row of a numpy structured array."""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from libc.string cimport memcpy

from checksum cimport get16, get32
from codes cimport *
from cookie cimport cookie_v4, cookie_sport, cookie_seq
from space cimport Space, space_index
from tcpprobe cimport TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK

cnp.import_array()

RESULT_DTYPE = np.dtype([("index", "<u8"), ("ip", "<u4"), ("port", "<u2"), ("proto", "u1"),
                         ("state", "u1"), ("reason", "u1"), ("ttl", "u1"), ("window", "<u2")])

cdef packed struct Result:
    uint64_t index
    uint32_t ip
    uint16_t port
    uint8_t proto
    uint8_t state
    uint8_t reason
    uint8_t ttl
    uint16_t window

STATES = {"open": ST_OPEN, "closed": ST_CLOSED, "filtered": ST_FILTERED, "unfiltered": ST_UNFILTERED,
          "open|filtered": ST_OPEN_FILTERED, "closed|filtered": ST_CLOSED_FILTERED}
REASONS = {"syn-ack": RS_SYN_ACK, "reset": RS_RESET, "no-response": RS_NO_RESPONSE,
           "net-unreach": RS_NET_UNREACH, "host-unreach": RS_HOST_UNREACH,
           "proto-unreach": RS_PROTO_UNREACH, "port-unreach": RS_PORT_UNREACH,
           "net-prohibited": RS_NET_PROHIBITED, "host-prohibited": RS_HOST_PROHIBITED,
           "admin-prohibited": RS_ADMIN_PROHIBITED, "conn-refused": RS_CONN_REFUSED}
REPLY_KINDS = {"syn-ack": RK_SYN_ACK, "reset": RK_RESET, "reset-window": RK_RESET_WINDOW,
               "icmp-unreach": RK_ICMP_UNREACH, "no-response": RK_NO_RESPONSE}
N_REPLY_KINDS = RK_COUNT


cdef inline uint8_t unreach_reason(uint8_t code) noexcept nogil:
    """nmap's reason for ICMP destination-unreachable codes that make a TCP port filtered."""
    if code == 0: return RS_NET_UNREACH
    if code == 1: return RS_HOST_UNREACH
    if code == 2: return RS_PROTO_UNREACH
    if code == 3: return RS_PORT_UNREACH
    if code == 9: return RS_NET_PROHIBITED
    if code == 10: return RS_HOST_PROHIBITED
    if code == 13: return RS_ADMIN_PROHIBITED
    return RS_NONE


cdef class ReplyParser:
    """Parses captured frames for one scan. `table` maps each reply kind (REPLY_KINDS) to the
    state the scan technique gives it (0: ignore); `probe_flags` are the TCP flags the probes
    carry, which decide where a genuine reply echoes the cookie."""
    cdef uint64_t k0, k1
    cdef uint32_t saddr
    cdef int l2_len
    cdef uint8_t probe_flags
    cdef uint8_t table[RK_COUNT]
    cdef Space space
    cdef object _keep
    cdef readonly uint64_t bad_cookie, not_in_scan, parsed

    def __init__(self, uint64_t k0, uint64_t k1, uint32_t saddr, int l2_len, uint8_t probe_flags,
                 table, cnp.ndarray starts, cnp.ndarray cum, cnp.ndarray ports, cnp.ndarray port_index):
        cdef int i
        self.k0, self.k1, self.saddr, self.l2_len, self.probe_flags = k0, k1, saddr, l2_len, probe_flags
        if len(table) != RK_COUNT:
            raise ValueError(f"the state table has {RK_COUNT} entries")
        for i in range(RK_COUNT):
            self.table[i] = table[i]
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

    cdef inline uint32_t _expected_echo(self, uint32_t seq) noexcept nogil:
        """What a reply's acknowledgement number must be for a probe with sequence number seq."""
        return seq + (1 if self.probe_flags & TCP_SYN else 0) + (1 if self.probe_flags & TCP_FIN else 0)

    cdef int _classify(self, const uint8_t* pkt, uint32_t caplen, Result* out) noexcept nogil:
        """Fills `out` and returns 1 for a genuine reply to one of our probes, else 0."""
        cdef const uint8_t* ip
        cdef const uint8_t* l4
        cdef const uint8_t* qip
        cdef const uint8_t* qtcp
        cdef uint32_t iplen, ihl, qihl, left, src, dst, target
        cdef uint16_t sport, dport, ethertype
        cdef uint8_t flags, kind, reason
        cdef uint64_t c
        cdef int64_t index
        cdef uint32_t off = self.l2_len
        if self.l2_len == 14:
            if caplen < 14:
                return 0
            ethertype = get16(pkt + 12)
            if ethertype == 0x8100:                     # one VLAN tag
                if caplen < 18:
                    return 0
                ethertype = get16(pkt + 16)
                off = 18
            if ethertype != 0x0800:
                return 0
        if caplen < off + 20:
            return 0
        ip = pkt + off
        left = caplen - off
        ihl = (ip[0] & 0x0f) * 4
        if (ip[0] >> 4) != 4 or ihl < 20 or left < ihl:
            return 0
        iplen = get16(ip + 2)
        if iplen < ihl:
            return 0
        if iplen < left:
            left = iplen                                 # ignore Ethernet padding
        src = get32(ip + 12)
        dst = get32(ip + 16)
        if dst != self.saddr:
            return 0
        l4 = ip + ihl
        left -= ihl
        if ip[9] == 6:                                   # TCP: a reply from the target itself
            if left < 20:
                return 0
            sport = get16(l4)
            dport = get16(l4 + 2)
            flags = l4[13]
            if flags & TCP_RST:
                kind = RK_RESET_WINDOW if get16(l4 + 14) else RK_RESET
                reason = RS_RESET
            elif (flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK):
                kind = RK_SYN_ACK
                reason = RS_SYN_ACK
            else:
                return 0
            c = cookie_v4(self.k0, self.k1, self.saddr, src, sport)
            if dport != cookie_sport(c):
                self.bad_cookie += 1
                return 0
            if self.probe_flags & TCP_ACK:               # a RST to an ACK carries our ack as seq
                if get32(l4 + 4) != cookie_seq(c):
                    self.bad_cookie += 1
                    return 0
            elif get32(l4 + 8) != self._expected_echo(cookie_seq(c)):
                self.bad_cookie += 1
                return 0
            target = src
            out.window = get16(l4 + 14)
        elif ip[9] == 1:                                 # ICMP error quoting our probe
            if left < 8 + 20 or l4[0] != 3:
                return 0
            reason = unreach_reason(l4[1])
            if reason == RS_NONE:
                return 0
            qip = l4 + 8
            qihl = (qip[0] & 0x0f) * 4
            if (qip[0] >> 4) != 4 or qihl < 20 or left < 8 + qihl + 8 or qip[9] != 6:
                return 0
            if get32(qip + 12) != self.saddr:
                return 0
            target = get32(qip + 16)
            qtcp = qip + qihl
            sport = get16(qtcp + 2)                      # the probed port
            c = cookie_v4(self.k0, self.k1, self.saddr, target, sport)
            if get16(qtcp) != cookie_sport(c) or get32(qtcp + 4) != cookie_seq(c):
                self.bad_cookie += 1
                return 0
            kind = RK_ICMP_UNREACH
            out.window = 0
        else:
            return 0
        if self.table[kind] == ST_NONE:
            return 0
        index = space_index(&self.space, target, sport)
        if index < 0:
            self.not_in_scan += 1
            return 0
        out.index = <uint64_t>index
        out.ip = target
        out.port = sport
        out.proto = 6
        out.state = self.table[kind]
        out.reason = reason
        out.ttl = ip[8]
        return 1

    def parse(self, const uint8_t[::1] data, const uint8_t[::1] meta):
        """data, meta: what pcapy's next_batch() returned (meta: 16-byte records of native
        uint32 sec, usec, offset, caplen). Returns the genuine replies as a RESULT_DTYPE array."""
        cdef Py_ssize_t n = meta.shape[0] // 16, i, found = 0
        cdef const uint32_t* rec
        cdef uint32_t offset, caplen
        cdef Py_ssize_t size = data.shape[0]
        out = np.empty(n, dtype=RESULT_DTYPE)
        cdef Result* rows = <Result*>cnp.PyArray_DATA(out)
        cdef const uint8_t* base = &data[0] if size else NULL
        cdef const uint8_t* mbase = &meta[0] if n else NULL
        with nogil:
            for i in range(n):
                rec = <const uint32_t*>(mbase + 16 * i)
                offset = rec[2]
                caplen = rec[3]
                if <Py_ssize_t>offset + caplen > size:
                    continue
                found += self._classify(base + offset, caplen, rows + found)
            self.parsed += n
        return out[:found]
