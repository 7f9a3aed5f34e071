import ipaddress
import numpy as np
import pytest

from scanner.errors import InputError
from scanner.targets import TargetSet, int_to_ip, ip_to_int, parse_target, read_target_file


def ip(s):
    return ip_to_int(s)


def test_ip_int_roundtrip():
    assert ip_to_int("198.18.0.5") == 0xC6120005
    assert int_to_ip(0xC6120005) == "198.18.0.5"
    assert int_to_ip(ip_to_int("0.0.0.0")) == "0.0.0.0"
    assert int_to_ip(0xFFFFFFFF) == "255.255.255.255"
    with pytest.raises(InputError, match="bad IPv4 address 'nope'"):
        ip_to_int("nope")


def test_single_address():
    assert parse_target("198.18.0.5") == [(ip("198.18.0.5"), ip("198.18.0.5"))]
    assert parse_target("  198.18.0.5\n") == [(ip("198.18.0.5"), ip("198.18.0.5"))]


def test_cidr():
    assert parse_target("198.18.0.0/16") == [(ip("198.18.0.0"), ip("198.18.255.255"))]
    assert parse_target("198.18.0.7/32") == [(ip("198.18.0.7"), ip("198.18.0.7"))]
    assert parse_target("0.0.0.0/0") == [(0, 0xFFFFFFFF)]


def test_cidr_host_bits_are_masked():
    assert parse_target("198.18.77.9/16") == [(ip("198.18.0.0"), ip("198.18.255.255"))]
    assert parse_target("10.1.2.3/31") == [(ip("10.1.2.2"), ip("10.1.2.3"))]


def test_dash_range():
    assert parse_target("198.18.0.1-198.18.3.255") == [(ip("198.18.0.1"), ip("198.18.3.255"))]
    assert parse_target("198.18.0.9-198.18.0.9") == [(ip("198.18.0.9"), ip("198.18.0.9"))]


def test_short_last_octet_range():
    assert parse_target("198.18.0.1-20") == [(ip("198.18.0.1"), ip("198.18.0.20"))]
    assert parse_target("198.18.0.0-255") == [(ip("198.18.0.0"), ip("198.18.0.255"))]


def test_hostname_localhost():
    ranges = parse_target("localhost")
    assert ranges and all(0 <= s <= e <= 0xFFFFFFFF for s, e in ranges)
    assert any(s <= ip("127.0.0.1") <= e for s, e in ranges)


def test_hostname_with_prefix():
    assert parse_target("localhost/24") == [(ip("127.0.0.0"), ip("127.0.0.255"))]


@pytest.mark.parametrize("spec, words", [
    ("300.1.1.1", ["'300.1.1.1'", "not an IPv4 address, CIDR, range or resolvable hostname"]),
    ("1.2.3", ["'1.2.3'", "not an IPv4 address"]),
    ("", ["empty"]),
    ("1.2.3.4/33", ["'1.2.3.4/33'", "/33", "0-32"]),
    ("1.2.3.4/", ["'1.2.3.4/'", "0-32"]),
    ("1.2.3.4/x", ["'1.2.3.4/x'", "0-32"]),
    ("1.2.3.4/8/8", ["'1.2.3.4/8/8'"]),
    ("999.1.1.1/8", ["'999.1.1.1/8'", "'999.1.1.1' is not an IPv4 address"]),
    ("1.2.3.9-1.2.3.1", ["'1.2.3.9-1.2.3.1'", "before its start"]),
    ("1.2.3.9-5", ["'1.2.3.9-5'", "before its start"]),
    ("1.2.3.4-300", ["'1.2.3.4-300'", "out of range 0-255"]),
    ("1.2.3.4-", ["'1.2.3.4-'", "range end"]),
    ("1.2.3.4-1.2.3.x", ["'1.2.3.4-1.2.3.x'", "range end"]),
    ("bad host!", ["'bad host!'", "not an IPv4 address"]),
    ("-foo", ["'-foo'"]),
])
def test_bad_targets(spec, words):
    with pytest.raises(InputError) as exc:
        parse_target(spec)
    msg = str(exc.value)
    assert "\n" not in msg
    for word in words:
        assert word in msg


def test_unresolvable_hostname(monkeypatch):
    import socket

    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(InputError, match=r"bad target 'no-such-host\.invalid': cannot resolve"):
        parse_target("no-such-host.invalid")


def test_hostname_all_a_records(monkeypatch):
    import socket

    def fake(host, *args, **kwargs):
        assert host == "multi.example"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0))
                for a in ("198.18.0.9", "198.18.0.7", "198.18.0.8")]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    assert parse_target("multi.example") == [(ip(a), ip(a)) for a in
                                             ("198.18.0.7", "198.18.0.8", "198.18.0.9")]
    ts = TargetSet.from_specs(["multi.example"])
    assert ts.ranges() == [(ip("198.18.0.7"), ip("198.18.0.9"))]


@pytest.mark.parametrize("spec", ["::1", "2001:db8::/32", "fe80::1"])
def test_ipv6_is_not_an_ipv4_target(spec):
    with pytest.raises(InputError, match="not an IPv4 address"):
        parse_target(spec)


def test_ipv6_targets():
    ts = TargetSet.from_specs(["2001:db8::/126", "2001:db8::10-2001:db8::11"], exclude=["2001:db8::1"])
    assert ts.family == 6 and ts.count == 5
    hosts = [bytes(row) for row in ts.hosts6]
    assert hosts == [ipaddress.IPv6Address(a).packed for a in
                     ("2001:db8::", "2001:db8::2", "2001:db8::3", "2001:db8::10", "2001:db8::11")]
    assert "2001:db8::3" in ts and "2001:db8::1" not in ts


def test_ipv6_limits_and_mixing():
    with pytest.raises(InputError, match="too many"):
        TargetSet.from_specs(["2001:db8::/64"])
    with pytest.raises(InputError, match="cannot be mixed"):
        TargetSet.from_specs(["198.18.0.1", "2001:db8::1"])
    with pytest.raises(InputError, match="not an IPv6"):
        TargetSet.from_specs(["2001:db8::zz"])


def test_slash8_is_not_expanded():
    ts = TargetSet.from_specs(["10.0.0.0/8"])
    assert ts.count == 16777216
    assert len(ts.starts) == 1 and len(ts.ends) == 1
    assert ts.starts.dtype == np.uint32 and ts.ends.dtype == np.uint32
    assert int(ts.starts[0]) == ip("10.0.0.0") and int(ts.ends[0]) == ip("10.255.255.255")


def test_whole_internet_count():
    ts = TargetSet.from_specs(["0.0.0.0/0"])
    assert ts.count == 2 ** 32
    assert int(ts.ends[0]) == 0xFFFFFFFF


def test_merge_overlaps_and_adjacent():
    ts = TargetSet.from_specs(["198.18.0.0/24", "198.18.0.128-198.18.1.10",
                               "198.18.1.11", "198.18.5.1", "198.18.0.5"])
    assert ts.ranges() == [(ip("198.18.0.0"), ip("198.18.1.11")),
                           (ip("198.18.5.1"), ip("198.18.5.1"))]
    assert ts.count == 256 + 12 + 1
    assert list(ts.starts) == [s for s, _ in ts.ranges()]
    assert list(ts.ends) == [e for _, e in ts.ranges()]


def test_unsorted_input_is_sorted():
    ts = TargetSet.from_specs(["198.18.9.0/24", "198.18.1.0/24"])
    assert ts.ranges() == [(ip("198.18.1.0"), ip("198.18.1.255")),
                           (ip("198.18.9.0"), ip("198.18.9.255"))]


def test_exclude_splits_interval():
    ts = TargetSet.from_specs(["198.18.0.0/24"], exclude=["198.18.0.10-20"])
    assert ts.ranges() == [(ip("198.18.0.0"), ip("198.18.0.9")),
                           (ip("198.18.0.21"), ip("198.18.0.255"))]
    assert ts.count == 256 - 11


def test_exclude_comma_separated_and_edges():
    ts = TargetSet.from_specs(["198.18.0.0/24", "198.18.2.0/24"],
                              exclude=["198.18.0.0,198.18.0.255", "198.18.3.7/23"])
    assert ts.ranges() == [(ip("198.18.0.1"), ip("198.18.0.254"))]
    assert ts.count == 254


def test_exclude_one_range_spanning_several_targets():
    ts = TargetSet.from_specs(["198.18.0.1", "198.18.0.5", "198.18.0.9", "198.18.0.20"],
                              exclude=["198.18.0.2-198.18.0.10"])
    assert ts.ranges() == [(ip("198.18.0.1"),) * 2, (ip("198.18.0.20"),) * 2]


def test_exclude_outside_targets_is_harmless():
    ts = TargetSet.from_specs(["198.18.0.0/30"], exclude=["10.0.0.0/8"])
    assert ts.count == 4


def test_contains():
    ts = TargetSet.from_specs(["198.18.0.0/24"], exclude=["198.18.0.10-20"])
    assert "198.18.0.9" in ts
    assert "198.18.0.10" not in ts
    assert ip("198.18.0.21") in ts
    assert "198.18.1.0" not in ts
    assert 0 not in ts


def test_everything_excluded():
    with pytest.raises(InputError, match="no targets left after excludes"):
        TargetSet.from_specs(["198.18.0.0/24"], exclude=["198.18.0.0/16"])


def test_no_targets():
    with pytest.raises(InputError, match="no targets given"):
        TargetSet.from_specs([])


def test_bad_exclude_is_named_as_exclude():
    with pytest.raises(InputError, match="bad exclude '1.2.3.4/40'"):
        TargetSet.from_specs(["198.18.0.0/24"], exclude=["1.2.3.4/40"])


def test_bad_target_in_set():
    with pytest.raises(InputError, match="bad target '300.1.1.1'"):
        TargetSet.from_specs(["198.18.0.1", "300.1.1.1"])


def test_target_file_with_comments(tmp_path):
    path = tmp_path / "targets.txt"
    path.write_text("# lab hosts\n198.18.0.0/30  198.18.0.10\n\n"
                    "198.18.1.1-5 # short range\n   # indented comment\n\t198.18.2.1\n")
    assert read_target_file(str(path)) == ["198.18.0.0/30", "198.18.0.10",
                                           "198.18.1.1-5", "198.18.2.1"]
    ts = TargetSet.from_specs([], input_file=str(path))
    assert ts.count == 4 + 1 + 5 + 1


def test_target_file_combined_with_cli_targets_and_exclude_file(tmp_path):
    targets = tmp_path / "t.txt"
    targets.write_text("198.18.0.0/24\n")
    excl = tmp_path / "x.txt"
    excl.write_text("# skip the gateway\n198.18.0.1\n198.18.9.0/24\n")
    ts = TargetSet.from_specs(["198.18.9.5"], input_file=str(targets), exclude_file=str(excl))
    assert ts.count == 255
    assert "198.18.0.1" not in ts and "198.18.0.2" in ts and "198.18.9.5" not in ts


def test_empty_target_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("# nothing here\n")
    with pytest.raises(InputError, match="no targets given"):
        TargetSet.from_specs([], input_file=str(path))


def test_missing_target_file(tmp_path):
    missing = tmp_path / "missing.txt"
    with pytest.raises(InputError, match="cannot read target file '.*missing.txt'"):
        read_target_file(str(missing))
    with pytest.raises(InputError, match="cannot read target file"):
        TargetSet.from_specs(["198.18.0.1"], exclude_file=str(missing))


def test_unreadable_target_file(tmp_path):
    with pytest.raises(InputError, match="cannot read target file"):
        read_target_file(str(tmp_path))  # a directory
