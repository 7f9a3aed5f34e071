import ipaddress
import numpy as np
import pytest

from scanner.errors import InputError
from scanner.targets import SPECIAL_PURPOSE, TargetSet, int_to_ip, ip_to_int, parse_target, read_target_file


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
    ts = TargetSet.from_specs(["0.0.0.0/0"], exclude_file="/dev/null", default_exclude=False)
    assert ts.count == 2 ** 32
    assert int(ts.ends[0]) == 0xFFFFFFFF


@pytest.mark.parametrize("targets", [["0.0.0.0/0"], ["0.0.0.0/1", "128.0.0.0/1"], ["0.0.0.0-255.255.255.255"],
                                     ["::/0"]])
def test_whole_address_space_needs_an_exclude_file(targets):
    with pytest.raises(InputError, match=r"whole address space .*--excludefile"):
        TargetSet.from_specs(targets)
    with pytest.raises(InputError, match="--excludefile"):
        TargetSet.from_specs(targets, exclude=["198.18.0.0/15"], default_exclude=False)   # --exclude is not enough


SPECIAL_V4 = [ipaddress.ip_network(p) for p, _ in SPECIAL_PURPOSE if ":" not in p]


def test_special_purpose_ranges_left_out_of_the_whole_internet():
    ts = TargetSet.from_specs(["0.0.0.0/0"], exclude_file="/dev/null")
    reserved = TargetSet([(int(n.network_address), int(n.broadcast_address)) for n in SPECIAL_V4])
    assert ts.count == 2 ** 32 - reserved.count
    for net in SPECIAL_V4:
        assert str(net.network_address) not in ts and str(net.broadcast_address) not in ts
    assert "8.8.8.8" in ts and "100.63.255.255" in ts and "100.128.0.0" in ts and "223.255.255.255" in ts
    count, prefixes = ts.special_excluded
    assert count == reserved.count and prefixes == sorted(map(str, SPECIAL_V4), key=ip_prefix_key)
    assert ts.special_note().startswith(f"not scanning {count:,} addresses in IANA special-purpose ranges (0.0.0.0/8, ")


def ip_prefix_key(prefix):
    return int(ipaddress.ip_network(prefix).network_address)


def test_a_target_inside_a_special_range_is_scanned():
    for spec, count in (("198.18.0.0/16", 65536), ("198.18.0.0/15", 131072), ("10.1.2.3", 1),
                        ("127.0.0.0/28", 16), ("2001:2::/120", 256), ("fe80::1", 1)):
        ts = TargetSet.from_specs([spec])
        assert ts.count == count and ts.special_excluded == (0, []), spec
        assert ts.special_note() is None


def test_special_ranges_inside_a_larger_block_are_removed_unless_named():
    ts = TargetSet.from_specs(["198.0.0.0/8"])
    assert "198.18.0.1" not in ts and "198.19.255.255" not in ts and "198.51.100.7" not in ts
    assert "198.17.255.255" in ts and "198.20.0.0" in ts
    assert ts.count == 2 ** 24 - 2 ** 17 - 256
    assert ts.special_excluded == (2 ** 17 + 256, ["198.18.0.0/15", "198.51.100.0/24"])
    # Naming a block inside one keeps that block only.
    ts = TargetSet.from_specs(["198.0.0.0/8", "198.18.7.0/24"])
    assert "198.18.7.9" in ts and "198.18.8.0" not in ts
    # The limited broadcast inside 240/4 is left out even when 240/4 is named.
    ts = TargetSet.from_specs(["240.0.0.0/4"])
    assert ts.count == 2 ** 28 - 1 and "255.255.255.255" not in ts
    # A dash range reaching into a private block loses the private part.
    ts = TargetSet.from_specs(["9.255.255.250-10.0.0.5"])
    assert ts.count == 6 and "10.0.0.0" not in ts


def test_no_default_exclude_keeps_special_ranges():
    ts = TargetSet.from_specs(["198.0.0.0/8"], default_exclude=False)
    assert ts.count == 2 ** 24 and ts.special_excluded == (0, [])


def test_special_ranges_v6():
    ts = TargetSet.from_specs(["2001:1::/120"])             # holds three anycast addresses
    assert ts.count == 253 and "2001:1::1" not in ts and "2001:1::4" in ts
    assert ts.special_excluded == (3, ["2001:1::1/128", "2001:1::2/128", "2001:1::3/128"])
    ts = TargetSet.from_specs(["::/108"])                    # unspecified and loopback
    assert ts.count == 2 ** 20 - 2 and "::1" not in ts and "::2" in ts
    assert TargetSet.from_specs(["::1"]).count == 1


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


def scanner_cli(*args):
    """`python -m scanner ARGS` from this checkout (dry runs and refusals need no root)."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "scanner", *args], capture_output=True, text=True,
                          env=env, timeout=120, cwd=root)


@pytest.mark.parametrize("target", ["0.0.0.0/0", "::/0"])
def test_cli_refuses_the_whole_internet_without_an_exclude_file(target):
    r = scanner_cli(target, "-p", "80", "--dry-run")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("scanner: error: the targets are the whole address space")
    assert len(r.stderr.splitlines()) == 1, r.stderr


def test_cli_dry_run_of_a_shard_of_the_internet_holds_no_special_purpose_address():
    n = 65536
    r = scanner_cli("0.0.0.0/0", "-p", "80", "-Pn", "--excludefile", "/dev/null", "--dry-run", "--seed", "5",
                    "--shard", f"1/{n}")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("scanner: not scanning 592,708,"), r.stderr
    addrs = np.array([ip_to_int(line.split()[0]) for line in r.stdout.splitlines()], dtype=np.uint64)
    reserved = TargetSet([(int(s.network_address), int(s.broadcast_address)) for s in SPECIAL_V4])
    assert len(addrs) == -(-(2 ** 32 - reserved.count) // n)      # this shard's share, rounded up
    for net in SPECIAL_V4:
        lo, hi = int(net.network_address), int(net.broadcast_address)
        assert not ((addrs >= lo) & (addrs <= hi)).any(), f"{net} probed"
    # Spread over the whole space (one address in 65536 of it, in permutation order).
    assert len(np.unique(addrs >> np.uint64(24))) > 200


def test_cli_dry_run_of_a_lab_prefix_inside_a_special_range_lists_all_of_it():
    r = scanner_cli("198.18.0.0/16", "-p", "80", "--dry-run", "-Pn")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert len(set(r.stdout.splitlines())) == 65536
    r = scanner_cli("198.0.0.0/8", "-p", "80", "--dry-run", "-Pn", "--shard", "1/4096", "--no-default-exclude")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert len(r.stdout.splitlines()) == 2 ** 24 // 4096
