"""nmap's options as ScanRequest fields: what each one means once resolved (timing templates,
the adaptive window, patterns, service names, the packet trace, completion), not just that it
parses. Nothing here sends a packet."""
from __future__ import annotations

import dataclasses
import subprocess

import numpy as np
import pytest

from scanner import InputError, ScanRequest
from scanner.completion import completion_script, option_names
from scanner.ports import port_lists
from scanner.request import NMAP_MISSING, OPTIONS
from scanner.targets import TargetSet
from scanner.timing import TEMPLATES, Timing, Window


def parse(*argv: str) -> ScanRequest:
    return ScanRequest.from_argv(["198.18.0.1", *argv])


def test_verbosity_counts_as_nmap_does():
    assert parse("-v").verbose == 1 and parse("-vv").verbose == 2 and parse("-v", "-v", "-v").verbose == 3
    assert parse("-v3").verbose == 3 and parse("-d").debug == 1 and parse("-dd").debug == 2
    assert parse("-vv").to_argv()[:2] == ["-v", "-v"]


@pytest.mark.parametrize("argv, field, value", [
    (["-T4"], "timing", 4), (["-T", "aggressive"], "timing", 4), (["-Tinsane"], "timing", 5),
    (["-n"], "no_resolve", True), (["-R"], "reverse_dns", True), (["--open"], "open_only", True),
    (["-F"], "fast", True), (["-r"], "sequential", True), (["-sL"], "list_scan", True),
    (["--min-rate", "50"], "min_rate", 50.0), (["--max-rate=900"], "max_rate", 900.0),
    (["--max-retries", "3"], "retries", 3), (["--retries", "3"], "retries", 3),
    (["--host-timeout", "2m"], "host_timeout", 120.0), (["--scan-delay", "250ms"], "scan_delay", 0.25),
    (["--max-scan-delay", "1s"], "max_scan_delay", 1.0), (["--min-rtt-timeout", "50ms"], "min_rtt_timeout", 0.05),
    (["--max-rtt-timeout", "2"], "max_rtt_timeout", 2.0), (["--initial-rtt-timeout", "0.5s"], "initial_rtt_timeout", 0.5),
    (["--min-parallelism", "4"], "min_parallelism", 4), (["--max-parallelism", "1"], "max_parallelism", 1),
    (["-sV", "--version-light"], "version_intensity", 2), (["-sV", "--version-all"], "version_intensity", 9),
    (["-O", "--osscan-guess"], "osscan_guess", True), (["-O", "--osscan-limit"], "osscan_limit", True),
    (["--append-output"], "append_output", True), (["--packet-trace"], "packet_trace", True),
    (["--ttl", "7"], "ttl", 7), (["--data-length", "20"], "data_length", 20), (["--iflist"], "iflist", True),
    (["-g", "53"], "source_port", 53), (["--source-port=53"], "source_port", 53),
])
def test_option_sets_its_field_and_round_trips(argv, field, value):
    r = parse(*argv)
    assert getattr(r, field) == value
    assert ScanRequest.from_argv(r.to_argv()) == r
    assert ScanRequest.from_json(r.to_json()) == r


@pytest.mark.parametrize("argv, message", [
    (["-T6"], "bad -T"), (["-Tfast"], "bad -T"), (["-n", "-R"], "contradict"),
    (["-F", "-p", "22"], "-F"), (["-sL", "-sS"], "-sL only lists"),
    (["--rate", "5", "--max-rate", "9"], "fixed pace"), (["--min-rate", "9", "--max-rate", "5"], "above"),
    (["--min-parallelism", "9", "--max-parallelism", "5"], "above"), (["--host-timeout", "soon"], "bad --host-timeout"),
    (["--scan-delay", "-1s"], "bad --scan-delay"), (["--ttl", "0"], "bad --ttl"), (["--data-length", "9999"], "bad --data-length"),
    (["-g", "0"], "bad -g"), (["--source-port", "70000"], "bad --source-port"), (["--ip-options", "R"], "does not implement"),
    (["--badsum"], "does not implement nmap's --badsum"),
])
def test_bad_nmap_options(argv, message):
    with pytest.raises(InputError, match=message):
        parse(*argv)


def test_what_is_implemented_is_not_called_missing():
    implemented = {name for opt in OPTIONS for name in opt.names}
    assert not implemented & NMAP_MISSING


def test_templates_resolve_to_nmaps_table():
    t3 = Timing.from_request(parse())
    assert t3.adaptive and (t3.min_rtt, t3.max_rtt, t3.initial_rtt, t3.retries) == (0.1, 10.0, 1.0, 10)
    t4 = Timing.from_request(parse("-T4"))
    assert (t4.min_rtt, t4.max_rtt, t4.initial_rtt, t4.retries, t4.min_rate) == (0.1, 1.25, 0.5, 6, 100.0)
    t5 = Timing.from_request(parse("-T5"))
    assert (t5.min_rtt, t5.max_rtt, t5.initial_rtt, t5.retries, t5.host_timeout) == (0.05, 0.3, 0.25, 2, 900.0)
    t2 = Timing.from_request(parse("-T2"))
    assert t2.rate == pytest.approx(2.5) and t2.max_window == 1       # 0.4 s between probes, one at a time
    for level in TEMPLATES:
        assert Timing.from_request(parse(f"-T{level}")).max_window >= 1


def test_options_override_the_template():
    t = Timing.from_request(parse("-T4", "--max-retries", "1", "--max-rtt-timeout", "300ms", "--max-rate", "500",
                                  "--min-rate", "20", "--max-parallelism", "8", "--min-parallelism", "2"))
    # -T4's max scan delay (10 ms) floors the pace at 100/s: above --min-rate 20.
    assert (t.retries, t.max_rtt, t.rate, t.min_rate, t.max_window, t.min_window) == (1, 0.3, 500.0, 100.0, 8, 2)
    assert Timing.from_request(parse("--min-rate", "20")).min_rate == 20.0
    assert Timing.from_request(parse("--scan-delay", "100ms")).rate == pytest.approx(10.0)
    fixed = Timing.from_request(parse("--rate", "300"))
    assert not fixed.adaptive and fixed.rate == 300.0 and fixed.retries == 1 and fixed.wait == 2.0
    assert Timing.from_request(parse("--rate", "300", "--max-parallelism", "4")).max_window == 4
    assert Timing.from_request(parse("--max-parallelism", "50000")).max_window == 50000   # past -T3's own
    assert Timing.from_request(parse("-T2", "--max-parallelism", "8")).max_window == 8


def test_window_grows_while_replies_keep_up_and_halves_on_loss():
    w = Window(Timing.from_request(parse("-T4")))
    start = w.size
    w.sent(64)
    w.replies(0.0, np.full(64, 0.002), 64, 0, 0)
    assert w.size == start + 64 and w.in_flight == 0                  # slow start: +1 a reply
    assert w.srtt == pytest.approx(0.002) and w.timeout == 0.1        # floored by --min-rtt-timeout
    big = w.size
    w.sent(10)
    w.replies(1.0, np.zeros(0), 10, 3, 1)                             # answers to resends: a loss
    assert w.size == pytest.approx(big / 2, abs=0.2) and w.losses == 1      # then +1/window a reply
    w.replies(1.0001, np.zeros(0), 10, 3, 1)                          # once per round trip
    assert w.losses == 1
    assert w.tries_allowed() == 2                                     # resends answered: more allowed
    before = w.size
    w.replies(5.0, np.zeros(0), 1000, 0, 0)           # after a loss: about +1 per window of replies
    assert before + 1000 / before / 2 < w.size < before + 1000 / before + 1
    fresh = Window(w.t)
    fresh.replies(0.0, np.zeros(0), 10 ** 6, 0, 0)
    assert fresh.size == w.t.max_window              # slow start, never past the cap


def test_window_respects_parallelism_bounds():
    w = Window(Timing.from_request(parse("--max-parallelism", "1")))
    w.sent(1)
    assert w.room() == 0
    w.replies(0.0, np.array([0.001]), 1, 0, 0)
    assert w.room() == 1 and w.size == 1


def test_nmap_target_patterns_never_resolve():
    assert TargetSet.from_specs(["198.18.0.*"]).count == 256
    three = TargetSet.from_specs(["198.18.0.1,3,5"])
    assert [three.address(s) for s, _ in three.ranges()] == ["198.18.0.1", "198.18.0.3", "198.18.0.5"]
    grid = TargetSet.from_specs(["198.18.0-3.1-10"])
    assert grid.count == 40 and "198.18.3.10" in grid and "198.18.3.11" not in grid and "198.18.4.1" not in grid
    assert TargetSet.from_specs(["198.18.0.7,198.18.0.9"]).count == 2            # still a list of two
    with pytest.raises(InputError, match="0-255"):
        TargetSet.from_specs(["198.18.0-300.1"])


def test_service_names_and_bracket_ranges_in_ports():
    tcp, _ = port_lists("ssh,http", None)
    assert {22, 80} <= set(tcp.tolist()) and 443 not in tcp
    assert port_lists("https*", None)[0].tolist()[:1] == [443]
    bracket, _ = port_lists("[1-30]", None)
    assert 1 <= len(bracket) <= 30 and bracket.max() <= 30
    _, udp = port_lists("U:domain", None, tcp=False, udp=True)
    assert udp.tolist() == [53]
    assert len(port_lists(None, 100)[0]) == 100          # what -F selects


def test_packet_trace_describes_the_frame_sent():
    from scanner.techniques import SYN_SCAN, Probes
    from scanner.trace import describe_frame
    import ipaddress
    probes = Probes.ports(SYN_SCAN, [22]).shaped(ttl=7, data_length=20)
    blob, kinds, _ = probes.compile(4, bytes(6), bytes(6), ipaddress.IPv4Address("198.18.0.1").packed)
    frame = bytearray(blob)
    frame[14 + 16:14 + 20] = ipaddress.IPv4Address("198.18.0.5").packed
    frame[14 + 20 + 2:14 + 20 + 4] = (22).to_bytes(2, "big")
    text = describe_frame(bytes(frame))
    assert text.startswith("TCP 198.18.0.1:0 > 198.18.0.5:22 S ttl=7 ") and "iplen=80" in text   # 20+40+20


def test_completion_scripts_cover_every_option():
    script = completion_script("bash")
    for name in option_names():
        assert f" {name} " in f" {script.replace(chr(10), ' ')} " or name in script
    assert all(n in option_names() for opt in OPTIONS for n in opt.names)
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert "compdef" in completion_script("zsh")
    with pytest.raises(InputError):
        completion_script("fish")


def test_fields_are_checked_when_replaced():
    r = parse()
    with pytest.raises(InputError, match="-T"):
        dataclasses.replace(r, timing=9)
    with pytest.raises(InputError, match="--min-rate"):
        dataclasses.replace(r, min_rate=-1)


def test_source_port_is_fixed_in_the_frames_and_the_filter():
    import ipaddress
    from scanner._ext.cookie import split_key
    from scanner._ext.sender import ProbeSender
    from scanner.space import ScanSpace
    from scanner.techniques import SYN_SCAN, UDP_SCAN, Probes
    saddr = ipaddress.IPv4Address("198.18.0.1").packed
    for fixed in (0, 53):
        probes = Probes([(SYN_SCAN, 22), (UDP_SCAN, 161)]).shaped(source_port=fixed or None)
        space = ScanSpace(TargetSet.from_specs(["198.18.0.5"]), probes)
        blob, kinds, l2 = probes.compile(4, bytes(6), bytes(6), saddr)
        k0, k1 = split_key(bytes(16))
        sender = ProbeSender(None, False, l2, blob, kinds, k0, k1, saddr, space.arrays(), 1, 0)
        sports = {int.from_bytes(sender.build(i)[14 + 20:14 + 22], "big") for i in range(2)}
        if fixed:
            assert sports == {53} and "portrange 53-53" in probes.bpf(4, "198.18.0.1")
        else:
            assert 53 not in sports and all(s >= 1024 for s in sports)    # the cookie's ports
