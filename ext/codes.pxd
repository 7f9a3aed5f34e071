# cython: language_level=3
"""Port states, reasons and reply kinds shared by the parser and Python (scanner/states.py)."""

cdef enum:
    ST_NONE = 0
    ST_OPEN = 1
    ST_CLOSED = 2
    ST_FILTERED = 3
    ST_UNFILTERED = 4
    ST_OPEN_FILTERED = 5
    ST_CLOSED_FILTERED = 6
    ST_UP = 7                 # host discovery: the host answered

# What came back for a probe; each probe kind maps every reply kind to a state.
cdef enum:
    RK_SYN_ACK = 0
    RK_RESET = 1              # RST, window 0
    RK_RESET_WINDOW = 2       # RST with a non-zero window (what the Window scan looks at)
    RK_ICMP_UNREACH = 3       # destination unreachable, codes 0,1,2,9,10,13 (v6: 0,1,3,5,6)
    RK_PORT_UNREACH = 4       # destination unreachable, port unreachable (v4 code 3, v6 code 4)
    RK_UDP_REPLY = 5
    RK_ECHO_REPLY = 6
    RK_TIMESTAMP_REPLY = 7
    RK_ARP_REPLY = 8
    RK_NO_RESPONSE = 9
    RK_INIT_ACK = 10          # SCTP INIT-ACK
    RK_ABORT = 11             # SCTP ABORT
    RK_PROTO_RESPONSE = 12    # -sO: any answer in the probed protocol
    RK_PROTO_UNREACH = 13     # destination unreachable, protocol unreachable (v4 code 2)
    RK_COUNT = 14

# Reasons, as nmap names them (see REASONS in parser.pyx for the names).
cdef enum:
    RS_NONE = 0
    RS_SYN_ACK = 1
    RS_RESET = 2
    RS_NO_RESPONSE = 3
    RS_NET_UNREACH = 4
    RS_HOST_UNREACH = 5
    RS_PROTO_UNREACH = 6
    RS_PORT_UNREACH = 7
    RS_NET_PROHIBITED = 8
    RS_HOST_PROHIBITED = 9
    RS_ADMIN_PROHIBITED = 10
    RS_CONN_REFUSED = 11      # connect scan: the kernel saw a RST
    RS_UDP_RESPONSE = 12
    RS_ECHO_REPLY = 13
    RS_TIMESTAMP_REPLY = 14
    RS_NO_ROUTE = 15          # ICMPv6 no route to destination
    RS_USER_SET = 16          # -Pn: the user said the host is up
    RS_ARP_RESPONSE = 17
    RS_INIT_ACK = 18          # SCTP
    RS_ABORT = 19
    RS_PROTO_RESPONSE = 20    # -sO
