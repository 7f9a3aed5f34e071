"""--traceroute against nmap's on a lab with two router namespaces between the scanner and the
targets (LabSpec(routers=2)): the same hops in the same order, from -oX (<trace>/<hop> as nmap
writes them, valid against nmap's DTD), the same TRACEROUTE section in -oN (RTTs and the port
aside: nmap 7.93 traces toward a closed port here, scanner toward an open one), and the hops in
NDJSON; IPv4 and IPv6."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from scanner.lab import LabSpec

from conftest import make_lab, scanner_argv, scanner_env

pytestmark = pytest.mark.lab

SPEC = LabSpec(prefix="198.18.0.0/30", prefix6="2001:2::/126", live_every=2, routers=2,
               open_tcp=(22,), open_udp=(53,))
DTD = "/usr/share/nmap/nmap.dtd"
TARGETS = {4: ["198.18.0.0/30"], 6: ["-6", "2001:2::/126"]}


@pytest.fixture(scope="module")
def lab():
    with make_lab(SPEC) as running:
        yield running


def traces(xml_text: str) -> dict:
    """{host address: (<trace> attributes, [(ttl, ipaddr), ...], [rtt, ...])}."""
    out = {}
    for host in ET.fromstring(xml_text).iter("host"):
        trace = host.find("trace")
        if trace is None:
            continue
        hops = trace.findall("hop")
        out[host.find("address").get("addr")] = (
            dict(trace.attrib), [(int(h.get("ttl")), h.get("ipaddr")) for h in hops],
            [float(h.get("rtt")) for h in hops])
    return out


def section(normal: str) -> list:
    """The TRACEROUTE sections of -oN text, RTTs, the port and column padding normalized."""
    out, inside = [], False
    for line in normal.splitlines():
        if line.startswith("TRACEROUTE"):
            inside = True
        elif not line.strip():
            inside = False
        if inside:
            line = re.sub(r"\d+\.\d+ ms", "RTT", line)
            out.append(re.sub(r" +", " ", re.sub(r"port \d+/", "port N/", line)))
    return out


def run_both(lab, tmp_path, family: int, scan: list, targets=None):
    if shutil.which("nmap") is None:
        pytest.fail("this test needs nmap (apt-get install nmap)", pytrace=False)
    out = {}
    for tool in ("nmap", "scanner"):
        base = str(tmp_path / f"{tool}{family}")
        argv = ["nmap", "-n", "-T4"] if tool == "nmap" else scanner_argv("--no-db")
        argv = [*argv, *scan, "--traceroute", *(targets or TARGETS[family]), "-oX", base + ".xml",
                "-oN", base + ".nmap"]
        if tool == "scanner":
            argv += ["-oJ", base + ".json"]
        r = lab.run(argv, capture_output=True, text=True, timeout=120, env=scanner_env())
        assert r.returncode == 0, f"{tool}: {r.stderr}"
        out[tool] = {ext: open(base + ext, encoding="utf-8").read()
                     for ext in (".xml", ".nmap", ".json") if tool == "scanner" or ext != ".json"}
        out[tool]["stdout"] = r.stdout
    return out["nmap"], out["scanner"]


@pytest.mark.parametrize("family", [4, 6])
def test_same_hops_as_nmap(lab, tmp_path, family):
    nmap, ours = run_both(lab, tmp_path, family, ["-sS", "-p", "22,23"])
    theirs, mine = traces(nmap[".xml"]), traces(ours[".xml"])
    live = lab.live_hosts(family)
    assert sorted(theirs) == sorted(mine) == sorted(live)
    for host in live:
        expected = list(enumerate([*lab.hops(family), host], 1))
        assert theirs[host][1] == expected, "nmap sees another path: the lab is not what this test assumes"
        assert mine[host][1] == expected
        attrs = mine[host][0]
        assert set(attrs) == set(theirs[host][0]) == {"port", "proto"} and attrs["proto"] == "tcp"
        assert int(attrs["port"]) in (22, 23)
        assert all(0 <= rtt < 1000 for rtt in mine[host][2])
    # The normal output's TRACEROUTE sections (and so the terminal's): the same lines but RTTs.
    assert section(ours[".nmap"]) == section(nmap[".nmap"])
    assert section(ours["stdout"]) == section(nmap[".nmap"])
    assert any("are the same as for" in line for line in section(ours[".nmap"]))
    # Valid against nmap's DTD.
    if shutil.which("xmllint") is None:
        pytest.fail("this test needs xmllint (apt-get install libxml2-utils)", pytrace=False)
    path = tmp_path / f"scanner{family}.xml"
    v = subprocess.run(["xmllint", "--noout", "--dtdvalid", DTD, str(path)], capture_output=True, text=True)
    assert v.returncode == 0, v.stderr
    # NDJSON: one row per traced host with its hops (what a topology view draws).
    rows = [json.loads(line) for line in ours[".json"].splitlines()]
    hops = {r["ip"]: [(h["ttl"], h["ip"]) for h in r["trace"]["hops"]] for r in rows if "trace" in r}
    assert hops == {host: mine[host][1] for host in live} and sum("trace" in r for r in rows) == len(live)


def test_udp_trace_toward_a_closed_port(lab, tmp_path):
    """With -sU only, the trace goes to a closed UDP port (the target's port-unreachable ends it)."""
    nmap, ours = run_both(lab, tmp_path, 4, ["-sU", "-p", "53,54", "-Pn"])
    theirs, mine = traces(nmap[".xml"]), traces(ours[".xml"])
    for host in lab.live_hosts(4):
        assert mine[host][0] == theirs[host][0] == {"port": "54", "proto": "udp"}
        assert mine[host][1] == theirs[host][1] == list(enumerate([*lab.hops(4), host], 1))


def test_no_routers_one_hop(lab_factory, tmp_path):
    """Without routers the target is the first hop; and the trace is in the store (scanner show)."""
    small = lab_factory(LabSpec(prefix="198.18.0.0/31", open_tcp=(22,)))
    db = tmp_path / "scans.db"
    r = small.run(scanner_argv("198.18.0.0", "-p", "22", "--traceroute", "--db", str(db)),
                  capture_output=True, text=True, timeout=60, env=scanner_env())
    assert r.returncode == 0, r.stderr
    show = subprocess.run(scanner_argv("show", "last", "--db", str(db), "-f", "xml"), capture_output=True,
                          text=True, timeout=60, env=scanner_env())
    assert show.returncode == 0, show.stderr
    assert traces(show.stdout)["198.18.0.0"][:2] == ({"port": "22", "proto": "tcp"}, [(1, "198.18.0.0")])
    show = subprocess.run(scanner_argv("show", "last", "--db", str(db), "-f", "json"), capture_output=True,
                          text=True, timeout=60, env=scanner_env())
    rows = [json.loads(line) for line in show.stdout.splitlines()]
    assert [[(h["ttl"], h["ip"]) for h in r["trace"]["hops"]] for r in rows if "trace" in r] == [[(1, "198.18.0.0")]]


def test_router_namespaces_are_torn_down(lab_factory):
    """A lab's routers go with it, and cleanup_stale removes a crashed run's (<name>-rN)."""
    from scanner.lab import Lab, cleanup_stale

    def netns() -> set:
        out = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True).stdout.strip()
        return {n["name"] for n in json.loads(out)} if out else set()
    lab = Lab(LabSpec(prefix="198.18.0.0/31", routers=3))
    with lab:
        assert set(lab.router_ns) <= netns() and len(lab.router_ns) == 3
    assert not set(lab.router_ns) & netns()
    stale = "scl" + "0badc0"[:6] + "-r2"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        assert stale in cleanup_stale()
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True)
    assert stale not in netns()


def test_silent_hops_like_nmap(lab_factory, tmp_path):
    """Routers 2 and 3 of 4 send no time-exceeded: both tools show "2   ... 3" for the first host,
    abbreviate the second host's hops 1-4, and leave the silent hops out of <trace>."""
    quiet = lab_factory(LabSpec(prefix="198.18.0.0/31", open_tcp=(22,), routers=4))
    rules = ("table ip quiet {\n chain out {\n type filter hook output priority 0; policy accept;\n"
             " icmp type time-exceeded drop\n }\n}\n")
    for ns in quiet.router_ns[1:3]:
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, text=True, check=True)
    nmap, ours = run_both(quiet, tmp_path, 4, ["-sS", "-p", "22"], ["198.18.0.0/31"])
    assert section(ours[".nmap"]) == section(nmap[".nmap"])
    assert "2 ... 3" in section(ours[".nmap"])
    hops = [(1, quiet.hops()[0]), (4, quiet.hops()[3])]
    for host in ("198.18.0.0", "198.18.0.1"):
        assert traces(ours[".xml"])[host][1] == traces(nmap[".xml"])[host][1] == [*hops, (5, host)]


@pytest.mark.parametrize("family", [4, 6])
def test_icmp_trace_after_ping_scan(lab, tmp_path, family):
    """-sn -PE --traceroute: an ICMP echo trace ("using proto 1/icmp", "58/ipv6-icmp"), <trace>
    attributes as nmap writes them (none for ICMPv6)."""
    nmap, ours = run_both(lab, tmp_path, family, ["-sn", "-PE"])
    theirs, mine = traces(nmap[".xml"]), traces(ours[".xml"])
    assert sorted(mine) == sorted(theirs) == sorted(lab.live_hosts(family))
    for host in mine:
        assert mine[host][:2] == theirs[host][:2]
        assert mine[host][1] == list(enumerate([*lab.hops(family), host], 1))
    assert section(ours[".nmap"]) == section(nmap[".nmap"])
    assert section(ours[".nmap"])[0] == ("TRACEROUTE (using proto 1/icmp)" if family == 4
                                         else "TRACEROUTE (using proto 58/ipv6-icmp)")


API = """
import json, scanner
r = scanner.scan(scanner.ScanRequest.from_argv(["198.18.0.0/30", "-p", "22", "--traceroute", "--no-db"]))
print(json.dumps({a: [[h.ttl, h.addr] for h in t.hops] for a, t in r.traces.items()}))
"""


def test_python_api_has_the_traces(lab):
    """ScanResult.traces: {addr: Trace} for a library user (the web GUI's topology too)."""
    import sys
    r = lab.run([sys.executable, "-c", API], capture_output=True, text=True, timeout=60, env=scanner_env())
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {h: [[i, a] for i, a in enumerate([*lab.hops(4), h], 1)] for h in lab.live_hosts(4)}


GUESSES = """
import json, sys
from scanner.traceroute import Traceroute
plan = json.loads(sys.argv[1])
t = Traceroute({a: tuple(v) for a, v in plan.items()}, 4)
traces = t.run()
print(json.dumps({"sent": t.sent, "hops": {a: [[h.ttl, h.addr] for h in x.hops] for a, x in traces.items()}}))
"""


def test_wrong_distance_guesses(lab):
    """A guess below the distance counts up to the target, one above counts down past it; a
    second host toward the same routers stops at the first shared router (nmap's hop cache)."""
    import sys
    a, b = lab.live_hosts(4)
    plan = {a: ["tcp", 22, 1], b: ["icmp", 0, 9]}
    r = lab.run([sys.executable, "-c", GUESSES, json.dumps(plan)], capture_output=True, text=True, timeout=60,
                env=scanner_env())
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for host in (a, b):
        assert out["hops"][host] == [[i, h] for i, h in enumerate([*lab.hops(4), host], 1)]
    # a: hop limits 1..5 (counting up by 4); b: 9 down to 2, where a has the router already
    assert out["sent"] == 5 + 8
