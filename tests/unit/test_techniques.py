"""Scan techniques (scanner/techniques.py): state tables the compiled parser indexes."""
from scanner._ext.parser import N_REPLY_KINDS, REPLY_KINDS, STATES
from scanner.techniques import ACK, SYN, SYN_SCAN, TECHNIQUES


def test_syn_scan_state_table():
    table = SYN_SCAN.state_table()
    assert len(table) == len(REPLY_KINDS) == N_REPLY_KINDS
    assert table[REPLY_KINDS["syn-ack"]] == STATES["open"]
    assert table[REPLY_KINDS["reset"]] == STATES["closed"]
    assert table[REPLY_KINDS["reset-window"]] == STATES["closed"]
    assert table[REPLY_KINDS["icmp-unreach"]] == STATES["filtered"]
    assert table[REPLY_KINDS["no-response"]] == STATES["filtered"]


def test_reply_kind_codes_index_the_table():
    assert sorted(REPLY_KINDS.values()) == list(range(len(REPLY_KINDS)))


def test_state_codes_distinct_and_nonzero():
    codes = list(STATES.values())
    assert len(set(codes)) == len(codes)
    assert 0 not in codes                       # 0 means "ignore this reply" in the table


def test_state_table_is_a_fresh_list():
    a = SYN_SCAN.state_table()
    a[0] = 0
    assert SYN_SCAN.state_table()[REPLY_KINDS["syn-ack"]] == STATES["open"]


def test_syn_scan_flags_and_registry():
    assert SYN_SCAN.tcp_flags == SYN
    assert not SYN_SCAN.tcp_flags & ACK
    assert SYN_SCAN.flag == "-sS"
    assert TECHNIQUES["-sS"] is SYN_SCAN
    assert SYN_SCAN.no_response == "filtered"


def test_bpf_mentions_saddr_and_cookie_ports():
    from scanner._ext.cookie import SOURCE_PORT_RANGE
    text = SYN_SCAN.bpf("198.19.255.1")
    assert "dst host 198.19.255.1" in text
    assert f"portrange {SOURCE_PORT_RANGE[0]}-{SOURCE_PORT_RANGE[1]}" in text
