"""Scale features on the namespace lab: an IPv6 hitlist given with -iL (packed 16-byte rows)
finds the lab's hosts. Needs root; fails without it."""
from __future__ import annotations

import ipaddress
import random

import pytest

from scanner.lab import LabSpec

from conftest import diff, make_lab, parse_summary, scan

pytestmark = pytest.mark.lab

SPEC6 = dict(prefix="198.18.3.0/30", prefix6="2001:2::100/120", live_every=4, open_tcp=(22, 80),
             drop_tcp=(8080,), reject_tcp={8443: "admin-prohibited"})
PORTS = [22, 80, 443, 8080, 8443]


@pytest.fixture(scope="module")
def lab6():
    with make_lab(LabSpec(**SPEC6)) as lab:
        yield lab


def test_an_ipv6_hitlist_finds_the_lab_hosts(lab6, tmp_path):
    """A hitlist of part of the lab's addresses (shuffled, repeated, in the long and short forms,
    with comments) is scanned exactly: the results are the lab's own for those addresses."""
    rng = random.Random(3)
    hosts = lab6.hosts6()
    chosen = rng.sample(hosts, 100) + lab6.live_hosts(6)[:5]
    lines = [ipaddress.IPv6Address(a).exploded if i % 2 else a for i, a in enumerate(chosen)]
    lines += rng.sample(chosen, 20)                                      # repeats
    rng.shuffle(lines)
    path = tmp_path / "hitlist.txt"
    path.write_text("# lab hitlist\n" + "\n".join(f"{a}   # host {i}" if i % 7 == 0 else a
                                                    for i, a in enumerate(lines)) + "\n")
    proc, got = scan(lab6, ["-iL", str(path), "-Pn", "-p", ",".join(map(str, PORTS)), "--show-all",
                            "--rate", "20000", "--wait", "1"])
    keep = {str(ipaddress.IPv6Address(a)) for a in chosen}
    want = {k: v for k, v in lab6.expected(PORTS, family=6).items() if k[0] in keep}
    assert len(want) == len(keep) * len(PORTS) and any(v[0] == "open" for v in want.values())
    assert got == want, diff(got, want)
    summary = parse_summary(proc.stderr)
    assert summary["hosts"] == len(keep) and summary["bad_cookie"] == 0 and summary["pcap_dropped"] == 0
