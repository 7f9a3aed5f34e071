"""UDP against a target that rate-limits ICMP as Linux does by default (about one
port-unreachable a second per destination, after a burst of a few): scanner slows down for the
ports still unanswered instead of calling closed ports open|filtered."""
from __future__ import annotations

import pytest

from conftest import make_lab, require_lab_tools, scan

CLOSED = list(range(40000, 40016))      # 16 closed UDP ports: more than the ICMP burst


@pytest.mark.lab
def test_udp_closed_ports_behind_icmp_rate_limit():
    require_lab_tools()
    from scanner.lab import LabSpec
    with make_lab(LabSpec(prefix="198.18.0.0/32", open_udp=(53,), icmp_ratelimit=True)) as lab:
        ports = ",".join(map(str, [53, *CLOSED]))
        proc, got = scan(lab, ["198.18.0.0", "-Pn", "-sU", "-p", ports, "--rate", "10000", "--wait", "1"],
                         timeout=120)
        want = {("198.18.0.0", 53): ("open", "udp-response"),
                **{("198.18.0.0", p): ("closed", "port-unreach") for p in CLOSED}}
        assert got == want, proc.stderr
        # The control: without the slower rounds (one pass, no retries) most closed ports stay
        # unanswered, so the test above proves the adaptation, not a lab without a limit.
        proc, once = scan(lab, ["198.18.0.0", "-Pn", "-sU", "-p", ports, "--rate", "10000", "--wait", "1",
                                "--retries", "0", "--max-udp-rounds", "0"], timeout=60)
        answered = [k for k, v in once.items() if v == ("closed", "port-unreach")]
        assert len(answered) < len(CLOSED) // 2, once
        print(f"one pass: {len(answered)} of {len(CLOSED)} closed ports answered; adaptive: all")


@pytest.mark.lab
def test_udp_slower_rounds_in_sequential_order():
    """-r (no permutation): the slower rounds resend the unanswered probes by index, in order."""
    require_lab_tools()
    from scanner.lab import LabSpec
    with make_lab(LabSpec(prefix="198.18.0.0/32", open_udp=(53,), icmp_ratelimit=True)) as lab:
        ports = ",".join(map(str, [53, *CLOSED]))
        proc, got = scan(lab, ["198.18.0.0", "-Pn", "-sU", "-r", "-p", ports, "--rate", "10000", "--wait", "1"],
                         timeout=120)
        want = {("198.18.0.0", 53): ("open", "udp-response"),
                **{("198.18.0.0", p): ("closed", "port-unreach") for p in CLOSED}}
        assert got == want, proc.stderr
