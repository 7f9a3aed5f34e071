"""ScanRequest: the CLI's own parser (nmap's language), its JSON and argv round trips, and the
checks that turn bad input into one InputError before anything is resolved or sent."""
from __future__ import annotations

import dataclasses
import json

import pytest

import scanner
from scanner import InputError, ScanRequest
from scanner.request import OPTIONS, SHORTHANDS, help_text


def parse(*argv: str) -> ScanRequest:
    return ScanRequest.from_argv(list(argv))


def test_public_api_names():
    for name in ("ScanRequest", "Session", "ScanResult", "Checkpoint", "scan", "stream", "events",
                 "ScannerError", "InputError", "EnvironmentFault", "__version__"):
        assert getattr(scanner, name) is not None
    assert issubclass(scanner.InputError, scanner.ScannerError)
    assert issubclass(scanner.EnvironmentFault, scanner.ScannerError)
    assert scanner.InputError.exit_code == 2 and scanner.EnvironmentFault.exit_code == 1
    with pytest.raises(AttributeError):
        scanner.no_such_name


def test_values_glued_or_apart_and_combined_scan_flags():
    a = parse("198.18.0.1", "-p22,80", "--rate=500", "-sSV", "-PS22,443", "-oX-")
    b = parse("198.18.0.1", "-p", "22,80", "--rate", "500", "-sS", "-sV", "-PS", "-oX", "-")
    assert (a.ports, a.rate, a.tcp_scan, a.version_scan, a.xml_out) == ("22,80", 500.0, "syn", True, "-")
    assert a.ping_syn == "22,443" and b.ping_syn == ""      # -PS alone: the default port
    assert dataclasses.replace(a, ping_syn="") == b
    u = parse("198.18.0.1", "-sSU", "-Pn")
    assert u.tcp_scan == "syn" and u.udp and u.no_ping
    assert parse("198.18.0.1", "-PN").no_ping and parse("198.18.0.1", "-P0").no_ping
    assert parse("198.18.0.1", "-sTV").tcp_scan == "connect"


def test_sctp_scan_letters():
    assert ScanRequest.from_argv(["198.18.0.1", "-sY"]).sctp_scan == "init"
    assert ScanRequest.from_argv(["198.18.0.1", "-sZ"]).sctp_scan == "cookie"
    r = ScanRequest.from_argv(["198.18.0.1", "-sSYU"])
    assert (r.tcp_scan, r.sctp_scan, r.udp) == ("syn", "init", True)


def test_aggressive_is_nmaps_a():
    r = parse("198.18.0.1", "-A")
    assert r.version_scan and r.os_scan and r.script_scan and r.traceroute
    assert parse("198.18.0.1", "-A").to_argv() == parse("198.18.0.1", "-sV", "-O", "-sC", "--traceroute").to_argv()


@pytest.mark.parametrize("argv", [
    ["198.18.0.0/24", "-p", "22,80", "--rate", "0", "-sS", "-sU", "--seed", "7", "--shard", "2/3",
     "-oA", "base", "--exclude", "198.18.0.7", "--exclude", "198.18.0.9,198.18.0.10", "--reason"],
    ["-iL", "-", "-sn", "-PE", "-PP", "-PA80,443", "-PU", "-PR", "--db", "x.db", "-q"],
    ["198.18.0.1", "-sT", "--max-parallelism", "4", "-sV", "--version-intensity", "2", "--top-ports", "10"],
    ["198.18.0.1", "-sA", "--scanflags", "SYNFIN", "--wait", "0.5", "--retries", "0", "--stats-every", "2"],
    ["-6", "example.test", "-e", "lo", "--dry-run", "--no-db", "--show-all", "--csv", "-", "-oL", "l.txt"],
    ["198.18.0.1", "-sS", "-sY", "-p", "T:22,S:2905"],
    ["198.18.0.1", "-sZ", "-sU", "-p", "2905"],
])
def test_json_and_argv_round_trips(argv):
    r = ScanRequest.from_argv(argv)
    assert ScanRequest.from_json(r.to_json()) == r
    assert json.loads(r.to_json())["argv"] == argv
    again = ScanRequest.from_argv(r.to_argv())
    assert again == r
    assert r.command_line().startswith("scanner ")


def test_every_option_has_a_field_and_help():
    fields = {f.name for f in dataclasses.fields(ScanRequest)} | set(SHORTHANDS)
    for opt in OPTIONS:
        assert opt.field in fields, opt
        assert opt.help and opt.names[0] in help_text()
    assert "--resume" in help_text() and "EXAMPLES" in help_text()


@pytest.mark.parametrize("argv, message", [
    (["198.18.0.1", "-p", "22", "-p", "80"], "-p given twice"),
    (["198.18.0.1", "-sS", "-sT"], "choose one TCP scan technique"),
    (["198.18.0.1", "-sSA"], "choose one TCP scan technique"),
    (["198.18.0.1", "-sQ"], "unknown scan type -sQ"),
    (["198.18.0.1", "-sI"], "does not implement -sI"),
    (["198.18.0.1", "-sO", "-sU"], "runs alone in scanner"),
    (["198.18.0.1", "--badsum"], "does not implement nmap's --badsum"),
    (["198.18.0.1", "--bogus"], "no such option: --bogus"),
    (["198.18.0.1", "--rate"], "--rate needs a value"),
    (["198.18.0.1", "--rate", "nan"], "bad --rate"),
    (["198.18.0.1", "--rate", "inf"], "bad --rate"),
    (["198.18.0.1", "--rate", "-5"], "bad --rate"),
    (["198.18.0.1", "--rate", "1e-9"], "bad --rate"),
    (["198.18.0.1", "--wait", "nan"], "bad --wait"),
    (["198.18.0.1", "--retries", "99999999999999999999"], "bad --retries"),
    (["198.18.0.1", "--seed", "-5"], "bad --seed"),
    (["198.18.0.1", "--shard", "3/2"], "bad --shard"),
    (["198.18.0.1", "--shard", "1/99999999999999999999"], "bad --shard"),
    (["198.18.0.1", "--version-intensity", "10"], "bad --version-intensity"),
    (["198.18.0.1", "-sn", "-sS"], "-sn is host discovery only"),
    (["198.18.0.1", "-sn", "-Pn"], "leave nothing to do"),
    (["198.18.0.1", "-sY", "-sZ"], "choose one SCTP scan technique, not -sY and -sZ"),
    (["198.18.0.1", "-sn", "-sY"], "-sn is host discovery only"),
    (["198.18.0.1", "--db", "a", "--no-db"], "contradict"),
    (["198.18.0.1", "-p", "22", "--top-ports", "5"], "contradict"),
    (["198.18.0.1", "-sS", "x"], None),                 # a second target is fine
])
def test_bad_input_is_one_input_error(argv, message):
    if message is None:
        assert ScanRequest.from_argv(argv).targets == ("198.18.0.1", "x")
        return
    with pytest.raises(InputError, match=message.replace("?", r"\?")) as e:
        ScanRequest.from_argv(argv)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("doc, message", [
    ('{"targets": "198.18.0.1"}', "list of strings"),
    ('{"rate": "fast"}', "bad --rate"),
    ('{"bogus": 1}', "unknown scan request field"),
    ('{"udp": "yes"}', "expected true or false"),
    ('[1, 2]', "JSON object"),
    ('{not json', "JSON object"),
    ('{"tcp_scan": "teleport"}', "bad tcp_scan"),
])
def test_bad_json_is_one_input_error(doc, message):
    with pytest.raises(InputError, match=message):
        ScanRequest.from_json(doc)


def test_requests_are_frozen_and_checked_on_replace():
    r = parse("198.18.0.1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.rate = 5              # type: ignore[misc]
    with pytest.raises(InputError, match="bad --rate"):
        dataclasses.replace(r, rate=-1)
    assert dataclasses.replace(r, shard="2/4").shard == (2, 4)


def test_scale_options_round_trip():
    req = ScanRequest.from_argv(["0.0.0.0/0", "-p", "80", "--excludefile", "/dev/null", "--no-default-exclude",
                                 "--send-path", "xdp"])
    assert (req.send_path, req.no_default_exclude, req.exclude_file) == ("xdp", True, "/dev/null")
    assert ScanRequest.from_argv(req.to_argv()) == req
    assert ScanRequest.from_json(req.to_json()) == req
    assert ScanRequest.from_argv(["192.0.2.1"]).send_path == "auto"
    with pytest.raises(InputError, match="--send-path"):
        ScanRequest.from_argv(["192.0.2.1", "--send-path", "dpdk"])
