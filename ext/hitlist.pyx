# cython: language_level=3
# distutils: language = c++
"""IPv6 hitlists as packed 16-byte rows: a target file's addresses parsed straight into a
numpy (n, 16) uint8 array (no Python object per address), and an in-place sort + dedup of
such an array in address order (std::sort on two big-endian words: numpy sorts 16-byte rows
only through a generic comparison, about 10x slower)."""

import numpy as np

cimport numpy as cnp
from libc.stdint cimport uint8_t

cdef extern from "arpa/inet.h" nogil:
    int inet_pton(int af, const char* src, void* dst)

cdef extern from "sys/socket.h" nogil:
    int AF_INET6

cdef extern from *:
    """
    #include <algorithm>
    #include <cstring>
    #include <cstdint>
    struct scanner_a16 { uint64_t hi, lo; };          /* native-endian words of a big-endian address */
    static inline bool scanner_a16_less(const scanner_a16& x, const scanner_a16& y) {
        return x.hi < y.hi || (x.hi == y.hi && x.lo < y.lo);
    }
    static inline bool scanner_a16_eq(const scanner_a16& x, const scanner_a16& y) {
        return x.hi == y.hi && x.lo == y.lo;
    }
    static size_t scanner_sort_unique16(unsigned char* p, size_t n) {
        scanner_a16* a = reinterpret_cast<scanner_a16*>(p);
        for (size_t i = 0; i < n; i++) { a[i].hi = __builtin_bswap64(a[i].hi); a[i].lo = __builtin_bswap64(a[i].lo); }
        std::sort(a, a + n, scanner_a16_less);
        size_t m = std::unique(a, a + n, scanner_a16_eq) - a;
        for (size_t i = 0; i < m; i++) { a[i].hi = __builtin_bswap64(a[i].hi); a[i].lo = __builtin_bswap64(a[i].lo); }
        return m;
    }
    """
    size_t scanner_sort_unique16(unsigned char* p, size_t n) nogil


def sort_unique16(cnp.ndarray rows not None):
    """Sorts a C-contiguous (n, 16) uint8 array of addresses in place (network order, i.e. by
    value) and moves the distinct ones to its front; returns how many there are."""
    if rows.ndim != 2 or rows.shape[1] != 16 or rows.dtype != np.uint8 or not rows.flags.c_contiguous \
            or not rows.flags.writeable:
        raise ValueError("rows must be a writable C-contiguous (n, 16) uint8 array")
    cdef unsigned char* p = <unsigned char*>cnp.PyArray_DATA(rows)
    cdef size_t n = rows.shape[0], m
    with nogil:
        m = scanner_sort_unique16(p, n)
    return m


def parse_chunk(const unsigned char[::1] buf not None, Py_ssize_t max_line, cnp.ndarray out not None,
                Py_ssize_t at):
    """Parses the whitespace-separated words of a target file's text (whole lines; '#' starts a
    comment): those that are IPv6 addresses go to out (a C-contiguous (n, 16) uint8 array) from
    row at on. Returns (rows written, the other words as bytes (prefixes, ranges, IPv4, names) in
    file order, status): status 0, 1 when a line is longer than max_line characters or the text
    holds a NUL byte, 2 when out is full."""
    if out.ndim != 2 or out.shape[1] != 16 or out.dtype != np.uint8 or not out.flags.c_contiguous \
            or not out.flags.writeable or not 0 <= at <= out.shape[0]:
        raise ValueError("out must be a writable C-contiguous (n, 16) uint8 array, at within it")
    cdef Py_ssize_t n = buf.shape[0], i = 0, j, start, line_start = 0, count = at, room = out.shape[0]
    cdef unsigned char* rows = <unsigned char*>cnp.PyArray_DATA(out)
    cdef bint colon
    cdef unsigned char c
    cdef char word[48]
    others = []
    while i < n:
        c = buf[i]
        if c == 0:
            return count - at, others, 1
        if c == b"\n":
            if i - line_start > max_line:
                return count - at, others, 1
            line_start = i + 1
            i += 1
        elif c == b"#":
            while i < n and buf[i] != b"\n":
                if buf[i] == 0:
                    return count - at, others, 1
                i += 1
        elif c == b" " or c == b"\t" or c == b"\r" or c == b"\v" or c == b"\f":
            i += 1
        else:
            start = i
            colon = False
            while i < n:
                c = buf[i]
                if c == b" " or c == b"\t" or c == b"\r" or c == b"\n" or c == b"\v" or c == b"\f" \
                        or c == b"#" or c == 0:
                    break
                if c == b":":
                    colon = True
                i += 1
            if colon and i - start < 46:
                if count == room:
                    return count - at, others, 2
                for j in range(i - start):
                    word[j] = buf[start + j]
                word[i - start] = 0
                if inet_pton(AF_INET6, word, rows + 16 * count) == 1:
                    count += 1
                    continue
            others.append(bytes(buf[start:i]))
    if n - line_start > max_line:
        return count - at, others, 1
    return count - at, others, 0
