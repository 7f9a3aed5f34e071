"""The lab itself: namespaces, services, nftables shaping, teardown (needs root)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scanner.lab import Lab, LabSpec, cleanup_stale

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not (shutil.which("ip") and shutil.which("nft")), reason="needs iproute2 and nft"),
]

SPEC = dict(prefix="198.18.0.0/28", live_every=2, drop_tcp=(8080,),
            reject_tcp={8443: "admin-prohibited", 8444: "tcp-reset"})

# Runs inside the scanner namespace; prints one JSON result.
PROBE = textwrap.dedent("""
    import json, socket, sys
    kind, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind == "tcp":
        s = socket.socket(); s.settimeout(0.4)
        try:
            s.connect((ip, port)); r = "open"
        except ConnectionRefusedError: r = "refused"
        except socket.timeout: r = "timeout"
        except OSError as e: r = "oserror:%d" % e.errno
        print(json.dumps(r))
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
        s.sendto(b"ping", (ip, port))
        try:
            data, peer = s.recvfrom(100); print(json.dumps([data.decode(), peer[0], peer[1]]))
        except socket.timeout: print(json.dumps("timeout"))
""")


def ns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


@pytest.fixture(scope="module")
def lab():
    with Lab(LabSpec(**SPEC)) as lab:
        yield lab


def probe(lab: Lab, kind: str, ip: str, port: int):
    r = lab.run([sys.executable, "-c", PROBE, kind, ip, str(port)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_names(lab):
    assert lab.scanner_ns == f"{lab.name}-s" and lab.target_ns == f"{lab.name}-t"
    assert ns_exists(lab.scanner_ns) and ns_exists(lab.target_ns)
    assert len(lab.scanner_if) <= 15 and len(lab.target_if) <= 15
    assert lab.scanner_mac.count(":") == 5 and lab.scanner_mac != lab.target_mac


def test_open_port_of_live_host(lab):
    assert probe(lab, "tcp", "198.18.0.2", 22) == "open"
    assert probe(lab, "tcp", "198.18.0.0", 443) == "open"  # index 0 (the "network" address) is a host too


def test_closed_port_refused(lab):
    assert probe(lab, "tcp", "198.18.0.4", 23) == "refused"
    assert probe(lab, "tcp", "198.18.0.4", 8444) == "refused"  # nft reject with tcp reset


def test_dropped_port_times_out(lab):
    assert probe(lab, "tcp", "198.18.0.2", 8080) == "timeout"


def test_rejected_port_admin_prohibited(lab):
    assert probe(lab, "tcp", "198.18.0.2", 8443) == "oserror:113"  # EHOSTUNREACH from the ICMP error


def test_udp_reply_from_probed_address(lab):
    assert probe(lab, "udp", "198.18.0.6", 53) == ["scanner-lab\n", "198.18.0.6", 53]


def test_dead_host_times_out(lab):
    assert probe(lab, "tcp", "198.18.0.3", 22) == "timeout"


def test_no_default_route(lab):
    routes = lab.run(["ip", "route", "show", "table", "all"], capture_output=True, text=True, check=True).stdout
    assert "default" not in routes
    main = lab.run(["ip", "route"], capture_output=True, text=True, check=True).stdout.splitlines()
    assert sorted(l.split()[0] for l in main) == ["198.18.0.0/28", "198.19.255.0/30"]


def test_expected(lab):
    exp = lab.expected([22, 23, 8080, 8443, 8444])
    assert len(exp) == 16 * 5
    assert exp[("198.18.0.2", 22)] == ("open", "syn-ack")
    assert exp[("198.18.0.2", 23)] == ("closed", "reset")
    assert exp[("198.18.0.2", 8080)] == ("filtered", "no-response")
    assert exp[("198.18.0.2", 8443)] == ("filtered", "admin-prohibited")
    assert exp[("198.18.0.2", 8444)] == ("closed", "reset")
    assert exp[("198.18.0.3", 22)] == ("filtered", "no-response")
    assert lab.live_hosts() == [f"198.18.0.{i}" for i in range(0, 16, 2)]


def test_target_counter_counts(lab):
    before, rst = lab.target_counter(), lab.target_counter("rst")
    probe(lab, "tcp", "198.18.0.2", 22)
    assert lab.target_counter() > before
    # a connection closed with SO_LINGER 0 ends in one RST, which the "rst" counter also counts
    close = ("import socket, struct, sys; s = socket.create_connection((sys.argv[1], 22), 5); "
             "s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0)); s.close()")
    mid = lab.target_counter("rst")
    lab.run([sys.executable, "-c", close, "198.18.0.2"], check=True, timeout=10)
    assert lab.target_counter("rst") == mid + 1 and mid >= rst


def test_third_party(lab):
    x = lab.third_party()
    assert x is lab.third_party() and x.ns == f"{lab.name}-x" and x.addr == "198.19.254.1"
    r = x.run([sys.executable, "-c", "import socket; s=socket.socket(); s.settimeout(1); "
               "print(s.connect_ex(('198.19.255.1', 9)))"], capture_output=True, text=True)
    assert r.stdout.strip() == "111"  # reaches the scanner ns (RST from its closed port)
    r = x.run(["ip", "route"], capture_output=True, text=True)
    assert "default" not in r.stdout and "198.18." not in r.stdout


def test_ipv6_off_without_prefix6(lab):
    for run in (lab.run, lab.run_target):
        r = run(["sysctl", "-n", "net.ipv6.conf.all.disable_ipv6"], capture_output=True, text=True)
        assert r.stdout.strip() == "1"


SPEC6 = dict(prefix="198.18.2.0/30", prefix6="2001:2::/126", live_every=2, open_tcp=(22,), open_udp=(53,),
             drop_tcp=(8080,), drop_udp=(5000,),
             reject_tcp={8443: "admin-prohibited", 8444: "tcp-reset", 8445: "host-unreachable"},
             reject_udp={2002: "port-unreachable", 2003: "admin-prohibited"})

# Runs inside the scanner namespace: (errno or "open"/"timeout", seconds) for a TCP connect, the
# reply and its source for UDP, the source and type/code of an ICMPv6 error for "icmp6".
PROBE6 = textwrap.dedent("""
    import errno, json, select, socket, sys, time
    kind, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind == "tcp":
        s = socket.socket(socket.AF_INET6); s.setblocking(False)
        s.connect_ex((ip, port)); t0 = time.monotonic()
        _, w, _ = select.select([], [s], [], 2.5)
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if w else None
        print(json.dumps("timeout" if not w else "open" if err == 0 else errno.errorcode[err]))
    elif kind == "udp":
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.settimeout(1)
        s.sendto(b"ping", (ip, port))
        try:
            data, peer = s.recvfrom(100); print(json.dumps([data.decode(), peer[0], peer[1]]))
        except socket.timeout: print(json.dumps("timeout"))
        except OSError as e: print(json.dumps(errno.errorcode[e.errno]))
    else:  # a UDP datagram, then the ICMPv6 error it draws, read from a raw socket
        r = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6); r.settimeout(1)
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).sendto(b"ping", (ip, port))
        try:
            while True:
                data, peer = r.recvfrom(2048)
                if data[0] == 1:
                    print(json.dumps([peer[0], data[0], data[1]])); break
        except socket.timeout: print(json.dumps("timeout"))
""")


@pytest.fixture(scope="module")
def lab6():
    with Lab(LabSpec(**SPEC6)) as lab:
        yield lab


def probe6(lab: Lab, kind: str, ip: str, port: int):
    r = lab.run([sys.executable, "-c", PROBE6, kind, ip, str(port)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_ipv6_addresses_and_routes(lab6):
    r = lab6.run_target(["ip", "-j", "-6", "addr", "show", "dev", "lo"], capture_output=True, text=True)
    addrs = {(a["local"], a["prefixlen"]) for a in json.loads(r.stdout)[0]["addr_info"]}
    assert {(a, 128) for a in lab6.hosts6()} <= addrs
    assert lab6.hosts6() == ["2001:2::", "2001:2::1", "2001:2::2", "2001:2::3"]
    routes = lab6.run(["ip", "-6", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    assert "default" not in routes and "2001:2::/126 via 2001:2:0:ffff::2" in routes
    r = lab6.run(["ip", "route", "get", "2001:db8::1"], capture_output=True, text=True)
    assert r.returncode != 0  # nothing outside the lab is reachable


def test_ipv6_tcp_matrix(lab6):
    assert probe6(lab6, "tcp", "2001:2::2", 22) == "open"
    assert probe6(lab6, "tcp", "2001:2::", 23) == "ECONNREFUSED"
    assert probe6(lab6, "tcp", "2001:2::", 8444) == "ECONNREFUSED"      # nft tcp reset
    assert probe6(lab6, "tcp", "2001:2::", 8443) == "EACCES"            # ICMPv6 admin-prohibited
    assert probe6(lab6, "tcp", "2001:2::", 8445) == "EHOSTUNREACH"      # ICMPv6 address unreachable
    assert probe6(lab6, "tcp", "2001:2::", 8080) == "timeout"
    assert probe6(lab6, "tcp", "2001:2::1", 22) == "timeout"            # not live (live_every=2)


def test_ipv6_udp_reply_from_probed_address(lab6):
    assert probe6(lab6, "udp", "2001:2::2", 53) == ["scanner-lab\n", "2001:2::2", 53]
    assert probe6(lab6, "udp", "2001:2::2", 5000) == "timeout"
    assert probe6(lab6, "udp", "2001:2::3", 53) == "timeout"


def test_ipv6_icmp_errors_from_probed_address(lab6):
    assert probe6(lab6, "icmp6", "2001:2::2", 54) == ["2001:2::2", 1, 4]     # kernel port unreachable
    assert probe6(lab6, "icmp6", "2001:2::2", 2002) == ["2001:2::2", 1, 4]   # nft port unreachable
    assert probe6(lab6, "icmp6", "2001:2::", 2003) == ["2001:2::", 1, 1]     # nft admin-prohibited


def test_ipv6_expected(lab6):
    tcp = lab6.expected([22, 8443, 8444, 8445], family=6)
    assert tcp[("2001:2::2", 22)] == ("open", "syn-ack")
    assert tcp[("2001:2::2", 8443)] == ("filtered", "admin-prohibited")
    assert tcp[("2001:2::2", 8444)] == ("closed", "reset")
    assert tcp[("2001:2::2", 8445)] == ("filtered", "host-unreach")
    assert tcp[("2001:2::3", 22)] == ("filtered", "no-response")
    udp = lab6.expected([53, 54, 5000, 2002, 2003], family=6, proto="udp")
    assert len(udp) == 4 * 5
    assert udp[("2001:2::", 53)] == ("open", "udp-response")
    assert udp[("2001:2::", 54)] == ("closed", "port-unreach")
    assert udp[("2001:2::", 5000)] == ("open|filtered", "no-response")
    assert udp[("2001:2::", 2002)] == ("closed", "port-unreach")
    assert udp[("2001:2::", 2003)] == ("filtered", "admin-prohibited")
    assert udp[("2001:2::1", 53)] == ("open|filtered", "no-response")
    assert lab6.live_hosts(6) == ["2001:2::", "2001:2::2"]
    assert lab6.live_hosts() == ["198.18.2.0", "198.18.2.2"]   # IPv4 API unchanged


def test_ipv4_still_works_with_ipv6(lab6):
    assert probe(lab6, "tcp", "198.18.2.2", 22) == "open"
    assert probe(lab6, "udp", "198.18.2.2", 53) == ["scanner-lab\n", "198.18.2.2", 53]


def test_spec_validation():
    with pytest.raises(ValueError):
        LabSpec(prefix6="2001:db8::/126")      # outside 2001:2::/48
    with pytest.raises(ValueError):
        LabSpec(prefix6="2001:2::/64")         # too many /128s
    with pytest.raises(ValueError):
        LabSpec(prefix6="2001:2:0:ffff::/120")  # the link
    with pytest.raises(ValueError):
        LabSpec(reject_udp={53: "tcp-reset"})
    with pytest.raises(ValueError):
        LabSpec(prefix="10.0.0.0/24")
    with pytest.raises(ValueError):
        LabSpec(prefix="198.20.0.0/24")
    with pytest.raises(ValueError):
        LabSpec(live_every=3)
    with pytest.raises(ValueError):
        LabSpec(reject_tcp={1: "bogus"})


def test_teardown_on_exception():
    lab = Lab(LabSpec(prefix="198.18.1.0/30", open_udp=()))
    with pytest.raises(RuntimeError, match="boom"):
        with lab:
            lab.third_party()
            assert ns_exists(lab.target_ns)
            raise RuntimeError("boom")
    for ns in (lab.scanner_ns, lab.target_ns, f"{lab.name}-x"):
        assert not ns_exists(ns)
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert lab.name not in names


def test_cleanup_stale_spares_live_labs(lab):
    assert lab.scanner_ns not in cleanup_stale()
    assert ns_exists(lab.scanner_ns)
