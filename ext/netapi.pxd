# cython: language_level=3
"""C declarations for the Linux socket calls the sender uses."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct sockaddr:
        unsigned short sa_family
    struct iovec:
        void* iov_base
        size_t iov_len
    struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    int socket(int domain, int type, int protocol)
    int setsockopt(int fd, int level, int optname, const void* optval, socklen_t optlen)
    int bind(int fd, const sockaddr* addr, socklen_t addrlen)
    int sendmmsg(int fd, mmsghdr* msgvec, unsigned int vlen, int flags)
    enum: AF_PACKET, AF_INET, SOCK_RAW, SOL_SOCKET, SO_SNDBUF, SO_SNDBUFFORCE, MSG_DONTWAIT

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        uint32_t s_addr
    struct sockaddr_in:
        unsigned short sin_family
        uint16_t sin_port
        in_addr sin_addr
    enum: IPPROTO_RAW, IPPROTO_IP
    uint16_t htons(uint16_t)
    uint32_t htonl(uint32_t)

cdef extern from "<linux/if_packet.h>" nogil:
    struct sockaddr_ll:
        unsigned short sll_family
        unsigned short sll_protocol
        int sll_ifindex
        unsigned short sll_hatype
        unsigned char sll_pkttype
        unsigned char sll_halen
        unsigned char sll_addr[8]
    enum: SOL_PACKET, PACKET_QDISC_BYPASS

cdef extern from "<net/if.h>" nogil:
    unsigned int if_nametoindex(const char* ifname)

cdef extern from "<errno.h>" nogil:
    int errno
    enum: EAGAIN, ENOBUFS, EINTR

cdef extern from "<string.h>" nogil:
    char* strerror(int errnum)

cdef extern from "<unistd.h>" nogil:
    int close(int fd)

cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec
    enum: CLOCK_MONOTONIC
    int clock_gettime(int clk, timespec* tp)
    int nanosleep(const timespec* req, timespec* rem)

cdef extern from "<netinet/in.h>" nogil:
    struct in6_addr:
        uint8_t s6_addr[16]
    struct sockaddr_in6:
        unsigned short sin6_family
        uint16_t sin6_port
        uint32_t sin6_flowinfo
        in6_addr sin6_addr
        uint32_t sin6_scope_id
    enum: AF_INET6
