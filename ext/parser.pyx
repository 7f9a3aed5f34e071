# cython: language_level=3
"""The capture side: one pass over a batch from pcapy-ng's next_batch(), checking bounds and
cookies, classifying each genuine reply into a row of a numpy structured array."""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from libc.string cimport memcpy, memcmp, memset

from checksum cimport get16, get32
from codes cimport *
from cookie cimport cookie_v4, cookie_v6, cookie_sport, cookie_seq, cookie_flow
from probes cimport TRACE_MAX_TTL, TRACE_SPORT_BASE, TRACE_SPORT_MASK
from space cimport Space, space_host4, space_host6, space_init
from probes cimport (ProbeKind, TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK, PROTO_ARP, PROTO_ICMP, PROTO_TCP,
                     PROTO_UDP, PROTO_ICMP6, ECHO_SNMP, payload_cookie, write_probe)
from sctp cimport PROTO_SCTP, sctp_reply, sctp_quote_ok
from ipproto cimport PROTO_IP_SCAN

cnp.import_array()

# One row per genuine reply. ip holds IPv4 addresses, ip6 IPv6 ones (the other is zero);
# the SYN-ACK's fingerprint fields (df, mss, wscale, tcpopts) feed the OS guess.
RESULT_DTYPE = np.dtype([("index", "<u8"), ("ip", "<u4"), ("ip6", "u1", (16,)), ("port", "<u2"),
                         ("proto", "u1"), ("state", "u1"), ("reason", "u1"), ("ttl", "u1"),
                         ("window", "<u2"), ("df", "u1"), ("wscale", "u1"), ("mss", "<u2"),
                         ("tcpopts", "u1", (8,))])

cdef packed struct Result:
    uint64_t index
    uint32_t ip
    uint8_t ip6[16]
    uint16_t port
    uint8_t proto
    uint8_t state
    uint8_t reason
    uint8_t ttl
    uint16_t window
    uint8_t df
    uint8_t wscale
    uint16_t mss
    uint8_t tcpopts[8]

STATES = {"open": ST_OPEN, "closed": ST_CLOSED, "filtered": ST_FILTERED, "unfiltered": ST_UNFILTERED,
          "open|filtered": ST_OPEN_FILTERED, "closed|filtered": ST_CLOSED_FILTERED, "up": ST_UP}
REASONS = {"syn-ack": RS_SYN_ACK, "reset": RS_RESET, "no-response": RS_NO_RESPONSE,
           "net-unreach": RS_NET_UNREACH, "host-unreach": RS_HOST_UNREACH,
           "proto-unreach": RS_PROTO_UNREACH, "port-unreach": RS_PORT_UNREACH,
           "net-prohibited": RS_NET_PROHIBITED, "host-prohibited": RS_HOST_PROHIBITED,
           "admin-prohibited": RS_ADMIN_PROHIBITED, "conn-refused": RS_CONN_REFUSED,
           "udp-response": RS_UDP_RESPONSE, "echo-reply": RS_ECHO_REPLY,
           "timestamp-reply": RS_TIMESTAMP_REPLY, "no-route": RS_NO_ROUTE, "user-set": RS_USER_SET,
           "arp-response": RS_ARP_RESPONSE, "init-ack": RS_INIT_ACK, "abort": RS_ABORT,
           "proto-response": RS_PROTO_RESPONSE}
# --traceroute: one row per genuine answer to a hop-limited probe (ReplyParser.parse_trace).
# index: the trace space's probe (host * n_slots + slot); ttl: the probe's hop limit; hop, hop6:
# who answered (a router's time-exceeded, or the target); final: 1 when it was the target;
# time: the capture's timestamp (seconds).
TRACE_DTYPE = np.dtype([("index", "<u8"), ("ttl", "u1"), ("final", "u1"), ("hop", "<u4"),
                        ("hop6", "u1", (16,)), ("time", "<f8")])

cdef packed struct TraceRow:
    uint64_t index
    uint8_t ttl
    uint8_t final
    uint32_t hop
    uint8_t hop6[16]
    double time

REPLY_KINDS = {"syn-ack": RK_SYN_ACK, "reset": RK_RESET, "reset-window": RK_RESET_WINDOW,
               "icmp-unreach": RK_ICMP_UNREACH, "port-unreach": RK_PORT_UNREACH,
               "udp-response": RK_UDP_REPLY, "echo-reply": RK_ECHO_REPLY,
               "timestamp-reply": RK_TIMESTAMP_REPLY, "arp-response": RK_ARP_REPLY,
               "no-response": RK_NO_RESPONSE, "init-ack": RK_INIT_ACK, "abort": RK_ABORT,
               "proto-response": RK_PROTO_RESPONSE, "proto-unreach": RK_PROTO_UNREACH}


cdef inline uint8_t unreach_reason4(uint8_t code) noexcept nogil:
    """nmap's reason for the ICMP destination-unreachable codes it acts on (others: RS_NONE)."""
    if code == 0: return RS_NET_UNREACH
    if code == 1: return RS_HOST_UNREACH
    if code == 2: return RS_PROTO_UNREACH
    if code == 3: return RS_PORT_UNREACH
    if code == 9: return RS_NET_PROHIBITED
    if code == 10: return RS_HOST_PROHIBITED
    if code == 13: return RS_ADMIN_PROHIBITED
    return RS_NONE


cdef inline uint8_t unreach_reason6(uint8_t code) noexcept nogil:
    if code == 0: return RS_NO_ROUTE
    if code == 1 or code == 5 or code == 6: return RS_ADMIN_PROHIBITED
    if code == 3: return RS_HOST_UNREACH
    if code == 4: return RS_PORT_UNREACH
    return RS_NONE


cdef inline int ipv6_upper(const uint8_t* ip, uint32_t left, uint32_t* hlen) noexcept nogil:
    """The upper-layer protocol of an IPv6 packet (`left` bytes at ip), past its extension headers
    (hop-by-hop, routing, destination options, a first fragment); *hlen: where that header
    starts. -1: a non-first fragment, a chain past the captured bytes or longer than 8 headers."""
    cdef uint32_t off = 40
    cdef uint8_t nh = ip[6], nxt
    cdef int n
    for n in range(8):
        if nh == 0 or nh == 43 or nh == 60 or nh == 44:
            if off + 8 > left:
                return -1
            nxt = ip[off]
            if nh == 44:
                if get16(ip + off + 2) & 0xfff8:    # offset != 0: no upper-layer header here
                    return -1
                off += 8
            else:
                off += (<uint32_t>ip[off + 1] + 1) * 8
            nh = nxt
        else:
            if off > left:
                return -1
            hlen[0] = off
            return nh
    return -1


cdef inline bint ber_tlv(const uint8_t* p, uint32_t n, uint32_t* i, uint8_t* tag, uint32_t* length) noexcept nogil:
    """Reads one BER tag and length at p[*i]; *i then points at the contents, which fit in n."""
    cdef uint32_t j = i[0], k, nb
    if j + 2 > n:
        return False
    tag[0] = p[j]
    length[0] = p[j + 1]
    j += 2
    if length[0] & 0x80:                         # long form: 1-3 length bytes
        nb = length[0] & 0x7f
        if nb == 0 or nb > 3 or j + nb > n:
            return False
        length[0] = 0
        for k in range(nb):
            length[0] = (length[0] << 8) | p[j + k]
        j += nb
    if j + length[0] > n:
        return False
    i[0] = j
    return True


cdef int64_t snmp_request_id(const uint8_t* p, uint32_t n) noexcept nogil:
    """The request-id of an SNMP v1/v2c message, SEQUENCE { version, community, PDU { request-id,
    ... } }, as a signed value; -1 when it is not such a message (or the id is negative)."""
    cdef uint32_t i = 0, length, k
    cdef uint8_t tag
    cdef int64_t v
    if not ber_tlv(p, n, &i, &tag, &length) or tag != 0x30:
        return -1
    if not ber_tlv(p, n, &i, &tag, &length) or tag != 0x02:      # version
        return -1
    i += length
    if not ber_tlv(p, n, &i, &tag, &length) or tag != 0x04:      # community
        return -1
    i += length
    if not ber_tlv(p, n, &i, &tag, &length) or (tag & 0xf0) != 0xa0:
        return -1
    if not ber_tlv(p, n, &i, &tag, &length) or tag != 0x02 or length < 1 or length > 5:
        return -1
    if p[i] & 0x80:
        return -1
    v = 0
    for k in range(length):
        v = (v << 8) | p[i + k]
    return v


cdef inline bint udp_echo_ok(const ProbeKind* k, const uint8_t* data, uint32_t n, uint64_t c) noexcept nogil:
    """Whether a UDP reply's payload (n bytes) echoes the cookie bits of the probe's payload."""
    cdef uint32_t want = payload_cookie(k, c)
    if k.ck_echo == ECHO_SNMP:
        return snmp_request_id(data, n) == <int64_t>want
    if k.ck_echo < 0 or n < <uint32_t>k.ck_echo + k.ck_len:
        return False
    if k.ck_len == 2:
        return get16(data + k.ck_echo) == want
    return get32(data + k.ck_echo) == want


# Replies to UDP probes whose protocol echoes nothing carry only the 15-bit source-port cookie:
# a forger who tries every port hits it once. A bad cookie claiming (host, UDP slot) taints that
# index in this fixed table, and a later "genuine" reply for it is taken for the forgery it
# probably is: the forger gets one guess per port, not 32768. 1 MiB whatever the scan size.
cdef enum:
    TAINT_BITS = 23


cdef inline uint64_t taint_bit(uint64_t index) noexcept nogil:
    return (index * 0x9E3779B97F4A7C15ULL) >> (64 - TAINT_BITS)


cdef inline void tcp_fingerprint(const uint8_t* tcp, uint32_t left, Result* out) noexcept nogil:
    """MSS, window scale and the order of the options of a SYN-ACK, within the captured bytes."""
    cdef uint32_t end = (tcp[12] >> 4) * 4, i = 20, n = 0
    cdef uint8_t kind, length
    if end > left:
        end = left
    while i < end and n < 8:
        kind = tcp[i]
        out.tcpopts[n] = kind
        n += 1
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= end:
            break
        length = tcp[i + 1]
        if length < 2 or i + length > end:
            break
        if kind == 2 and length == 4:
            out.mss = get16(tcp + i + 2)
        elif kind == 3 and length == 3:
            out.wscale = tcp[i + 2]
        i += length


cdef class ReplyParser:
    """Parses captured frames for one scan. kinds: the scan's PROBE_KIND_DTYPE array, whose
    tables map each reply kind to a state; space: ScanSpace.arrays(); saddr: our address."""
    cdef uint64_t k0, k1
    cdef uint32_t saddr4
    cdef uint8_t saddr6[16]
    cdef int l2_len
    cdef Space space
    cdef const ProbeKind* kinds
    cdef const uint8_t* templates
    cdef int template_l2
    cdef uint8_t* scratch          # a probe rebuilt to compare with the one an ICMP error quotes
    cdef uint8_t* taint            # TAINT_BITS bits, or NULL without UDP probes
    cdef object _keep
    cdef bint ip_scan              # -sO: slots are IP protocols (ext/ipproto.pxd)
    cdef readonly uint64_t bad_cookie, not_in_scan, parsed, forged
    cdef public uint32_t data_length     # --data-length: a RST then acknowledges the probe's data too
    cdef public uint16_t source_port     # -g: our probes' fixed source port (0: the cookie's)

    def __init__(self, uint64_t k0, uint64_t k1, bytes saddr, int l2_len, cnp.ndarray kinds, dict space,
                 bytes templates, int template_l2_len=14):
        """templates, template_l2_len: the template blob and link header length that the sender
        was given (Probes.compile())."""
        self.k0, self.k1, self.l2_len = k0, k1, l2_len
        keep = space_init(&self.space, space, kinds, sizeof(ProbeKind))      # checks kinds too
        scratch = np.zeros(max([int(n) for n in kinds["length"]] + [64]), dtype=np.uint8)
        taint = np.zeros((1 << TAINT_BITS) // 8 if (kinds["proto"] == PROTO_UDP).any() else 1, dtype=np.uint8)
        self._keep = (keep, kinds, templates, scratch, taint)
        if max([int(o) + int(n) for o, n in zip(kinds["offset"], kinds["length"])] + [0]) > len(templates):
            raise ValueError("templates: shorter than the probe kinds say")
        self.kinds = <const ProbeKind*>cnp.PyArray_DATA(kinds)
        self.templates = <const uint8_t*><const char*>templates
        self.template_l2 = template_l2_len
        self.scratch = <uint8_t*>cnp.PyArray_DATA(scratch)
        self.taint = <uint8_t*>cnp.PyArray_DATA(taint) if len(taint) > 1 else NULL
        self.ip_scan = bool((kinds["ip_scan"] != 0).any())
        if self.space.family == 4:
            self.saddr4 = int.from_bytes(saddr, "big")
        else:
            memcpy(self.saddr6, <const char*>saddr, 16)

    cdef inline uint64_t _cookie(self, const uint8_t* target, uint32_t target4, uint16_t port) noexcept nogil:
        if self.space.family == 4:
            return cookie_v4(self.k0, self.k1, self.saddr4, target4, port)
        return cookie_v6(self.k0, self.k1, self.saddr6, target, port)

    cdef inline int64_t _host(self, const uint8_t* target, uint32_t target4) noexcept nogil:
        return space_host4(&self.space, target4) if self.space.family == 4 else space_host6(&self.space, target)

    cdef int64_t _index(self, const uint8_t* target, uint32_t target4, int32_t slot) noexcept nogil:
        cdef int64_t host = self._host(target, target4)
        return -1 if host < 0 else host * <int64_t>self.space.n_slots + slot

    cdef void _set_taint(self, const uint8_t* target, uint32_t target4, int32_t slot) noexcept nogil:
        cdef int64_t index = self._index(target, target4, slot)
        cdef uint64_t bit
        if index >= 0 and self.taint != NULL:
            bit = taint_bit(<uint64_t>index)
            self.taint[bit >> 3] |= <uint8_t>(1 << (bit & 7))

    cdef bint _tainted(self, const uint8_t* target, uint32_t target4, int32_t slot) noexcept nogil:
        cdef int64_t index = self._index(target, target4, slot)
        cdef uint64_t bit
        if index < 0 or self.taint == NULL:
            return False
        bit = taint_bit(<uint64_t>index)
        return (self.taint[bit >> 3] >> (bit & 7)) & 1

    cdef bint _udp_quote_ok(self, const uint8_t* q, uint32_t qhl, uint32_t left, int32_t slot,
                            const uint8_t* target, uint32_t target4, uint64_t c) noexcept nogil:
        """Whether an ICMP error quotes the UDP probe we sent, beyond its source port: the IPv4 id
        or IPv6 flow label, then the UDP header (length, checksum: a sum over the payload's cookie
        bits) and as much of the payload as is quoted, all compared with the probe rebuilt."""
        cdef const ProbeKind* k = &self.kinds[self.space.slot_kind[slot]]
        cdef uint32_t sent_len = write_probe(self.scratch, self.templates, k, self.template_l2, self.space.family,
                                             target4, target, self.space.slot_port[slot], slot, c, 0)
        cdef const uint8_t* sent = self.scratch + self.template_l2
        cdef uint32_t sent_hl = 20 if self.space.family == 4 else 40
        cdef uint32_t n = left - qhl
        if self.space.family == 4:
            # a zero id would have been replaced by a raw socket's kernel: nothing to compare
            if get16(sent + 4) != 0 and get16(q + 4) != get16(sent + 4):
                return False
        elif (get32(q) & 0xfffff) != (get32(sent) & 0xfffff):
            return False
        if n > sent_len - self.template_l2 - sent_hl:
            n = sent_len - self.template_l2 - sent_hl
        return memcmp(q + qhl, sent + sent_hl, n) == 0

    cdef inline uint16_t _sport(self, uint64_t c) noexcept nogil:
        """Our probe's source port: the cookie's, or -g's (replies then rest on the sequence cookie)."""
        return self.source_port if self.source_port else cookie_sport(c)

    cdef inline bint _tcp_echo_ok(self, const uint8_t* tcp, uint8_t probe_flags, uint64_t c) noexcept nogil:
        """Whether a TCP reply echoes the cookie of the probe it answers."""
        cdef uint32_t seq = cookie_seq(c)
        if get16(tcp + 2) != self._sport(c):
            return False
        if probe_flags & TCP_ACK:                   # a RST to an ACK carries our ack as its seq
            return get32(tcp + 4) == seq
        seq = seq + (1 if probe_flags & TCP_SYN else 0) + (1 if probe_flags & TCP_FIN else 0)
        return get32(tcp + 8) == seq or (self.data_length != 0 and get32(tcp + 8) == seq + self.data_length)

    cdef inline bint _ip_cookie_ok(self, const uint8_t* q, uint64_t c) noexcept nogil:
        """Whether a quoted IP header carries our probe's cookie bits: the IPv4 id (unless zero,
        which a raw socket's kernel replaces) or the IPv6 flow label (see probes.pxd)."""
        if self.space.family == 4:
            return <uint16_t>(c >> 48) == 0 or get16(q + 4) == <uint16_t>(c >> 48)
        return (get32(q) & 0xfffff) == cookie_flow(c)

    cdef int _ipproto_quoted(self, const uint8_t* q, int proto, const uint8_t* ql4, uint32_t n,
                             const uint8_t* target, uint32_t target4, Result* out) noexcept nogil:
        """-sO: the slot of the protocol an ICMP error quotes (n bytes past the quoted IP header),
        or -1. The quoted IP header carries the cookie; TCP, UDP and SCTP probes their source port."""
        cdef int32_t slot = self.space.ip_slot[proto]
        cdef uint64_t c
        if slot < 0:
            self.not_in_scan += 1
            return -1
        c = self._cookie(target, target4, <uint16_t>proto)
        if not self._ip_cookie_ok(q, c) or ((proto == PROTO_TCP or proto == PROTO_UDP or proto == PROTO_SCTP)
                                            and (n < 2 or get16(ql4) != self._sport(c))):
            self.bad_cookie += 1
            return -1
        out.port = <uint16_t>proto
        out.proto = PROTO_IP_SCAN
        return slot

    cdef int32_t _ipproto_reply(self, int proto, const uint8_t* l4, uint32_t left, const uint8_t* target,
                                uint32_t target4) noexcept nogil:
        """-sO: the slot of a reply from a target in a protocol it was probed with, or -1. Where
        the protocol can echo the cookie, the reply must (see ext/ipproto.pxd)."""
        cdef int32_t slot = self.space.ip_slot[proto]
        cdef uint64_t c
        cdef bint ok = True
        if slot < 0:
            self.not_in_scan += 1
            return -1
        c = self._cookie(target, target4, <uint16_t>proto)
        if proto == PROTO_TCP:
            ok = left >= 20 and self._tcp_echo_ok(l4, TCP_ACK, c)
        elif proto == PROTO_UDP:
            ok = left >= 8 and get16(l4 + 2) == self._sport(c)
        elif proto == PROTO_SCTP:
            ok = left >= 16 and get16(l4 + 2) == self._sport(c) and get32(l4 + 4) == cookie_seq(c)
        if not ok:
            self.bad_cookie += 1
            return -1
        return slot

    cdef int _quoted(self, const uint8_t* q, uint32_t left, Result* out,
                     const uint8_t** target, uint32_t* target4) noexcept nogil:
        """Matches the probe quoted in an ICMP error to its slot; returns the slot or -1."""
        cdef uint32_t qhl
        cdef int proto
        cdef const uint8_t* ql4
        cdef int32_t slot
        cdef uint64_t c
        if self.space.family == 4:
            if left < 20 or (q[0] >> 4) != 4:
                return -1
            qhl = (q[0] & 0x0f) * 4
            # our probes are never fragments: a quoted fragment is not one of them
            # (-sO probes may be a bare IP header: nothing past it to quote)
            if (qhl < 20 or left < qhl + (0 if self.ip_scan else 8) or get32(q + 12) != self.saddr4
                    or get16(q + 6) & 0x3fff):
                return -1
            proto = q[9]
            target4[0] = get32(q + 16)
            target[0] = q + 16
        else:
            if left < 48 or (q[0] >> 4) != 6 or memcmp(q + 8, self.saddr6, 16) != 0:
                return -1
            proto = ipv6_upper(q, left, &qhl)
            if proto < 0 or left < qhl + (0 if self.ip_scan else 8):
                return -1
            target[0] = q + 24
        ql4 = q + qhl
        if self.ip_scan:
            return self._ipproto_quoted(q, proto, ql4, left - qhl, target[0], target4[0], out)
        if proto == PROTO_TCP:
            slot = self.space.tcp_slot[get16(ql4 + 2)]
        elif proto == PROTO_UDP:
            slot = self.space.udp_slot[get16(ql4 + 2)]
        elif proto == PROTO_SCTP:
            slot = self.space.sctp_slot[get16(ql4 + 2)]
        elif proto == PROTO_ICMP or proto == PROTO_ICMP6:
            slot = get16(ql4 + 6)
            if <uint64_t>slot >= self.space.n_slots or self.kinds[self.space.slot_kind[slot]].proto != proto:
                self.not_in_scan += 1
                return -1
        else:
            return -1
        if slot < 0:
            self.not_in_scan += 1
            return -1
        c = self._cookie(target[0], target4[0], self.space.slot_port[slot])
        if proto == PROTO_TCP:
            if get16(ql4) != self._sport(c) or get32(ql4 + 4) != cookie_seq(c):
                slot = -2
        elif proto == PROTO_UDP:
            if get16(ql4) != self._sport(c):
                slot = -2
            elif not self._udp_quote_ok(q, qhl, left, slot, target[0], target4[0], c):
                self.forged += 1                # the port guessed right, the rest of the probe not
                return -1
        elif proto == PROTO_SCTP:
            if get16(ql4) != self._sport(c) or not sctp_quote_ok(ql4, left - qhl, cookie_seq(c),
                                                                 self._ip_cookie_ok(q, c)):
                slot = -2
        elif get16(ql4 + 4) != <uint16_t>c:
            slot = -2
        if slot == -2:
            self.bad_cookie += 1
            return -1
        out.port = self.space.slot_port[slot]
        out.proto = proto
        return slot

    cdef int _arp_reply(self, const uint8_t* arp, uint32_t left, Result* out) noexcept nogil:
        """An ARP reply to our address from a target: the host is up. ARP has nowhere to carry a
        cookie; a reply must at least be for our address, from an address we asked about."""
        cdef int64_t host
        cdef int32_t slot = self.space.arp_slot
        if slot < 0 or left < 28 or get16(arp + 6) != 2 or get32(arp + 24) != self.saddr4:
            return 0
        host = space_host4(&self.space, get32(arp + 14))
        if host < 0:
            self.not_in_scan += 1
            return 0
        out.index = <uint64_t>host * self.space.n_slots + <uint64_t>slot
        out.ip = get32(arp + 14)
        out.proto = PROTO_ARP
        out.state = self.kinds[self.space.slot_kind[slot]].table[RK_ARP_REPLY]
        out.reason = RS_ARP_RESPONSE
        return out.state != ST_NONE

    cdef int _classify(self, const uint8_t* pkt, uint32_t caplen, Result* out) noexcept nogil:
        """Fills `out` and returns 1 for a genuine reply to one of our probes, else 0."""
        cdef const uint8_t* ip
        cdef const uint8_t* l4
        cdef const uint8_t* src = NULL
        cdef const uint8_t* target = NULL
        cdef uint32_t iplen, ihl, left, src4 = 0, target4 = 0
        cdef uint16_t sport, ethertype, frag = 0
        cdef uint8_t flags, rk, reason, itype, icode
        cdef int proto, found
        cdef uint64_t c
        cdef int64_t host
        cdef int32_t slot
        cdef uint32_t off = self.l2_len
        cdef const ProbeKind* kind
        memset(out, 0, sizeof(Result))
        if self.l2_len == 14:
            if caplen < 14:
                return 0
            ethertype = get16(pkt + 12)
            if ethertype == 0x8100:                     # one VLAN tag
                if caplen < 18:
                    return 0
                ethertype = get16(pkt + 16)
                off = 18
            if ethertype == 0x0806:
                return self._arp_reply(pkt + off, caplen - off, out)
            if ethertype != (0x0800 if self.space.family == 4 else 0x86DD):
                return 0
        if caplen < off + 20:
            return 0
        ip = pkt + off
        left = caplen - off
        if self.space.family == 4:
            ihl = (ip[0] & 0x0f) * 4
            if (ip[0] >> 4) != 4 or ihl < 20 or left < ihl:
                return 0
            iplen = get16(ip + 2)
            if iplen < ihl:
                return 0
            if iplen < left:
                left = iplen                             # ignore Ethernet padding
            if get32(ip + 16) != self.saddr4:
                return 0
            frag = get16(ip + 6)
            if frag & 0x1fff:                            # a non-first fragment: no transport header
                return 0
            src4 = get32(ip + 12)
            src = ip + 12
            proto = ip[9]
            out.ttl = ip[8]
            out.df = (ip[6] >> 6) & 1
        else:
            if (ip[0] >> 4) != 6 or left < 40:
                return 0
            iplen = 40 + get16(ip + 4)
            if iplen < left:
                left = iplen
            if memcmp(ip + 24, self.saddr6, 16) != 0:
                return 0
            src = ip + 8
            proto = ipv6_upper(ip, left, &ihl)
            if proto < 0:
                return 0
            out.ttl = ip[7]
        l4 = ip + ihl
        left -= ihl
        target, target4 = src, src4
        if self.ip_scan and proto != PROTO_ICMP and proto != PROTO_ICMP6:    # -sO: any protocol
            slot = self._ipproto_reply(proto, l4, left, target, target4)
            if slot < 0:
                return 0
            rk, reason = RK_PROTO_RESPONSE, RS_PROTO_RESPONSE
            out.port = <uint16_t>proto
            out.proto = PROTO_IP_SCAN
        elif proto == PROTO_TCP:                         # a reply from the target itself
            if left < 20 or (frag & 0x2000 and left < <uint32_t>(l4[12] >> 4) * 4):
                return 0                                 # a first fragment must hold the whole header
            sport = get16(l4)
            flags = l4[13]
            if flags & TCP_RST:
                rk = RK_RESET_WINDOW if get16(l4 + 14) else RK_RESET
                reason = RS_RESET
            elif (flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK):
                rk = RK_SYN_ACK
                reason = RS_SYN_ACK
                tcp_fingerprint(l4, left, out)
            else:
                return 0
            slot = self.space.tcp_slot[sport]
            if slot < 0:
                self.not_in_scan += 1
                return 0
            c = self._cookie(target, target4, sport)
            if not self._tcp_echo_ok(l4, self.kinds[self.space.slot_kind[slot]].tcp_flags, c):
                self.bad_cookie += 1
                return 0
            out.window = get16(l4 + 14)
            out.port = sport
            out.proto = PROTO_TCP
        elif proto == PROTO_UDP:
            if left < 8:
                return 0
            sport = get16(l4)
            slot = self.space.udp_slot[sport]
            if slot < 0:
                self.not_in_scan += 1
                return 0
            c = self._cookie(target, target4, sport)
            if get16(l4 + 2) != self._sport(c):
                self.bad_cookie += 1
                self._set_taint(target, target4, slot)
                return 0
            kind = &self.kinds[self.space.slot_kind[slot]]
            if kind.ck_len:
                iplen = get16(l4 + 4)                    # the UDP length bounds the payload
                if iplen < 8:
                    return 0
                if iplen > left:
                    iplen = left
                if not udp_echo_ok(kind, l4 + 8, iplen - 8, c):
                    self.forged += 1
                    return 0
            elif self._tainted(target, target4, slot):
                self.forged += 1                         # a wrong guess at this port came first
                return 0
            rk, reason = RK_UDP_REPLY, RS_UDP_RESPONSE
            out.port = sport
            out.proto = PROTO_UDP
        elif proto == PROTO_SCTP:
            if left < 16:
                return 0
            sport = get16(l4)
            slot = self.space.sctp_slot[sport]
            if slot < 0:
                self.not_in_scan += 1
                return 0
            c = self._cookie(target, target4, sport)
            if get16(l4 + 2) != self._sport(c):
                self.bad_cookie += 1
                return 0
            found = sctp_reply(l4, left, cookie_seq(c), &reason)
            if found == -2:
                self.bad_cookie += 1
            if found < 0:
                return 0
            rk = <uint8_t>found
            out.port = sport
            out.proto = PROTO_SCTP
        elif proto == PROTO_ICMP or proto == PROTO_ICMP6:
            if left < 8 or proto != (PROTO_ICMP if self.space.family == 4 else PROTO_ICMP6):
                return 0
            itype, icode = l4[0], l4[1]
            if (proto == PROTO_ICMP and (itype == 0 or itype == 14)) or (proto == PROTO_ICMP6 and itype == 129):
                if left < 12:
                    return 0
                slot = get16(l4 + 6)
                if <uint64_t>slot >= self.space.n_slots or self.kinds[self.space.slot_kind[slot]].proto != proto:
                    self.not_in_scan += 1                # names no ICMP probe of this scan
                    return 0
                c = self._cookie(target, target4, self.space.slot_port[slot])
                if get16(l4 + 4) != <uint16_t>c or get32(l4 + 8) != cookie_seq(c):
                    self.bad_cookie += 1
                    return 0
                rk = RK_TIMESTAMP_REPLY if itype == 14 else RK_ECHO_REPLY
                reason = RS_TIMESTAMP_REPLY if itype == 14 else RS_ECHO_REPLY
                out.proto = proto
            elif (proto == PROTO_ICMP and itype == 3) or (proto == PROTO_ICMP6 and itype == 1):
                reason = unreach_reason4(icode) if proto == PROTO_ICMP else unreach_reason6(icode)
                if reason == RS_NONE:
                    return 0
                rk = RK_PORT_UNREACH if reason == RS_PORT_UNREACH else (
                    RK_PROTO_UNREACH if reason == RS_PROTO_UNREACH else RK_ICMP_UNREACH)
                slot = self._quoted(l4 + 8, left - 8, out, &target, &target4)
                if slot < 0:
                    return 0
            else:
                return 0
        else:
            return 0
        kind = &self.kinds[self.space.slot_kind[slot]]
        if kind.ip_scan:                                 # -sO: results name the protocol
            out.port = self.space.slot_port[slot]
            out.proto = PROTO_IP_SCAN
            # nmap: protocol/port unreachable says closed/open only from the target itself
            if (rk == RK_PROTO_UNREACH or rk == RK_PORT_UNREACH) and (
                    src4 != target4 if self.space.family == 4 else memcmp(src, target, 16) != 0):
                rk = RK_ICMP_UNREACH
        if kind.table[rk] == ST_NONE:
            return 0
        host = self._host(target, target4)
        if host < 0:
            self.not_in_scan += 1
            return 0
        out.index = <uint64_t>host * self.space.n_slots + <uint64_t>slot
        if self.space.family == 4:
            out.ip = target4
        else:
            memcpy(out.ip6, target, 16)
        out.state = kind.table[rk]
        out.reason = reason
        return 1

    # -- --traceroute: answers to hop-limited probes (probes.pxd limit_hops) ---------------------

    cdef int _hop_ttl(self, const uint8_t* l4, int proto, int32_t slot, uint64_t c, bint reply) noexcept nogil:
        """The hop limit a probe carried, from its transport header as quoted (reply False) or
        from the target's reply to it (reply True); -1 when the cookie does not match."""
        cdef const ProbeKind* k = &self.kinds[self.space.slot_kind[slot]]
        cdef uint32_t d
        if proto == PROTO_TCP:
            if reply:                                    # our port back, our seq acknowledged
                if get16(l4 + 2) != cookie_sport(c):
                    return -1
                d = get32(l4 + 4) - cookie_seq(c) if k.tcp_flags & TCP_ACK else \
                    get32(l4 + 8) - cookie_seq(c) - (1 if k.tcp_flags & TCP_SYN else 0)
            else:
                if get16(l4) != cookie_sport(c):
                    return -1
                d = get32(l4 + 4) - cookie_seq(c)
        elif proto == PROTO_UDP:
            d = (get16(l4) - cookie_sport(c)) & TRACE_SPORT_MASK
        else:
            d = <uint16_t>(get16(l4 + 4) - <uint16_t>c)
        return <int>d if 1 <= d <= TRACE_MAX_TTL else -1

    cdef int _trace_quoted(self, const uint8_t* q, uint32_t left, TraceRow* out,
                           const uint8_t** target, uint32_t* target4) noexcept nogil:
        """A hop-limited probe of ours quoted in an ICMP error: fills out.index and out.ttl;
        returns 1, or 0 when the quote is not of one (the cookie of the quoted header, its IPv4
        id or IPv6 flow label, and a hop limit in range)."""
        cdef uint32_t qhl
        cdef int proto, ttl
        cdef const uint8_t* ql4
        cdef int32_t slot
        cdef int64_t host
        cdef uint64_t c
        cdef bint ok
        if self.space.family == 4:
            if left < 20 or (q[0] >> 4) != 4:
                return 0
            qhl = (q[0] & 0x0f) * 4
            if qhl < 20 or left < qhl + 8 or get32(q + 12) != self.saddr4 or get16(q + 6) & 0x3fff:
                return 0
            proto = q[9]
            target4[0] = get32(q + 16)
            target[0] = q + 16
        else:
            if left < 48 or (q[0] >> 4) != 6 or memcmp(q + 8, self.saddr6, 16) != 0:
                return 0
            proto = ipv6_upper(q, left, &qhl)
            if proto < 0 or left < qhl + 8:
                return 0
            target[0] = q + 24
        ql4 = q + qhl
        if proto == PROTO_TCP:
            slot = self.space.tcp_slot[get16(ql4 + 2)]
        elif proto == PROTO_UDP:
            slot = self.space.udp_slot[get16(ql4 + 2)]
        elif proto == PROTO_ICMP or proto == PROTO_ICMP6:
            slot = get16(ql4 + 6)
            if <uint64_t>slot >= self.space.n_slots or self.kinds[self.space.slot_kind[slot]].proto != proto:
                slot = -1
        else:
            return 0
        host = self._host(target[0], target4[0])
        if slot < 0 or host < 0:
            self.not_in_scan += 1
            return 0
        c = self._cookie(target[0], target4[0], self.space.slot_port[slot])
        if self.space.family == 4:
            # (a zero id would have been replaced by a raw socket's kernel: nothing to compare)
            ok = get16(q + 4) == <uint16_t>(c >> 48) or <uint16_t>(c >> 48) == 0
        else:
            ok = (get32(q) & 0xfffff) == cookie_flow(c)
        ttl = self._hop_ttl(ql4, proto, slot, c, False) if ok else -1
        if ttl < 0:
            self.bad_cookie += 1
            return 0
        out.index = <uint64_t>host * self.space.n_slots + <uint64_t>slot
        out.ttl = <uint8_t>ttl
        return 1

    cdef int _trace_classify(self, const uint8_t* pkt, uint32_t caplen, TraceRow* out) noexcept nogil:
        """Fills out and returns 1 for a genuine answer to a hop-limited probe: a time-exceeded
        (or unreachable) quoting it, or the target's own reply (SYN-ACK/RST, echo reply)."""
        cdef const uint8_t* ip
        cdef const uint8_t* l4
        cdef const uint8_t* src
        cdef const uint8_t* target = NULL
        cdef uint32_t ihl, left, iplen, src4 = 0, target4 = 0
        cdef uint32_t off = self.l2_len
        cdef uint16_t ethertype
        cdef int proto, ttl
        cdef int32_t slot
        cdef int64_t host
        cdef uint64_t c
        cdef uint8_t itype, flags
        if self.l2_len == 14:
            if caplen < 14:
                return 0
            ethertype = get16(pkt + 12)
            if ethertype == 0x8100:
                if caplen < 18:
                    return 0
                ethertype = get16(pkt + 16)
                off = 18
            if ethertype != (0x0800 if self.space.family == 4 else 0x86DD):
                return 0
        if caplen < off + 20:
            return 0
        ip = pkt + off
        left = caplen - off
        if self.space.family == 4:
            ihl = (ip[0] & 0x0f) * 4
            if (ip[0] >> 4) != 4 or ihl < 20 or left < ihl or get32(ip + 16) != self.saddr4 or get16(ip + 6) & 0x1fff:
                return 0
            iplen = get16(ip + 2)
            if iplen < ihl:
                return 0
            if iplen < left:
                left = iplen
            src4 = get32(ip + 12)
            src = ip + 12
            proto = ip[9]
        else:
            if (ip[0] >> 4) != 6 or left < 40 or memcmp(ip + 24, self.saddr6, 16) != 0:
                return 0
            iplen = 40 + get16(ip + 4)
            if iplen < left:
                left = iplen
            src = ip + 8
            proto = ipv6_upper(ip, left, &ihl)
            if proto < 0:
                return 0
        l4 = ip + ihl
        left -= ihl
        if proto == PROTO_ICMP or proto == PROTO_ICMP6:
            if left < 8 or proto != (PROTO_ICMP if self.space.family == 4 else PROTO_ICMP6):
                return 0
            itype = l4[0]
            if (proto == PROTO_ICMP and itype == 0) or (proto == PROTO_ICMP6 and itype == 129):
                if left < 12:
                    return 0
                slot = get16(l4 + 6)
                host = self._host(src, src4)
                if <uint64_t>slot >= self.space.n_slots or self.kinds[self.space.slot_kind[slot]].proto != proto \
                        or host < 0:
                    self.not_in_scan += 1
                    return 0
                c = self._cookie(src, src4, self.space.slot_port[slot])
                ttl = self._hop_ttl(l4, proto, slot, c, True) if get32(l4 + 8) == cookie_seq(c) else -1
                if ttl < 0:
                    self.bad_cookie += 1
                    return 0
                out.index = <uint64_t>host * self.space.n_slots + <uint64_t>slot
                out.ttl = <uint8_t>ttl
                out.final = 1
            elif (proto == PROTO_ICMP and (itype == 11 or itype == 3)) or \
                    (proto == PROTO_ICMP6 and (itype == 3 or itype == 1)):
                if not self._trace_quoted(l4 + 8, left - 8, out, &target, &target4):
                    return 0
                # An error from the probed address itself (port unreachable): the target reached.
                if self.space.family == 4:
                    out.final = src4 == target4
                else:
                    out.final = memcmp(src, target, 16) == 0
            else:
                return 0
        elif proto == PROTO_TCP:
            if left < 20:
                return 0
            flags = l4[13]
            if not (flags & TCP_RST or (flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK)):
                return 0
            slot = self.space.tcp_slot[get16(l4)]
            host = self._host(src, src4)
            if slot < 0 or host < 0:
                self.not_in_scan += 1
                return 0
            c = self._cookie(src, src4, get16(l4))
            ttl = self._hop_ttl(l4, proto, slot, c, True)
            if ttl < 0:
                self.bad_cookie += 1
                return 0
            out.index = <uint64_t>host * self.space.n_slots + <uint64_t>slot
            out.ttl = <uint8_t>ttl
            out.final = 1
        else:
            return 0
        if self.space.family == 4:
            out.hop = src4
        else:
            memcpy(out.hop6, src, 16)
        return 1

    def parse_trace(self, const uint8_t[::1] data, const uint8_t[::1] meta):
        """--traceroute: like parse(), for the answers to hop-limited probes (the sender's
        send_hop_limited); returns TRACE_DTYPE rows."""
        cdef Py_ssize_t n = meta.shape[0] // 16, i, found = 0
        cdef const uint32_t* rec
        cdef uint32_t offset, caplen
        cdef Py_ssize_t size = data.shape[0]
        out = np.empty(n, dtype=TRACE_DTYPE)
        cdef TraceRow* rows = <TraceRow*>cnp.PyArray_DATA(out)
        cdef const uint8_t* base = &data[0] if size else NULL
        cdef const uint8_t* mbase = &meta[0] if n else NULL
        with nogil:
            for i in range(n):
                rec = <const uint32_t*>(mbase + 16 * i)
                offset = rec[2]
                caplen = rec[3]
                if <Py_ssize_t>offset + caplen > size:
                    continue
                memset(rows + found, 0, sizeof(TraceRow))
                if self._trace_classify(base + offset, caplen, rows + found):
                    rows[found].time = rec[0] + rec[1] * 1e-6
                    found += 1
            self.parsed += n
        return out[:found]

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
