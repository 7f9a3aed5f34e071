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

# What came back for a probe; a technique maps each kind to a state.
cdef enum:
    RK_SYN_ACK = 0
    RK_RESET = 1          # RST, window 0
    RK_RESET_WINDOW = 2   # RST with a non-zero window (what the Window scan looks at)
    RK_ICMP_UNREACH = 3   # ICMP destination unreachable, codes 0,1,2,3,9,10,13
    RK_NO_RESPONSE = 4
    RK_COUNT = 5

# Reasons, as nmap names them (see scanner/states.py for the names).
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
    RS_CONN_REFUSED = 11     # connect scan: the kernel saw a RST
