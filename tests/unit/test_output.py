"""Every output format, parsed the way its users parse it: XML against nmap's DTD and by
python-libnmap, CSV by the csv module, grepable and -oL by their line layouts, NDJSON by json."""
from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from scanner.engine import ScanSummary
from scanner.errors import InputError
from scanner.output import (CsvWriter, GrepableWriter, HostTable, ListWriter, NdjsonWriter, NormalWriter,
                            Outputs, ScanInfo, XmlWriter, plan_outputs, port_ranges)
from scanner.states import REASONS, RESULT_DTYPE, STATES

DTD = "/usr/share/nmap/nmap.dtd"
LOCAL = 0x7F000001       # 127.0.0.1
OTHER = 0x7F000002       # 127.0.0.2


def make_rows(items) -> np.ndarray:
    """items: (ip, port, state, reason, ttl)."""
    rows = np.zeros(len(items), dtype=RESULT_DTYPE)
    for i, (ip, port, state, reason, ttl) in enumerate(items):
        # by field name: RESULT_DTYPE also carries ip6 and the SYN-ACK fingerprint fields (left zero)
        for name, value in (("index", i), ("ip", ip), ("port", port), ("proto", 6), ("state", STATES[state]),
                            ("reason", REASONS[reason]), ("ttl", ttl), ("window", 0)):
            rows[name][i] = value
    return rows


ROWS = make_rows([(LOCAL, 80, "open", "syn-ack", 64), (LOCAL, 22, "closed", "reset", 64),
                  (LOCAL, 443, "filtered", "no-response", 0), (OTHER, 22, "filtered", "no-response", 0)])
INFO = ScanInfo(start=1_700_000_000.0, command="scanner 127.0.0.1/31 -p 22,80,443 -oX x.xml",
                scan_type="syn", ports=(22, 80, 443), n_hosts=2)
SUMMARY = ScanSummary(probes=6, sent=6, replies=2, elapsed=1.5, states={"open": 1, "closed": 1, "filtered": 2})


def render(cls, tmp_path, rows=ROWS, summary=SUMMARY, batches=2, **kw):
    path = tmp_path / f"out.{cls.__name__}"
    w = cls(str(path), INFO, **kw)
    for part in np.array_split(rows, batches):
        w.write(part)
    w.close(summary)
    assert w.error is None
    return path


def test_port_ranges():
    assert port_ranges([80, 22, 23, 24, 443, 444, 80]) == "22-24,80,443-444"
    assert port_ranges([]) == ""


def test_xml_is_valid_nmap_xml(tmp_path):
    path = render(XmlWriter, tmp_path)
    if shutil.which("xmllint"):
        r = subprocess.run(["xmllint", "--noout", "--dtdvalid", DTD, str(path)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    root = ET.parse(path).getroot()
    assert root.tag == "nmaprun" and root.get("scanner") == "nmap" and root.get("start") == "1700000000"
    assert root.find("scaninfo").attrib == {"type": "syn", "protocol": "tcp", "numservices": "3",
                                            "services": "22,80,443"}
    hosts = root.findall("host")
    assert [h.find("address").get("addr") for h in hosts] == ["127.0.0.1"]   # 127.0.0.2 never answered
    ports = {p.get("portid"): (p.find("state").get("state"), p.find("state").get("reason"),
                               p.find("service").get("name")) for p in hosts[0].iter("port")}
    assert ports == {"22": ("closed", "reset", "ssh"), "80": ("open", "syn-ack", "http"),
                     "443": ("filtered", "no-response", "https")}
    assert root.find("runstats/hosts").attrib == {"up": "1", "down": "1", "total": "2"}
    assert root.find("runstats/finished").get("exit") == "success"


def test_xml_read_by_python_libnmap(tmp_path):
    parser = pytest.importorskip("libnmap.parser")
    report = parser.NmapParser.parse_fromfile(str(render(XmlWriter, tmp_path)))
    assert report.hosts_total == 2 and report.hosts_up == 1
    host = report.hosts[0]
    assert host.address == "127.0.0.1" and host.is_up()
    assert {(s.port, s.state, s.service) for s in host.services} == {
        (22, "closed", "ssh"), (80, "open", "http"), (443, "filtered", "https")}


def test_xml_folds_like_nmap(tmp_path):
    rows = make_rows([(LOCAL, p, "closed", "reset", 64) for p in range(1000, 1100)]
                     + [(LOCAL, 80, "open", "syn-ack", 64)])
    path = render(XmlWriter, tmp_path, rows=rows)
    if shutil.which("xmllint"):
        assert subprocess.run(["xmllint", "--noout", "--dtdvalid", DTD, str(path)]).returncode == 0
    host = ET.parse(path).getroot().find("host")
    extra = host.find("ports/extraports")
    assert extra.attrib == {"state": "closed", "count": "100"}
    assert extra.find("extrareasons").get("ports") == "1000-1099"
    assert [p.get("portid") for p in host.iter("port")] == ["80"]
    # --show-all lists every port
    path = render(XmlWriter, tmp_path, rows=rows, show_all=True)
    assert len(list(ET.parse(path).getroot().iter("port"))) == 101


def test_interrupted_xml_says_so(tmp_path):
    path = render(XmlWriter, tmp_path, summary=ScanSummary(elapsed=1.0, interrupted=True))
    assert ET.parse(path).getroot().find("runstats/finished").get("exit") == "error"


def test_grepable(tmp_path):
    lines = render(GrepableWriter, tmp_path).read_text().splitlines()
    assert lines[0].startswith("# Nmap ") and " scan initiated " in lines[0] and lines[0].endswith(INFO.command)
    assert lines[1] == "Host: 127.0.0.1 ()\tStatus: Up"
    assert lines[2] == "Host: 127.0.0.1 ()\tPorts: 22/closed/tcp//ssh///, 80/open/tcp//http///, 443/filtered/tcp//https///"
    assert lines[3].startswith("# Nmap done at ") and "2 IP addresses (1 host up) scanned in 1.50 seconds" in lines[3]
    assert len(lines) == 4


def test_grepable_ignored_state(tmp_path):
    rows = make_rows([(LOCAL, p, "closed", "reset", 64) for p in range(1, 31)] + [(LOCAL, 80, "open", "syn-ack", 64)])
    ports_line = render(GrepableWriter, tmp_path, rows=rows).read_text().splitlines()[2]
    assert ports_line == "Host: 127.0.0.1 ()\tPorts: 80/open/tcp//http///\tIgnored State: closed (30)"


def test_normal(tmp_path):
    text = render(NormalWriter, tmp_path, reason=True).read_text()
    assert text.startswith("# Nmap ") and "Nmap scan report for 127.0.0.1\nHost is up, received " in text
    assert "80/tcp    open            http            syn-ack ttl 64" in text
    assert text.rstrip().splitlines()[-1].startswith("# Nmap done at")
    # the same host layout as the terminal table
    term = io.StringIO()
    table = HostTable(term, reason=True)
    table.write(ROWS)
    table.close(SUMMARY)
    assert term.getvalue().split("\n", 2)[2].split("\n\n")[0].splitlines()[0] in text


def test_csv(tmp_path):
    # streams list only what answered unless --show-all (the CLI decides what unanswered rows reach them)
    with open(render(CsvWriter, tmp_path), newline="") as f:
        answered = list(csv.DictReader(f))
    assert {(r["ip"], r["port"], r["state"]) for r in answered} == {("127.0.0.1", "80", "open"),
                                                                   ("127.0.0.1", "22", "closed")}
    with open(render(CsvWriter, tmp_path, show_all=True), newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["ip", "port", "proto", "state", "reason", "ttl", "service"]
    assert {(r["ip"], r["port"], r["state"], r["reason"], r["ttl"], r["service"]) for r in rows} == {
        ("127.0.0.1", "80", "open", "syn-ack", "64", "http"), ("127.0.0.1", "22", "closed", "reset", "64", "ssh"),
        ("127.0.0.1", "443", "filtered", "no-response", "", "https"),
        ("127.0.0.2", "22", "filtered", "no-response", "", "ssh")}


def test_masscan_list(tmp_path):
    lines = render(ListWriter, tmp_path).read_text().splitlines()
    assert lines[0] == "#masscan" and lines[-1] == "# end"
    state, proto, port, ip, ts = lines[1].split()
    assert (state, proto, port, ip) == ("open", "tcp", "80", "127.0.0.1") and int(ts) > 0
    assert len(lines) == 3
    assert len(render(ListWriter, tmp_path, show_all=True).read_text().splitlines()) == 6


def test_ndjson(tmp_path):
    lines = render(NdjsonWriter, tmp_path).read_text().splitlines()
    assert sorted((d["ip"], d["port"], d["state"]) for d in map(json.loads, lines)) == [
        ("127.0.0.1", 22, "closed"), ("127.0.0.1", 80, "open")]
    lines = render(NdjsonWriter, tmp_path, show_all=True).read_text().splitlines()
    assert sorted((d["ip"], d["port"], d["state"]) for d in map(json.loads, lines)) == [
        ("127.0.0.1", 22, "closed"), ("127.0.0.1", 80, "open"), ("127.0.0.1", 443, "filtered"),
        ("127.0.0.2", 22, "filtered")]


def test_unwritable_path_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot write -oX output .*No such file"):
        XmlWriter(str(tmp_path / "missing" / "x.xml"), INFO)
    with pytest.raises(InputError, match="Is a directory"):
        CsvWriter(str(tmp_path), INFO)


@pytest.mark.parametrize("cls", [NdjsonWriter, CsvWriter, ListWriter, XmlWriter, GrepableWriter, NormalWriter])
def test_disk_full_stops_the_writer_without_raising(cls):
    """/dev/full fails every write with ENOSPC: the writer records one error and never raises."""
    w = cls("/dev/full", INFO)
    for _ in range(3):
        w.write(make_rows([(LOCAL, p, "open", "syn-ack", 64) for p in range(1, 2000)]))
    w.close(SUMMARY)
    assert w.error and "No space left on device" in w.error and "/dev/full" in w.error


def test_plan_outputs():
    assert plan_outputs({"-oX": "a.xml", "-oJ": None}, "scan") == [
        ("-oX", "a.xml"), ("-oN", "scan.nmap"), ("-oX", "scan.xml"), ("-oG", "scan.gnmap")]
    with pytest.raises(InputError, match="only one output can go to stdout"):
        plan_outputs({"-oX": "-", "-oG": "-"})
    with pytest.raises(InputError, match="both write"):
        plan_outputs({"-oX": "same", "--csv": "./same"})
    with pytest.raises(InputError, match="-oA needs a base file name"):
        plan_outputs({}, "-")


def test_outputs_share_one_buffer_and_report_failures(tmp_path):
    from scanner.output import HostTable
    term = io.StringIO()
    outs = Outputs([("-oX", str(tmp_path / "a.xml")), ("-oG", str(tmp_path / "a.gnmap")), ("-oL", "/dev/full")],
                   INFO)
    table = HostTable(file=term)          # the terminal table (the CLI's), into a string
    for part in np.array_split(ROWS, 3):
        outs.write(part)
        table.write(part)
    outs.close(SUMMARY)
    table.close(SUMMARY)
    assert len(outs.buffer.batches) == 1 and len(outs.buffer.rows()) == len(ROWS)
    assert [e.split("'")[1] for e in outs.errors()] == ["/dev/full"]
    assert "Scan report for 127.0.0.1" in term.getvalue()
    assert "80/open/tcp" in (tmp_path / "a.gnmap").read_text()


def test_background_sink_writes_in_order_and_reraises_bugs():
    from scanner.output import BackgroundSink

    class Collect:
        def __init__(self):
            self.seen = []

        def write(self, rows):
            self.seen.extend(rows["port"].tolist())

    a, b = Collect(), Collect()
    sink = BackgroundSink([a, None, b])
    for port in range(100):
        sink(make_rows([(LOCAL, port, "open", "syn-ack", 64)]))
    sink.close()
    assert a.seen == b.seen == list(range(100))

    class Broken:
        def write(self, rows):
            raise ZeroDivisionError("a bug")
    sink = BackgroundSink([Broken()])
    sink(ROWS)
    with pytest.raises(ZeroDivisionError):
        sink.close()


def test_hostile_banners_are_escaped_on_the_terminal_and_in_normal_and_grepable_output(tmp_path):
    """A service's banner may hold any byte: ESC, NUL, CR, BEL ... reach neither the terminal
    nor -oN/-oG raw; they are written as \\xHH, as nmap's escape_for_screen() does."""
    from scanner.output import escape_for_screen
    from scanner.service import ServiceInfo
    evil = ServiceInfo("http", product="Evil\x1b[2J\x1b]0;owned\x07", version="1.0\x00\r\n",
                       extrainfo="caf\xe9 \u2603", scripts={"http-title": "T\x1b[31mred\ttab"})
    assert escape_for_screen(evil.product) == "Evil\\x1B[2J\\x1B]0;owned\\x07"
    assert escape_for_screen("caf\xe9 \u2603\x7f\tok\n") == "caf\\xE9 \\xE2\\x98\\x83\\x7F\tok\n"
    services = {("127.0.0.1", "tcp", 80): evil}
    path = tmp_path / "out.nmap"
    w = NormalWriter(str(path), INFO, reason=True)
    w.write(ROWS)
    w.set_details(services=services)
    w.close(SUMMARY)
    gpath = tmp_path / "out.gnmap"
    g = GrepableWriter(str(gpath), INFO)
    g.write(ROWS)
    g.set_details(services=services)
    g.close(SUMMARY)
    term = io.StringIO()
    table = HostTable(term, reason=True)
    table.write(ROWS)
    table.set_details(services=services)
    table.close(SUMMARY)
    for text in (path.read_text(encoding="utf-8"), gpath.read_text(encoding="utf-8"), term.getvalue()):
        assert not any(c in text for c in "\x1b\x00\x07\r\x7f\xe9\u2603"), text
        assert "\\x1B[2J" in text
    normal = path.read_text(encoding="utf-8")
    assert "Evil\\x1B[2J\\x1B]0;owned\\x07 1.0\\x00\\x0D\\x0A (caf\\xE9 \\xE2\\x98\\x83)" in normal
    assert "|_http-title: T\\x1B[31mred\ttab" in normal


def test_ip_protocol_scan_layout_as_nmap(tmp_path):
    """-sO rows (proto "ip", the port is the protocol): nmap's PROTOCOL column, Protocols: in
    grepable output, protocol="ip" and the protocol's name in XML (checked against nmap's DTD)."""
    rows = make_rows([(LOCAL, 1, "open", "echo-reply", 64), (LOCAL, 2, "open|filtered", "no-response", 0),
                      (LOCAL, 200, "closed", "proto-unreach", 64)])
    rows["proto"] = 255
    text = render(NormalWriter, tmp_path, rows=rows).read_text()
    assert "PROTOCOL  STATE           SERVICE\n1         open            icmp\n" in text
    assert "\n200       closed          unknown\n" in text
    line = render(GrepableWriter, tmp_path, rows=rows).read_text().splitlines()[2]
    assert line == "Host: 127.0.0.1 ()\tProtocols: 1/open/icmp/, 2/open|filtered/igmp/, 200/closed//"
    path = render(XmlWriter, tmp_path, rows=rows)
    ports = {p.get("portid"): (p.get("protocol"), p.find("service").get("name"))
             for p in ET.parse(path).getroot().iter("port")}
    assert ports == {"1": ("ip", "icmp"), "2": ("ip", "igmp"), "200": ("ip", "unknown")}
    if shutil.which("xmllint"):
        r = subprocess.run(["xmllint", "--noout", "--dtdvalid", DTD, str(path)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
