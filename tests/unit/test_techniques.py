"""Scan techniques (scanner/techniques.py): state tables the compiled parser indexes (per nmap's
documentation of each scan type), --scanflags, and the slots/kinds of Probes."""
import numpy as np
import pytest

from scanner._ext.cookie import SOURCE_PORT_RANGE
from scanner._ext.parser import REPLY_KINDS, STATES
from scanner.errors import InputError
from scanner.protocols.ipproto import IP_PROTO_SCAN
from scanner.protocols.sctp import COOKIE_ECHO_SCAN, INIT_SCAN
from scanner.states import PROBE_KIND_DTYPE
from scanner.techniques import (ACK, ACK_SCAN, CONNECT_SCAN, DISCOVERY, FIN, FIN_SCAN, MAIMON_SCAN, NULL_SCAN,
                                PSH, SYN, SYN_SCAN, TCP_TECHNIQUES, UDP_SCAN, URG, WINDOW_SCAN, XMAS_SCAN,
                                Probes, parse_scanflags, udp_payload_cookie, udp_payloads, with_flags)

SADDR = bytes([198, 19, 255, 1])
MAC = bytes(6)

# nmap's reading of each reply kind per scan type; None: the reply is not about this scan.
NMAP_TABLES = {
    "syn": {"syn-ack": "open", "reset": "closed", "reset-window": "closed", "icmp-unreach": "filtered",
            "port-unreach": "filtered", "no-response": "filtered"},
    "ack": {"reset": "unfiltered", "reset-window": "unfiltered", "icmp-unreach": "filtered",
            "port-unreach": "filtered", "no-response": "filtered"},
    "window": {"reset-window": "open", "reset": "closed", "icmp-unreach": "filtered",
               "port-unreach": "filtered", "no-response": "filtered"},
    "udp": {"udp-response": "open", "port-unreach": "closed", "icmp-unreach": "filtered",
            "no-response": "open|filtered"},
}
for _key in ("null", "fin", "xmas", "maimon"):
    NMAP_TABLES[_key] = {"reset": "closed", "reset-window": "closed", "icmp-unreach": "filtered",
                         "port-unreach": "filtered", "no-response": "open|filtered"}
# nmap: ICMP protocol unreachable (code 2) means filtered for port scans
for _table in NMAP_TABLES.values():
    _table["proto-unreach"] = "filtered"
NMAP_TABLES["sctpinit"] = {"init-ack": "open", "abort": "closed", "icmp-unreach": "filtered",
                           "port-unreach": "filtered", "proto-unreach": "filtered", "no-response": "filtered"}
NMAP_TABLES["sctpcookieecho"] = {"abort": "closed", "icmp-unreach": "filtered", "port-unreach": "filtered",
                                 "proto-unreach": "filtered", "no-response": "open|filtered"}
# -sO: an answer in the protocol (ICMP: the echo reply; UDP: the port unreachable) -> open
NMAP_TABLES["ipproto"] = {"proto-response": "open", "echo-reply": "open", "port-unreach": "open",
                          "proto-unreach": "closed", "icmp-unreach": "filtered", "no-response": "open|filtered"}

TECHNIQUES = [SYN_SCAN, ACK_SCAN, WINDOW_SCAN, NULL_SCAN, FIN_SCAN, XMAS_SCAN, MAIMON_SCAN, UDP_SCAN, INIT_SCAN,
              COOKIE_ECHO_SCAN, IP_PROTO_SCAN]


@pytest.mark.parametrize("technique", TECHNIQUES, ids=[t.key for t in TECHNIQUES])
def test_state_tables_per_nmap(technique):
    table = technique.table()
    assert len(table) == len(REPLY_KINDS)
    want = NMAP_TABLES[technique.key]
    for kind, code in REPLY_KINDS.items():
        assert table[code] == (STATES[want[kind]] if kind in want else 0), kind


def test_syn_scan_state_table():
    table = SYN_SCAN.table()
    assert table[REPLY_KINDS["syn-ack"]] == STATES["open"]
    assert table[REPLY_KINDS["reset"]] == STATES["closed"]
    assert table[REPLY_KINDS["reset-window"]] == STATES["closed"]
    assert table[REPLY_KINDS["icmp-unreach"]] == STATES["filtered"]
    assert table[REPLY_KINDS["port-unreach"]] == STATES["filtered"]
    assert table[REPLY_KINDS["no-response"]] == STATES["filtered"]


def test_discovery_tables():
    up = STATES["up"]
    expect = {"PE": {"echo-reply"}, "PP": {"timestamp-reply"}, "PS": {"syn-ack", "reset", "reset-window"},
              "PA": {"reset", "reset-window"}, "PU": {"udp-response", "port-unreach"},
              "PR": {"arp-response"}}
    for key, kinds in expect.items():
        table = DISCOVERY[key].table()
        for kind in kinds:
            assert table[REPLY_KINDS[kind]] == up, (key, kind)
        others = set(REPLY_KINDS) - kinds - {"no-response"}
        assert all(table[REPLY_KINDS[k]] == 0 for k in others), key
    assert (DISCOVERY["PE"].proto, DISCOVERY["PE"].icmp_type) == ("icmp", 8)
    assert (DISCOVERY["PP"].proto, DISCOVERY["PP"].icmp_type) == ("icmp", 13)
    assert (DISCOVERY["PS"].tcp_flags, DISCOVERY["PA"].tcp_flags) == (SYN, ACK)
    assert DISCOVERY["PU"].proto == "udp"


def test_reply_kind_codes_index_the_table():
    assert sorted(REPLY_KINDS.values()) == list(range(len(REPLY_KINDS)))
    assert set(REPLY_KINDS) == {"syn-ack", "reset", "reset-window", "icmp-unreach", "port-unreach",
                                "udp-response", "echo-reply", "timestamp-reply", "arp-response", "no-response",
                                "init-ack", "abort", "proto-response", "proto-unreach"}


def test_state_codes_distinct_and_nonzero():
    codes = list(STATES.values())
    assert len(set(codes)) == len(codes)
    assert 0 not in codes                       # 0 means "ignore this reply" in the table


def test_state_table_is_a_fresh_list():
    a = SYN_SCAN.table()
    a[REPLY_KINDS["syn-ack"]] = 0
    assert SYN_SCAN.table()[REPLY_KINDS["syn-ack"]] == STATES["open"]


def test_tcp_flags_of_each_technique():
    assert [t.tcp_flags for t in (SYN_SCAN, ACK_SCAN, WINDOW_SCAN, NULL_SCAN, FIN_SCAN, XMAS_SCAN, MAIMON_SCAN)] == [
        SYN, ACK, ACK, 0, FIN, FIN | PSH | URG, FIN | ACK]
    assert all(t.proto == "tcp" and t.raw for t in TECHNIQUES[:7])
    assert UDP_SCAN.proto == "udp" and UDP_SCAN.tcp_flags == 0


def test_syn_scan_flags_and_registry():
    assert SYN_SCAN.tcp_flags == SYN
    assert not SYN_SCAN.tcp_flags & ACK
    assert SYN_SCAN.flag == "-sS"
    assert TCP_TECHNIQUES["-sS"] is SYN_SCAN
    assert SYN_SCAN.no_response == "filtered"
    assert {f: t.key for f, t in TCP_TECHNIQUES.items()} == {
        "-sS": "syn", "-sT": "connect", "-sA": "ack", "-sW": "window", "-sN": "null", "-sF": "fin",
        "-sX": "xmas", "-sM": "maimon"}
    assert not CONNECT_SCAN.raw
    assert UDP_SCAN.flag == "-sU"


# --- --scanflags ----------------------------------------------------------------

@pytest.mark.parametrize("text,value", [
    ("SYNFIN", 3), ("URGPSHFIN", 0x29), ("0x12", 0x12), ("0X12", 0x12), ("9", 9), ("0", 0), ("255", 255),
    ("synfin", 3), ("  ACKRST ", 0x14), ("ECECWR", 0xC0), ("FINSYNRSTPSHACKURGECECWR", 0xFF), ("SYNSYN", 2),
])
def test_parse_scanflags(text, value):
    assert parse_scanflags(text) == value


@pytest.mark.parametrize("text", ["SYNFOO", "BOGUS", "SYN FIN", "SYN,FIN", "0x100", "256", "-1", "SY", "FINX"])
def test_parse_scanflags_rejects(text):
    with pytest.raises(InputError):
        parse_scanflags(text)


def test_with_flags_reads_replies_as_its_base():
    t = with_flags(FIN_SCAN, parse_scanflags("URGPSHFIN"))
    assert t.tcp_flags == 0x29 and t.proto == "tcp"
    assert t.table() == FIN_SCAN.table()
    assert t is not XMAS_SCAN
    s = with_flags(SYN_SCAN, 0x12)
    assert s.table() == SYN_SCAN.table() and s.tcp_flags == 0x12
    assert SYN_SCAN.tcp_flags == SYN                     # the base is not changed


# --- Probes ---------------------------------------------------------------------

def test_probes_ports_slots():
    p = Probes.ports(SYN_SCAN, [80, 22], [53, 9])
    assert [(t, port) for t, port in p.slots] == [(SYN_SCAN, 80), (SYN_SCAN, 22), (UDP_SCAN, 53), (UDP_SCAN, 9)]
    assert p.slot_port.tolist() == [80, 22, 53, 9]
    assert p.slot_port.dtype == np.uint16 and p.slot_kind.dtype == np.uint16
    assert p.tcp_slot[80] == 0 and p.tcp_slot[22] == 1 and p.tcp_slot[53] == -1
    assert p.udp_slot[53] == 2 and p.udp_slot[9] == 3 and p.udp_slot[80] == -1
    assert p.protos == {"tcp", "udp"}


@pytest.mark.parametrize("slots", [
    [(SYN_SCAN, 80), (SYN_SCAN, 80)],
    [(SYN_SCAN, 80), (ACK_SCAN, 80)],
    [(DISCOVERY["PS"], 443), (DISCOVERY["PA"], 443)],
    [(UDP_SCAN, 53), (UDP_SCAN, 53)],
    [(UDP_SCAN, 53), (DISCOVERY["PU"], 53)],
], ids=["syn-syn", "syn-ack", "ps-pa", "udp-udp", "udp-pu"])
def test_duplicate_ports_rejected(slots):
    with pytest.raises(InputError):
        Probes(slots)
    with pytest.raises(InputError):
        Probes.ports(SYN_SCAN, [1, 2, 1])


def test_same_port_in_tcp_and_udp_is_fine():
    p = Probes.ports(SYN_SCAN, [53], [53])
    assert p.tcp_slot[53] == 0 and p.udp_slot[53] == 1


def test_empty_probes_rejected():
    with pytest.raises(InputError):
        Probes([])
    with pytest.raises(InputError):
        Probes.ports(SYN_SCAN, [], [])


def test_kinds_shared_by_slots_with_the_same_technique_and_payload():
    payloads = udp_payloads()
    assert payloads[7][4:] == payloads[19]                   # echo: cookie bytes, then chargen's datagram
    p = Probes.ports(SYN_SCAN, [22, 80, 443], [1000, 53, 2000, 7, 19, 161])
    assert [k[:2] for k in p.kinds] == [(SYN_SCAN, b""), (UDP_SCAN, b""), (UDP_SCAN, payloads[53]),
                                        (UDP_SCAN, payloads[7]), (UDP_SCAN, payloads[19]), (UDP_SCAN, payloads[161])]
    assert [k[2] for k in p.kinds] == [None, None, udp_payload_cookie(53), udp_payload_cookie(7), None,
                                       udp_payload_cookie(161)]
    assert p.slot_kind.tolist() == [0, 0, 0, 1, 2, 1, 3, 4, 5]
    d = Probes([(DISCOVERY["PE"], 0), (DISCOVERY["PS"], 443), (DISCOVERY["PS"], 80), (DISCOVERY["PA"], 81),
                (DISCOVERY["PP"], 0), (SYN_SCAN, 22)])
    assert d.slot_kind.tolist() == [0, 1, 1, 2, 3, 4]
    # a --scanflags technique is its own kind even with the same flags as another
    f = Probes([(SYN_SCAN, 1), (with_flags(SYN_SCAN, SYN), 2)])
    assert f.slot_kind.tolist() == [0, 1]


def test_compile_kinds_match_the_kinds():
    p = Probes.ports(XMAS_SCAN, [22, 80], [53, 9])
    blob, kinds, l2 = p.compile(4, MAC, MAC, SADDR)
    assert kinds.dtype == PROBE_KIND_DTYPE and len(kinds) == len(p.kinds) == 3
    assert kinds["proto"].tolist() == [6, 17, 17]
    assert kinds["tcp_flags"].tolist() == [FIN | PSH | URG, 0, 0]
    assert kinds["table"].tolist() == [XMAS_SCAN.table(), UDP_SCAN.table(), UDP_SCAN.table()]
    assert kinds["length"].tolist() == [14 + 20 + 20, 14 + 20 + 8 + len(udp_payloads()[53]), 14 + 20 + 8]


def test_too_many_slots_rejected():
    with pytest.raises(InputError):
        Probes([(SYN_SCAN, p) for p in range(65536)] + [(UDP_SCAN, 1)])


def test_bpf_mentions_saddr_and_cookie_ports():
    text = Probes.ports(SYN_SCAN, [80]).bpf(4, "198.19.255.1")
    assert "dst host 198.19.255.1" in text
    assert f"portrange {SOURCE_PORT_RANGE[0]}-{SOURCE_PORT_RANGE[1]}" in text
    assert "udp" not in text
    assert "udp" in Probes.ports(SYN_SCAN, [80], [53]).bpf(4, "198.19.255.1")
    text6 = Probes.ports(SYN_SCAN, [80], [53]).bpf(6, "2001:db8::1")
    assert text6.startswith("ip6 dst host 2001:db8::1") and "icmp6" in text6
