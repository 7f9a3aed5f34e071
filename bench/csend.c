/* csend: the send-path ceiling for bench/run.py.
 *
 * A bare AF_PACKET sendmmsg loop: every SYN frame is built (with correct IPv4 and TCP checksums)
 * before the clock starts, then sent 256 frames per sendmmsg call with PACKET_QDISC_BYPASS.
 * Destinations walk the prefix host-major (address i, port p) in a simple stride order.
 *
 *   csend IFNAME DST_MAC SRC_MAC SRC_IP PREFIX_BASE PREFIX_LEN FIRST_PORT NPORTS
 *
 * Prints one JSON line on stdout: {"sent": N, "seconds": S, "pps": P, "cpu_s": C, "errors": E}.
 * Build: gcc -O2 -o csend csend.c.  Run it only inside the lab's scanner namespace.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef PACKET_QDISC_BYPASS
#define PACKET_QDISC_BYPASS 20
#endif

#define BATCH 256
#define FRAME_LEN 58 /* 14 Ethernet + 20 IPv4 + 24 TCP (SYN with an MSS option) */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int parse_mac(const char *s, uint8_t *mac) {
    unsigned v[6];
    if (sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) return -1;
    for (int i = 0; i < 6; i++) mac[i] = (uint8_t)v[i];
    return 0;
}

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t acc) {
    for (size_t i = 0; i + 1 < n; i += 2) acc += (uint32_t)p[i] << 8 | p[i + 1];
    if (n & 1) acc += (uint32_t)p[n - 1] << 8;
    return acc;
}

static uint16_t fold(uint32_t acc) {
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)~acc;
}

int main(int argc, char **argv) {
    if (argc != 9) {
        fprintf(stderr, "usage: %s IFNAME DST_MAC SRC_MAC SRC_IP PREFIX_BASE PREFIX_LEN FIRST_PORT NPORTS\n",
                argv[0]);
        return 2;
    }
    uint8_t dmac[6], smac[6];
    struct in_addr src, base;
    if (parse_mac(argv[2], dmac) || parse_mac(argv[3], smac) || !inet_aton(argv[4], &src) ||
        !inet_aton(argv[5], &base)) {
        fprintf(stderr, "csend: bad MAC or address\n");
        return 2;
    }
    int plen = atoi(argv[6]), first_port = atoi(argv[7]), nports = atoi(argv[8]);
    if (plen < 8 || plen > 32 || nports < 1 || first_port < 1 || first_port + nports > 65536) {
        fprintf(stderr, "csend: bad prefix length or ports\n");
        return 2;
    }
    uint64_t hosts = 1ULL << (32 - plen), n = hosts * (uint64_t)nports;
    uint32_t base_h = ntohl(base.s_addr);

    /* Pre-build every frame. */
    uint8_t *frames = malloc(n * FRAME_LEN);
    if (!frames) { perror("malloc"); return 1; }
    uint8_t tmpl[FRAME_LEN] = {0};
    memcpy(tmpl, dmac, 6);
    memcpy(tmpl + 6, smac, 6);
    tmpl[12] = 0x08; tmpl[13] = 0x00;
    uint8_t *ip = tmpl + 14, *tcp = tmpl + 34;
    ip[0] = 0x45; ip[2] = 0; ip[3] = 44; ip[6] = 0x40; ip[8] = 64; ip[9] = 6;
    memcpy(ip + 12, &src.s_addr, 4);
    tcp[0] = 0xa4; tcp[1] = 0x10;            /* source port 42000 */
    tcp[12] = 6 << 4; tcp[13] = 0x02;        /* data offset 6 words, SYN */
    tcp[14] = 0xfa; tcp[15] = 0xf0;          /* window 64240 */
    tcp[20] = 2; tcp[21] = 4; tcp[22] = 0x05; tcp[23] = 0xb4;   /* MSS 1460 */
    for (uint64_t k = 0; k < n; k++) {
        uint8_t *f = frames + k * FRAME_LEN;
        memcpy(f, tmpl, FRAME_LEN);
        uint32_t daddr = htonl(base_h + (uint32_t)(k % hosts));
        uint16_t dport = (uint16_t)(first_port + k / hosts);
        uint32_t seq = (uint32_t)(k * 2654435761u);
        uint8_t *fi = f + 14, *ft = f + 34;
        fi[4] = (uint8_t)(k >> 8); fi[5] = (uint8_t)k;  /* IP id */
        memcpy(fi + 16, &daddr, 4);
        uint16_t c = fold(sum16(fi, 20, 0));
        fi[10] = c >> 8; fi[11] = c & 0xff;
        ft[2] = dport >> 8; ft[3] = dport & 0xff;
        ft[4] = seq >> 24; ft[5] = seq >> 16; ft[6] = seq >> 8; ft[7] = seq;
        uint32_t acc = sum16(fi + 12, 8, 0) + 6 + 24;  /* pseudo-header */
        c = fold(sum16(ft, 24, acc));
        ft[16] = c >> 8; ft[17] = c & 0xff;
    }

    int fd = socket(AF_PACKET, SOCK_RAW, 0);   /* protocol 0: receives nothing */
    if (fd < 0) { perror("socket"); return 1; }
    int one = 1, sndbuf = 16 << 20;
    if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) < 0) perror("PACKET_QDISC_BYPASS");
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    struct sockaddr_ll sll = {0};
    sll.sll_family = AF_PACKET;
    sll.sll_ifindex = if_nametoindex(argv[1]);
    sll.sll_halen = 6;
    memcpy(sll.sll_addr, dmac, 6);
    if (!sll.sll_ifindex) { perror("if_nametoindex"); return 1; }
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) { perror("bind"); return 1; }

    static struct mmsghdr msgs[BATCH];
    static struct iovec iovs[BATCH];
    uint64_t sent = 0, errors = 0;
    double t0 = now();
    while (sent < n) {
        unsigned m = (unsigned)(n - sent < BATCH ? n - sent : BATCH);
        for (unsigned i = 0; i < m; i++) {
            iovs[i].iov_base = frames + (sent + i) * FRAME_LEN;
            iovs[i].iov_len = FRAME_LEN;
            memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
            msgs[i].msg_hdr.msg_iov = &iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int r = sendmmsg(fd, msgs, m, 0);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == ENOBUFS) { errors++; continue; }
            perror("sendmmsg");
            return 1;
        }
        sent += (unsigned)r;
    }
    double secs = now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("{\"sent\": %llu, \"seconds\": %.6f, \"pps\": %.0f, \"cpu_s\": %.3f, \"errors\": %llu}\n",
           (unsigned long long)sent, secs, sent / secs, cpu, (unsigned long long)errors);
    free(frames);
    close(fd);
    return 0;
}
