"""-O with nmap's database: nmap-os-db parsing, nmap 7.93's expression matching and scoring, and the
tests computed from replies (scanner/osdb.py, scanner/osprobe.py). The database is Debian's
(/usr/share/nmap/nmap-os-db, package nmap): a reference fingerprint turned into an observation
must score 100% against itself."""
from __future__ import annotations

import re
import struct

import pytest

from scanner import osdb, osprobe
from scanner.errors import InputError

DB_PATH = "/usr/share/nmap/nmap-os-db"

SMALL_DB = """\
# a comment
MatchPoints
SEQ(SP=25%GCD=75%ISR=25%TI=100%CI=50%II=100%SS=80%TS=100)
OPS(O1=20%O2=20%O3=20%O4=20%O5=20%O6=20)
WIN(W1=15%W2=15%W3=15%W4=15%W5=15%W6=15)
ECN(R=100%DF=20%T=15%TG=15%W=15%O=15%CC=100%Q=20)
T1(R=100%DF=20%T=15%TG=15%S=20%A=20%F=30%RD=20%Q=20)
T2(R=80%DF=20%T=15%TG=15%W=25%S=20%A=20%F=30%O=10%RD=20%Q=20)
T3(R=80%DF=20%T=15%TG=15%W=25%S=20%A=20%F=30%O=10%RD=20%Q=20)
T4(R=100%DF=20%T=15%TG=15%W=25%S=20%A=20%F=30%O=10%RD=20%Q=20)
T5(R=100%DF=20%T=15%TG=15%W=25%S=20%A=20%F=30%O=10%RD=20%Q=20)
T6(R=100%DF=20%T=15%TG=15%W=25%S=20%A=20%F=30%O=10%RD=20%Q=20)
T7(R=80%DF=20%T=15%TG=15%W=25%S=20%A=20%F=30%O=10%RD=20%Q=20)
U1(R=50%DF=20%T=15%TG=15%IPL=100%UN=100%RIPL=100%RID=100%RIPCK=100%RUCK=100%RUD=100)
IE(R=50%DFI=40%T=15%TG=15%CD=100)

# first
Fingerprint Box One
Class Acme | BoxOS | 1.X | router
CPE cpe:/o:acme:boxos:1 auto
Class Acme | BoxOS | 2.X | router
CPE cpe:/o:acme:boxos:2
SEQ(SP=0-5%GCD=1-6%ISR=C8-D2%TI=I|RD%CI=I%II=RI%SS=S%TS=U)
OPS(R=N)
T1(R=Y%DF=N%T=3B-45%TG=40%S=O%A=S+%F=AS%RD=0%Q=)
T2(R=N)
U1(DF=N%T=3B-45%TG=40%IPL=164%UN=0%RIPL=G%RID=G%RIPCK=G%RUCK=G%RUD=G)

Fingerprint Box Two
Class Other | Thing || general purpose
SEQ(SP=>10%TI=Z)
T1(R=Y%DF=Y%T=FF%S=O%A=S+%F=AS%RD=0%Q=)
"""


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    p = tmp_path_factory.mktemp("osdb") / "nmap-os-db"
    p.write_text(SMALL_DB)
    return osdb.load_db(str(p))


@pytest.fixture(scope="module")
def real():
    return osdb.load_db(DB_PATH)


def test_parse_small(small):
    assert [r.name for r in small.prints] == ["Box One", "Box Two"]
    one = small.prints[0]
    assert one.line == 18
    assert [(c.vendor, c.family, c.gen, c.type, c.cpes) for c in one.classes] == [
        ("Acme", "BoxOS", "1.X", "router", ["cpe:/o:acme:boxos:1"]), ("Acme", "BoxOS", "2.X", "router",
                                                                     ["cpe:/o:acme:boxos:2"])]
    assert small.prints[1].classes[0].gen == ""
    assert one.tests["OPS"] == {}                 # OPS(R=N): nothing to compare, as nmap reads it
    assert one.tests["T2"] == {"R": "N"}
    assert one.tests["U1"]["R"] == "Y"            # left out in the file: R=Y when other values are there
    assert small.points["SEQ"]["TI"] == 100 and small.points["U1"]["RUD"] == 100


@pytest.mark.parametrize("val,expr,ok", [
    ("5", "0-5", True), ("6", "0-5", False), ("C9", "C8-D2", True), ("D3", "C8-D2", False),
    ("I", "I|RD", True), ("RD", "I|RD", True), ("RI", "I|RD", False),
    ("11", ">10", True), ("10", ">10", False), ("F", "<10", True), ("10", "<10", False),
    ("M5B4ST11NW7", "M5B4ST11NW7", True), ("M5B4ST11NWA", "M5B4ST11NW7", False),
    ("", "", True), ("R", "", False), ("", "R", False), ("40", "3B-45", True), ("3A", "3B-45", False),
    ("S+", "S+|O", True), ("O", "S+|O", True), ("S", "S+|O", False),
    # nmap 7.93's quirks, kept because nmap's accuracies are the reference:
    ("AS", "A|R", True),       # an alternative before the last matches what it is a prefix of
    ("0", "0|3B-45", False),   # with a '-' further on, a plain number alternative is read as a range
])
def test_expr_match(val, expr, ok):
    assert osdb.expr_match(val, expr) is ok


def concrete(expr: str) -> str:
    """A value the expression matches: its first alternative, a range's low end, just past a bound."""
    alt = expr.split("|")[0]
    if alt.startswith(">"):
        return f"{int(alt[1:], 16) + 1:X}"
    if alt.startswith("<"):
        return f"{max(0, int(alt[1:], 16) - 1):X}"
    m = re.fullmatch(r"([0-9A-Fa-f]+)-([0-9A-Fa-f]+)", alt)
    if m:
        return m.group(1).upper()
    return alt


def observation(ref) -> dict:
    return {test: {a: concrete(e) for a, e in values.items()} for test, values in ref.tests.items()}


def test_reference_scores_100_against_itself(small):
    for ref in small.prints:
        obs = observation(ref)
        assert osdb.compare(ref, obs, small.points) == 1.0
        assert [r.name for a, r in osdb.match(obs, small) if a == 1.0][:1] == [ref.name] or \
            any(r is ref for a, r in osdb.match(obs, small) if a == 1.0)


def test_scoring_is_matchpoints_share(small):
    one = small.prints[0]
    obs = observation(one)
    obs["SEQ"]["TI"] = "Z"                        # 100 points of SEQ lost
    obs["T1"]["DF"] = "Y"                         # 20 lost
    total = sum(small.points[t][a] for t, v in one.tests.items() for a in v)
    assert osdb.compare(one, obs, small.points) == pytest.approx((total - 120) / total)
    # an attribute the observation lacks counts neither way
    del obs["U1"]
    total_u1 = sum(small.points["U1"][a] for a in one.tests["U1"])
    assert osdb.compare(one, obs, small.points) == pytest.approx((total - total_u1 - 120) / (total - total_u1))


def test_match_threshold_and_order(small):
    obs = observation(small.prints[0])
    ranked = osdb.match(obs, small)
    assert ranked[0][0] == 1.0 and ranked[0][1].name == "Box One"
    assert all(a >= osdb.GUESS_THRESHOLD for a, _ in ranked)
    assert "Box Two" not in [r.name for _, r in ranked]      # T1 and SEQ disagree: under 85%


@pytest.mark.parametrize("text,message", [
    ("Fingerprint X\nSEQ(SP=1)\n", "MatchPoints"),
    ("MatchPoints\nSEQ(SP=25)\n\nFingerprint X\nSEQ(XX=1)\n", "bad attribute"),
    ("MatchPoints\nSEQ(SP=25)\n\nFingerprint X\nClass a | b\n", "4 fields"),
])
def test_malformed_db_is_one_line_error(tmp_path, text, message):
    p = tmp_path / "db"
    p.write_text(text)
    with pytest.raises(InputError, match=message) as e:
        osdb.load_db(str(p))
    assert "\n" not in str(e.value)


def test_missing_db_is_input_error(tmp_path):
    with pytest.raises(InputError, match="No such file"):
        osdb.check_db(str(tmp_path / "none"))
    (tmp_path / "x").write_text("hello\n")
    with pytest.raises(InputError, match="not an nmap-os-db"):
        osdb.check_db(str(tmp_path / "x"))
    assert osdb.find_db("builtin") is None and osdb.find_db("/some/file") == "/some/file"


def test_real_database_parses(real):
    assert len(real.prints) > 5000
    assert set(real.points) == set(osdb.TESTS)
    names = {r.name for r in real.prints}
    assert "Linux 4.15 - 5.6" in names


def test_real_references_score_100(real):
    """Every 40th reference of Debian's database (and Linux 4.15 - 5.6) matches itself perfectly
    and is among the perfect matches nmap would list."""
    chosen = real.prints[::40] + [r for r in real.prints if r.name == "Linux 4.15 - 5.6"]
    for ref in chosen:
        obs = observation(ref)
        assert osdb.compare(ref, obs, real.points) == 1.0, ref.name
    ref = chosen[-1]
    ranked = osdb.match(observation(ref), real)
    assert ref.name in [r.name for a, r in ranked if a == 1.0]


def test_real_observation_from_nmap(real):
    """nmap 7.93's own fingerprint of a Linux 6.x lab target; nmap listed Linux 5.3 - 5.4 first
    (96%) and Linux 3.2, 3.1 next (95%)."""
    fp = osdb.parse_fingerprint(
        "SEQ(SP=104%GCD=1%ISR=10F%TI=Z%CI=Z%II=I%TS=22)OPS(O1=M5B4ST11NWA%O2=M5B4ST11NWA%O3=M5B4NNT11NWA%"
        "O4=M5B4ST11NWA%O5=M5B4ST11NWA%O6=M5B4ST11)WIN(W1=FE88%W2=FE88%W3=FE88%W4=FE88%W5=FE88%W6=FE88)"
        "ECN(R=Y%DF=Y%T=40%W=FAF0%O=M5B4NNSNWA%CC=Y%Q=)T1(R=Y%DF=Y%T=40%S=O%A=S+%F=AS%RD=0%Q=)T2(R=N)T3(R=N)"
        "T4(R=Y%DF=Y%T=40%W=0%S=A%A=Z%F=R%O=%RD=0%Q=)T5(R=Y%DF=Y%T=40%W=0%S=Z%A=S+%F=AR%O=%RD=0%Q=)"
        "T6(R=Y%DF=Y%T=40%W=0%S=A%A=Z%F=R%O=%RD=0%Q=)T7(R=Y%DF=Y%T=40%W=0%S=Z%A=S+%F=AR%O=%RD=0%Q=)"
        "U1(R=Y%DF=N%T=40%IPL=164%UN=0%RIPL=G%RID=G%RIPCK=G%RUCK=G%RUD=G)IE(R=Y%DFI=N%T=40%CD=S)")
    ranked = osdb.match(fp, real)
    assert [(int(a * 100), r.name) for a, r in ranked[:3]] == [
        (96, "Linux 5.3 - 5.4"), (95, "Linux 3.2"), (95, "Linux 3.1")]
    assert osdb.parse_fingerprint(osdb.fingerprint_text(fp)) == fp


# ---------------------------------------------------------------- tests computed from replies

def test_tcp_options_text():
    assert osprobe.tcp_options_text(bytes.fromhex("020405b40402080a0000000100000000010303 07".replace(" ", ""))) \
        == "M5B4ST10NW7"
    assert osprobe.tcp_options_text(bytes.fromhex("0204")) is None          # cut short
    assert osprobe.tcp_options_text(b"") == ""
    assert all(len(o) % 4 == 0 for o in osprobe.PRB_OPTS) and len(osprobe.PRB_OPTS) == 13


@pytest.mark.parametrize("ipids,cls", [
    ([0, 0, 0, 0], osprobe.IPID_ZERO), ([7, 7, 7], osprobe.IPID_CONSTANT), ([1, 2, 3, 5], osprobe.IPID_INCR),
    ([2, 4, 6], osprobe.IPID_INCR2), ([256, 512, 768], osprobe.IPID_BROKEN), ([100, 40000, 200], osprobe.IPID_RD),
    ([100, 2100, 5000], osprobe.IPID_RPI)])
def test_ipid_classes(ipids, cls):
    assert osprobe.ipid_class(ipids) == cls


def _reply(t, ttl, ipid, df, seq, ack, flags, window, opts=b"", data=b""):
    off = (20 + len(opts)) // 4
    tcp = struct.pack("!HHIIBBHHH", 22, 40000, seq, ack, off << 4, flags, window, 0, 0) + opts + data
    return osprobe.Reply(t, ttl, ipid, df, 20 + len(tcp), tcp, b"")


def test_fingerprint_of_linux_like_replies():
    """SEQ replies 100 ms apart with ISNs growing ~1 GHz-ish, timestamps at 1000 Hz, IP ID 0: the
    SEQ/OPS/WIN/T tests come out as nmap computes them."""
    h = osprobe.HostState("198.18.0.1", 22, 23, 40000, True, seq_base=1000, ack=5000)

    def ts_opt(v):
        return bytes.fromhex("020405b40402080a") + struct.pack("!II", v, 0xFFFFFFFF) + bytes.fromhex("01030307")
    isn = 123456
    for i in range(6):
        h.seq_sent[i] = 100.0 + 0.1 * i
        isn += 25_000_000 + i * 3_000_000
        h.tcp[i] = _reply(100.0 + 0.1 * i + 0.001, 64, 0, True, isn, 1000 + i + 1, 0x12, 0xFE88, ts_opt(5000 + 100 * i))
        h.arrival.append(i)
    h.tcp[osprobe.P_T1 + 4] = _reply(101, 64, 0, True, 0, 1001, 0x14, 0)   # T5: RST/ACK
    fp, dist = osprobe.make_fingerprint(h)
    assert dist == -1
    seq = fp["SEQ"]
    assert seq["TI"] == "Z" and seq["TS"] == "A"        # 1000 Hz: log2(1000) rounds to 10
    assert seq["GCD"] == f"{1_000_000:X}"              # the ISN steps: 28, 31, 34, 37, 40 million
    assert int(seq["ISR"], 16) == int(8 * __import__("math").log2(sum(
        (25_000_000 + i * 3_000_000) / 0.1 for i in range(1, 6)) / 5) + 0.5)
    assert fp["OPS"]["O1"] == "M5B4ST11NW7" and fp["WIN"]["W1"] == "FE88"
    assert fp["T1"] == {"R": "Y", "DF": "Y", "TG": "40", "S": "O", "A": "S+", "F": "AS", "RD": "0", "Q": ""}
    assert fp["T5"] == {"R": "Y", "DF": "Y", "TG": "40", "W": "0", "S": "Z", "A": "S+", "F": "AR", "O": "",
                        "RD": "0", "Q": ""}
    assert fp["T2"] == {"R": "N"} and fp["ECN"] == {"R": "N"} and fp["U1"] == {"R": "N"}


def test_report_of_a_perfect_match(small):
    """nmap's normal-output lines and <os> element for an exact match, and the store's round trip."""
    from scanner.osguess import OsGuess
    from scanner.output.nmap import os_xml
    import xml.etree.ElementTree as ET
    one = small.prints[0]
    fp = observation(one)
    g = osprobe.report("198.18.0.1", fp, 1, osdb.match(fp, small), {"open": 22, "closed": 23}, 23, 40000,
                       udp_scanned=False, aggressive=False)
    assert g.lines == ["Device type: router", "Running: Acme BoxOS 1.X|2.X",
                       "OS CPE: cpe:/o:acme:boxos:1 cpe:/o:acme:boxos:2", "OS details: Box One",
                       "Network Distance: 1 hop"]
    text = os_xml(g, None)
    assert text.rstrip().endswith('</os>\n<distance value="1"/>') and "osfingerprint" not in text
    el = ET.fromstring(text.replace('<distance value="1"/>', ""))
    assert [(u.get("state"), u.get("proto"), u.get("portid")) for u in el.iter("portused")] == [
        ("open", "tcp", "22"), ("closed", "tcp", "23"), ("closed", "udp", "40000")]
    m = el.find("osmatch")
    assert (m.get("name"), m.get("accuracy"), m.get("line")) == ("Box One", "100", "18")
    assert [(c.get("vendor"), c.get("osfamily"), c.get("osgen"), c.get("type"), [x.text for x in c.iter("cpe")])
            for c in m.iter("osclass")] == [("Acme", "BoxOS", "1.X", "router", ["cpe:/o:acme:boxos:1"]),
                                            ("Acme", "BoxOS", "2.X", "router", ["cpe:/o:acme:boxos:2"])]
    back = OsGuess.from_dict(g.to_dict())
    assert back.matches == g.matches and back.lines == g.lines and back.ports_used == g.ports_used


def test_report_without_exact_match(small):
    """No exact match: nmap's guesses only with --osscan-guess (or a non-ideal print), the
    fingerprint when it is ideal."""
    one = small.prints[0]
    fp = observation(one)
    fp["T1"]["F"] = "AR"                          # 30 of the points lost: not exact, still >= 85%
    ranked = osdb.match(fp, small)
    assert ranked and 0.85 <= ranked[0][0] < 1.0
    plain = osprobe.report("198.18.0.1", fp, 1, ranked, {"open": 22, "closed": 23}, 23, 40000, False, False)
    assert not any(x.startswith("Aggressive OS guesses") for x in plain.lines)
    assert "No exact OS matches for host (If you know what OS is running on it, see https://nmap.org/submit/ )." \
        in plain.lines and "TCP/IP fingerprint:" in plain.lines
    guess = osprobe.report("198.18.0.1", fp, 1, ranked, {"open": 22, "closed": 23}, 23, 40000, False, True)
    assert f"Aggressive OS guesses: Box One ({int(ranked[0][0] * 100)}%)" in guess.lines
    assert "Running (JUST GUESSING): Acme BoxOS 1.X|2.X " + f"({int(ranked[0][0] * 100)}%)" in guess.lines
    # no closed port known: not ideal, so nmap guesses anyway and says why there is no fingerprint
    odd = osprobe.report("198.18.0.1", fp, 1, ranked, {"open": 22}, 31000, 40000, False, False)
    assert any(x.startswith("Aggressive OS guesses") for x in odd.lines)
    assert "No exact OS matches for host (test conditions non-ideal)." in odd.lines


def test_os_db_option(tmp_path):
    """--os-db is one option of the request; a bad file fails while planning, before any probe."""
    from scanner.request import ScanRequest
    from scanner.session import Session
    r = ScanRequest.from_argv(["-O", "--os-db", DB_PATH, "127.0.0.1"])
    assert r.os_db == DB_PATH and ScanRequest.from_argv(r.to_argv()) == r
    for path, message in ((tmp_path / "none", "No such file"), (tmp_path, "Is a directory")):
        with pytest.raises(InputError, match=message):
            Session(ScanRequest.from_argv(["-O", "-Pn", "--os-db", str(path), "-p", "1", "127.0.0.1"]))


def test_probe_packets_are_nmaps():
    """The bytes on the wire: nmap's option sets and windows, ECN's reserved bit and urgent
    pointer, T2/T4/T6's DF, U1's 300 'C's and IP ID 0x1042, IE's codes, TOS and sizes; valid sums."""
    src, dst = bytes([198, 19, 255, 1]), bytes([198, 18, 0, 1])
    seq1 = osprobe.tcp_packet(src, dst, 40000, 22, 7, 9, osprobe.SYN, osprobe.PRB_WIN[0], osprobe.PRB_OPTS[0])
    assert seq1[20 + 20:] == bytes.fromhex("03030a01020405b4080affffffff000000000402")   # WS10 N MSS1460 TS SACK
    assert struct.unpack("!H", seq1[34:36])[0] == 1 and seq1[33] == osprobe.SYN
    assert osprobe._csum(seq1[:20]) == 0
    assert osprobe._csum(src + dst + struct.pack("!BBH", 0, 6, len(seq1) - 20) + seq1[20:]) == 0
    assert [osprobe.PRB_WIN[i] for i in range(6)] == [1, 63, 4, 4, 16, 512]
    ecn = osprobe.tcp_packet(src, dst, 40012, 22, 7, 0, osprobe.CWR | osprobe.ECE | osprobe.SYN, 3,
                             osprobe.PRB_OPTS[6], reserved=8, urp=63477)
    assert ecn[32] & 0x0F == 8 and ecn[33] == 0xC2 and struct.unpack("!H", ecn[38:40])[0] == 0xF7F5
    flags = [f for f, *_ in osprobe.T_PROBES]
    assert flags == [0x02, 0x00, 0x2B, 0x10, 0x02, 0x10, 0x29]                    # T1..T7 as nmap sends them
    assert [df for _, df, *_ in osprobe.T_PROBES] == [False, True, False, True, False, True, False]
    assert [osprobe.PRB_WIN[i] for _, _, i, _ in osprobe.T_PROBES[1:]] == [128, 256, 1024, 31337, 32768, 65535]
    t2 = osprobe.tcp_packet(src, dst, 40014, 22, 7, 9, 0, 128, osprobe.PRB_OPTS[7], df=True)
    assert t2[6] & 0x40
    u1, ck = osprobe.udp_packet(src, dst, 41000, 54, 60)
    assert len(u1) == 328 and u1[28:] == b"C" * 300 and struct.unpack("!H", u1[4:6])[0] == 0x1042
    assert struct.unpack("!H", u1[26:28])[0] == ck and u1[8] == 60
    ie1 = osprobe.echo_packet(src, dst, 500, 295, 9, 120, True, 0)
    ie2 = osprobe.echo_packet(src, dst, 501, 296, 0, 150, False, 4)
    assert (ie1[6] & 0x40, ie1[1], ie1[21], len(ie1) - 28) == (0x40, 0, 9, 120)
    assert (ie2[6] & 0x40, ie2[1], ie2[21], len(ie2) - 28) == (0, 4, 0, 150)
    assert osprobe._csum(ie1[20:]) == 0 and osprobe._csum(ie2[20:]) == 0


def test_collector_keeps_nmaps_ports():
    """-O's ports per host, as nmap picks them: the lowest open and closed TCP port, the lowest
    closed UDP port (whatever order the replies came in); IPv6 hosts are left to the built-in guess."""
    import numpy as np
    from scanner.service.post import RowCollector
    from scanner.states import REASONS, RESULT_DTYPE, STATES

    def rows(*specs):
        out = np.zeros(len(specs), dtype=RESULT_DTYPE)
        for r, (ip, proto, port, state, reason) in zip(out, specs):
            r["ip"], r["proto"], r["port"], r["state"], r["reason"] = ip, proto, port, STATES[state], REASONS[reason]
        return out
    c = RowCollector()
    a = 0xC6120001
    c.write(rows((a, 6, 443, "open", "syn-ack"), (a, 6, 25, "closed", "reset"), (a, 17, 60, "closed", "port-unreach")))
    c.write(rows((a, 6, 22, "open", "syn-ack"), (a, 6, 23, "closed", "reset"), (a, 6, 24, "closed", "reset"),
                 (a, 17, 54, "closed", "port-unreach"), (a, 17, 55, "closed", "port-unreach")))
    assert osprobe.ports_of(c.rows()) == {"198.18.0.1": {"open": 22, "closed": 23, "udp": 54}}
    # -sV found 22 tcpwrapped: nmap takes the next open port; all wrapped: the lowest anyway
    assert osprobe.ports_of(c.rows(), frozenset({("198.18.0.1", 22)}))["198.18.0.1"]["open"] == 443
    assert osprobe.ports_of(c.rows(), frozenset({("198.18.0.1", 22), ("198.18.0.1", 443)}))["198.18.0.1"]["open"] == 22
