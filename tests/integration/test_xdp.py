"""The AF_XDP send path against the sendmmsg one, in the namespace lab: the same frames (decoded
by scapy, an independent decoder) and the same scan results. Needs root; fails without it."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from scanner.lab import LabSpec

from conftest import diff, make_lab, parse_summary, scan, scanner_argv, scanner_env

pytestmark = pytest.mark.lab

# Run in the lab's scanner namespace: the same probes (TCP SYN with options, UDP with and without a
# payload, ICMP echo and timestamp) through XdpSender, then through ProbeSender, same key and seed.
SEND_BOTH = textwrap.dedent("""
    import sys, time
    from scanner._ext.sender import ProbeSender
    from scanner._ext.xdp import XdpSender
    from scanner.space import ScanSpace
    from scanner.targets import TargetSet
    from scanner.techniques import DISCOVERY, SYN_SCAN, UDP_SCAN, Probes
    ifname, smac, dmac, saddr, prefix = sys.argv[1:6]
    probes = Probes([(SYN_SCAN, 22), (SYN_SCAN, 8080), (UDP_SCAN, 53), (UDP_SCAN, 40000),
                     (DISCOVERY["PE"], 0), (DISCOVERY["PP"], 0)])
    space = ScanSpace(TargetSet.from_specs([prefix]), probes)
    blob, kinds, l2 = probes.compile(4, bytes.fromhex(smac.replace(":", "")),
                                     bytes.fromhex(dmac.replace(":", "")), bytes(map(int, saddr.split("."))))
    src = bytes(map(int, saddr.split(".")))
    args = (l2, blob, kinds, 0x0123456789abcdef, 0xfedcba9876543210, src, space.arrays(), 7)
    xdp = XdpSender(ifname, *args, 0.0)
    assert not xdp.zerocopy          # veth: copy mode
    # Two calls, the second paced, as the engine does (chunks, then retries at a rate).
    n = space.size
    pos = xdp.send(0, n, 1, n // 2)
    xdp.set_rate(20000)
    assert xdp.send(pos, n, 1, n) == n and xdp.sent == n
    xdp.close()
    time.sleep(0.2)
    packet = ProbeSender(ifname, False, *args, 0.0)
    assert packet.send(0, n, 1, n) == n
    print(n)
""")

# Run in the target namespace: every frame from the scanner's MAC seen at the target's interface
# (before its ingress drop), one hex line each, until `count` or a timeout.
CAPTURE = textwrap.dedent("""
    import select, socket, sys, time
    ifname, mac, count = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), int(sys.argv[3])
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    s.bind((ifname, 0))
    print("ready", flush=True)
    frames, deadline = [], time.monotonic() + 20
    while len(frames) < count and time.monotonic() < deadline:
        if select.select([s], [], [], 0.5)[0]:
            f = s.recv(65536)
            if f[6:12] == mac and f[12:14] == b"\\x08\\x00":
                frames.append(f.hex())
    print("\\n".join(frames))
""")


def decoded(frame: bytes) -> str:
    """scapy's account of a frame, its checksums checked and the TCP timestamp value (the send
    time in ms) zeroed: what must agree between the two send paths."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.l2 import Ether
    p = Ether(frame)
    for layer in (IP, TCP, UDP, ICMP):
        if layer in p:
            got = p[layer].chksum
            q = Ether(frame)
            del q[layer].chksum
            assert got == Ether(bytes(q))[layer].chksum, f"bad {layer.__name__} checksum in {frame.hex()}"
    if TCP in p:
        p[TCP].options = [(k, (0, v[1]) if k == "Timestamp" else v) for k, v in p[TCP].options]
        p[TCP].chksum = 0
    return p.show(dump=True)


def test_xdp_sends_the_frames_of_the_packet_path():
    with make_lab(LabSpec(prefix="198.18.0.0/24", open_tcp=(), open_udp=(), drop_tcp=(), reject_tcp={},
                          ingress_drop_all=True)) as lab:
        n = 256 * 6
        cap = subprocess.Popen(["ip", "netns", "exec", lab.target_ns, sys.executable, "-c", CAPTURE,
                                lab.target_if, lab.scanner_mac, str(2 * n)],
                               stdout=subprocess.PIPE, text=True)
        try:
            assert cap.stdout.readline().strip() == "ready"
            sent = lab.run([sys.executable, "-c", SEND_BOTH, lab.scanner_if, lab.scanner_mac, lab.target_mac,
                            lab.scanner_addr, "198.18.0.0/24"], capture_output=True, text=True,
                           env=scanner_env(), timeout=60)
            assert sent.returncode == 0, sent.stderr
            assert int(sent.stdout) == n
            out, _ = cap.communicate(timeout=30)
        finally:
            cap.kill()
            cap.wait()
        frames = [bytes.fromhex(line) for line in out.split()]
        assert len(frames) == 2 * n, f"captured {len(frames)} of {2 * n} frames"
        xdp, packet = frames[:n], frames[n:]
        assert [decoded(f) for f in xdp] == [decoded(f) for f in packet]
        # Every (address, probe) once: the permutation covers the space.
        from scapy.layers.inet import IP
        from scapy.layers.l2 import Ether

        def probe(frame):
            ip = Ether(frame)[IP]
            head = bytes(ip.payload)
            return ip.dst, ip.proto, head[2:4] if ip.proto in (6, 17) else head[:1]   # port, or ICMP type
        assert len({probe(f) for f in xdp}) == n


def test_lab_scan_with_xdp_equals_packet_path():
    """Discovery then SYN and UDP scans: each stage opens its own AF_XDP socket on the same queue
    (the second one binds while the first is still being released)."""
    spec = LabSpec(prefix="198.18.0.0/22", live_every=4, open_tcp=(22, 80), drop_tcp=(8080,),
                   reject_tcp={8443: "admin-prohibited"}, open_udp=(53,))
    tcp, udp = [22, 23, 80, 8080, 8443], [53, 54]
    with make_lab(spec) as lab:
        live = set(lab.live_hosts())
        want = {k: v for k, v in {**lab.expected(tcp), **lab.expected(udp, proto="udp")}.items() if k[0] in live}
        for path in ("xdp", "packet"):
            proc, got = scan(lab, ["198.18.0.0/22", "-sS", "-sU", "-p", "T:22,23,80,8080,8443,U:53,54",
                                   "--rate", "0", "--show-all", "--wait", "1", "--send-path", path])
            summary = parse_summary(proc.stderr)
            assert summary["bad_cookie"] == 0 and summary["pcap_dropped"] == 0
            assert got == want, f"--send-path {path}: " + diff(got, want)


def test_windowed_scans_send_through_xdp():
    """The adaptive window (no --rate) and -r's order hand the sender index arrays
    (send_indices): through AF_XDP they find what the lab holds, as the sendmmsg path does."""
    spec = LabSpec(prefix="198.18.0.0/24", live_every=4, open_tcp=(22, 80), drop_tcp=(8080,), open_udp=())
    with make_lab(spec) as lab:
        live = set(lab.live_hosts())
        want = {k: v for k, v in lab.expected([22, 80, 8080]).items() if k[0] in live}
        for extra in ([], ["-r"]):
            proc, got = scan(lab, ["198.18.0.0/24", "-sS", "-p", "22,80,8080", "--show-all",
                                   "--send-path", "xdp", *extra])
            summary = parse_summary(proc.stderr)
            assert summary["bad_cookie"] == 0 and summary["pcap_dropped"] == 0
            assert got == want, f"{extra}: " + diff(got, want)


def test_auto_falls_back_to_sendmmsg_when_the_queue_is_taken():
    """Another AF_XDP socket holds the interface's queue: auto sends with sendmmsg, xdp refuses
    in one line (exit 1: an environment fault). The scan is big enough (/24 x 512 ports, 2^17
    probes) for auto to try AF_XDP first."""
    hold = textwrap.dedent("""
        import sys, numpy as np
        from scanner.space import ScanSpace
        from scanner.targets import TargetSet
        from scanner.techniques import SYN_SCAN, Probes
        from scanner._ext.xdp import XdpSender
        probes = Probes.ports(SYN_SCAN, [80])
        blob, kinds, l2 = probes.compile(4, bytes(6), bytes(6), bytes(4))
        x = XdpSender(sys.argv[1], l2, blob, kinds, 1, 2, bytes(4),
                      ScanSpace(TargetSet.from_specs(["198.18.0.0/30"]), probes).arrays(), 1, 0.0)
        print("bound", flush=True)
        sys.stdin.read()
    """)
    with make_lab(LabSpec(prefix="198.18.0.0/24", live_every=2, open_tcp=(80,))) as lab:
        holder = lab.popen([sys.executable, "-c", hold, lab.scanner_if], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True, env=scanner_env())
        try:
            assert holder.stdout.readline().strip() == "bound"
            _, got = scan(lab, ["198.18.0.0/24", "-Pn", "-p", "1-512", "--rate", "0", "--wait", "1",
                                "--send-path", "auto"])
            assert {k for k, v in got.items() if v[0] == "open"} == {
                (ip, 80) for ip in lab.live_hosts()}
            refused = lab.run(scanner_argv("198.18.0.0/24", "-Pn", "-p", "80", "--send-path", "xdp", "--no-db"),
                              capture_output=True, text=True, env=scanner_env(), timeout=60)
            assert refused.returncode == 1          # the environment cannot, the input is fine
            assert refused.stderr.startswith("scanner: error: --send-path xdp:"), refused.stderr
            assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        finally:
            holder.stdin.close()
            holder.wait(10)
