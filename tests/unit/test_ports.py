import numpy as np
import pytest

from scanner.errors import InputError
from scanner.ports import format_ports, parse_ports, port_lists, top_ports


def as_list(arr):
    assert arr.dtype == np.uint16
    return [int(p) for p in arr]


def test_simple_list_and_range():
    assert as_list(parse_ports("22,80,1000-1003")) == [22, 80, 1000, 1001, 1002, 1003]


def test_sorted_and_unique():
    assert as_list(parse_ports("443,22,80,22,20-23")) == [20, 21, 22, 23, 80, 443]


def test_dash_alone_is_all_ports():
    ports = parse_ports("-")
    assert len(ports) == 65535
    assert int(ports[0]) == 1 and int(ports[-1]) == 65535


def test_open_ranges():
    assert as_list(parse_ports("-1024")) == list(range(1, 1025))
    assert as_list(parse_ports("60000-")) == list(range(60000, 65536))


def test_port_zero_only_when_explicit():
    assert 0 not in as_list(parse_ports("-"))
    assert 0 not in as_list(parse_ports("-10"))
    assert as_list(parse_ports("0")) == [0]
    assert as_list(parse_ports("0-2")) == [0, 1, 2]


def test_tcp_prefix():
    assert as_list(parse_ports("T:80,443")) == [80, 443]
    assert as_list(parse_ports("T:22,T:25")) == [22, 25]


def test_whitespace_around_items():
    assert as_list(parse_ports(" 22 , 80 ")) == [22, 80]


def test_udp_prefix_needs_udp_scan():
    with pytest.raises(InputError, match=r"UDP ports \(U:\) need the UDP scan: add -sU"):
        parse_ports("T:80,U:53")


def test_port_lists_per_protocol():
    from scanner.ports import port_lists
    tcp, udp = port_lists("22,T:80,U:53,161", None, tcp=True, udp=True)
    assert as_list(tcp) == [22, 80]            # unqualified 22 counts for both, as in nmap
    assert as_list(udp) == [22, 53, 161]
    tcp, udp = port_lists(None, 10, tcp=False, udp=True)
    assert len(tcp) == 0 and 161 in as_list(udp) and 53 in as_list(udp) and len(udp) == 10
    tcp, udp = port_lists(None, None, tcp=True, udp=True)
    assert len(tcp) == len(udp) == 1000
    with pytest.raises(InputError, match="no ports"):
        port_lists("T:80", None, tcp=False, udp=True)


def test_sctp_prefix_needs_an_sctp_scan():
    with pytest.raises(InputError, match="SCTP"):
        parse_ports("S:80")


@pytest.mark.parametrize("spec, words", [
    ("", ["empty"]),
    ("65536", ["'65536'", "65536", "out of range"]),
    ("22,70000-70010", ["70000", "out of range"]),
    ("100-10", ["'100-10'", "reversed"]),
    ("nosuchservice", ["'nosuchservice'", "no service is named"]),
    ("22,ht$p", ["no service is named"]),
    ("22,,80", ["empty entry"]),
    ("22,", ["empty entry"]),
    ("1-2-3", ["'1-2-3'"]),
    ("-5-", ["'-5-'"]),
    ("+80", ["'+80'"]),
    ("X:80", ["unknown protocol prefix"]),
    ("8 0", ["'8 0'"]),
])
def test_bad_port_specs(spec, words):
    with pytest.raises(InputError) as exc:
        parse_ports(spec)
    msg = str(exc.value)
    assert "\n" not in msg
    for word in words:
        assert word in msg


def test_top_ports_order():
    assert as_list(top_ports(1)) == [80]
    top10 = as_list(top_ports(10))
    assert len(top10) == 10 and {22, 80, 443} <= set(top10)


def test_top_ports_more_than_available():
    everything = top_ports(10 ** 6)
    assert 1000 < len(everything) <= 65536
    assert len(set(as_list(everything))) == len(everything)


def test_top_ports_must_be_positive():
    for n in (0, -3):
        with pytest.raises(InputError, match="at least 1"):
            top_ports(n)
        with pytest.raises(InputError, match="at least 1"):
            parse_ports(None, top_ports=n)


def test_top_ports_returns_copy():
    a = top_ports(5)
    a[0] = 1
    assert int(top_ports(5)[0]) == 80


def test_default_is_top_1000():
    ports = parse_ports(None)
    assert len(ports) == 1000
    assert ports.dtype == np.uint16
    assert np.all(np.diff(ports.astype(np.int64)) > 0)  # sorted, unique
    assert set(as_list(ports)) == set(as_list(top_ports(1000)))
    assert {21, 22, 23, 25, 80, 443, 3389} <= set(as_list(ports))


def test_top_ports_via_parse_ports_sorted():
    assert as_list(parse_ports(None, top_ports=10)) == sorted(as_list(top_ports(10)))


def test_top_ports_within_spec():
    # Like nmap: -p with --top-ports picks the most frequent ports inside the spec.
    assert as_list(parse_ports("1-100", top_ports=2)) == [23, 80]
    with pytest.raises(InputError, match="none of these ports"):
        parse_ports("0", top_ports=5)


@pytest.mark.parametrize("ports, text", [
    ([22, 80, 1000, 1001, 1002], "22,80,1000-1002"),
    ([], ""),
    ([5], "5"),
    ([3, 1, 2, 2], "1-3"),
    ([0, 65535], "0,65535"),
])
def test_format_ports(ports, text):
    assert format_ports(np.array(ports, dtype=np.uint16)) == text


def test_format_roundtrip():
    spec = "1-1024,8080,60000-"
    assert format_ports(parse_ports(spec)) == "1-1024,8080,60000-65535"
    top = parse_ports(None)
    assert np.array_equal(parse_ports(format_ports(top)), top)


def test_sctp_ports_with_s_prefix_and_unqualified():
    tcp, udp, sctp = port_lists("22,T:80,S:2905,36412", None, tcp=True, udp=False, sctp=True)
    assert tcp.tolist() == [22, 80] and udp.tolist() == [] and sctp.tolist() == [22, 2905, 36412]
    with pytest.raises(InputError, match=r"SCTP ports \(S:\) need an SCTP scan"):
        port_lists("S:2905", None)
    _, _, top = port_lists(None, None, tcp=False, sctp=True)      # nmap's SCTP ports (all of them)
    assert 2905 in top.tolist() and 36412 in top.tolist()
