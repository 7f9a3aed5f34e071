# cython: language_level=3
"""C declarations for AF_XDP sockets (linux/if_xdp.h), mmap, and the ring memory ordering."""
from libc.stdint cimport uint16_t, uint32_t, uint64_t

cdef extern from "<sys/socket.h>" nogil:
    enum: AF_XDP, SOL_XDP
    ctypedef unsigned int socklen_t
    int getsockopt(int fd, int level, int optname, void* optval, socklen_t* optlen)
    ssize_t sendto(int fd, const void* buf, size_t n, int flags, const void* addr, socklen_t addrlen)

cdef extern from "<sys/mman.h>" nogil:
    void* mmap(void* addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void* addr, size_t length)
    enum: PROT_READ, PROT_WRITE, MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS, MAP_POPULATE
    void* MAP_FAILED

cdef extern from "<linux/if_xdp.h>" nogil:
    struct sockaddr_xdp:
        uint16_t sxdp_family
        uint16_t sxdp_flags
        uint32_t sxdp_ifindex
        uint32_t sxdp_queue_id
        uint32_t sxdp_shared_umem_fd
    struct xdp_ring_offset:
        uint64_t producer
        uint64_t consumer
        uint64_t desc
        uint64_t flags
    struct xdp_mmap_offsets:
        xdp_ring_offset rx
        xdp_ring_offset tx
        xdp_ring_offset fr
        xdp_ring_offset cr
    struct xdp_umem_reg:
        uint64_t addr
        uint64_t len
        uint32_t chunk_size
        uint32_t headroom
        uint32_t flags
    struct xdp_desc:
        uint64_t addr
        uint32_t len
        uint32_t options
    struct xdp_options:
        uint32_t flags
    enum: XDP_COPY, XDP_ZEROCOPY, XDP_MMAP_OFFSETS, XDP_TX_RING, XDP_UMEM_REG, XDP_UMEM_FILL_RING
    enum: XDP_UMEM_COMPLETION_RING, XDP_OPTIONS, XDP_OPTIONS_ZEROCOPY, XDP_UMEM_UNALIGNED_CHUNK_FLAG
    uint64_t XDP_PGOFF_TX_RING
    uint64_t XDP_UMEM_PGOFF_COMPLETION_RING

cdef enum:
    # Kernel 6.17+: how many descriptors one kick may send (default 32); absent from older headers.
    XDP_MAX_TX_SKB_BUDGET = 9

cdef extern from "<errno.h>" nogil:
    enum: EBUSY, EOPNOTSUPP, ENETDOWN, ENXIO, EINVAL

cdef extern from *:
    """
    /* The rings are shared with the kernel: the producer publishes with a release store after
       writing descriptors, the consumer reads with an acquire load before reading them. */
    static inline uint32_t ring_load_acquire(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void ring_store_release(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    """
    uint32_t ring_load_acquire(const uint32_t* p) nogil
    void ring_store_release(uint32_t* p, uint32_t v) nogil
