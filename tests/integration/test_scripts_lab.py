"""-sC and --script against the lab's real servers (nginx, sshd, vsftpd, OpenSMTPD, redis, MariaDB,
dnsmasq: test_service_lab's, plus mariadbd), compared with nmap -sC and nmap's same-named scripts
run in the same lab: each script reports the same facts as nmap's (page title, Server header,
certificate subject/validity/digests, host key fingerprints, anonymous FTP, SMTP extensions,
Redis and MySQL facts, the DNS server's version), in -oX that python-libnmap and ndiff read, and
in nmap's `| id: ...` layout in -oN.

Debian packages: those of test_service_lab, and mariadb-server-core (scripts/test-packages.txt)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path


from conftest import scanner_argv, scanner_env
from test_service_lab import TARGET, _wait_port, service_lab  # noqa: F401 - the fixture, shared

TCP = (21, 22, 25, 80, 443, 3306, 6379)
UDP = (53,)
PORTS = "T:" + ",".join(map(str, TCP)) + ",U:" + ",".join(map(str, UDP))
OURS = ("http-title", "http-server-header", "ssl-cert", "ssh-hostkey", "banner", "ftp-anon", "smtp-commands",
        "redis-info", "mysql-info", "dns-nsid")
# The facts that change from one connection to the next (nmap's and ours are two connections).
VOLATILE = {"mysql-info": {"Thread ID", "Salt"},
            "redis-info": {"Process ID", "Used CPU (sys)", "Used CPU (user)", "Used memory", "Connected clients",
                           "Uptime"}}


@contextlib.contextmanager
def mariadb(lab, d: Path):
    """mariadbd in the target namespace on port 3306 (an empty data directory, no grant tables:
    the greeting is all mysql-info reads)."""
    assert os.path.exists("/usr/sbin/mariadbd"), "apt-get install mariadb-server-core (scripts/test-packages.txt)"
    data = d / "mysql"
    data.mkdir()
    log = open(d / "mariadb.log", "w")
    proc = subprocess.Popen(["ip", "netns", "exec", lab.target_ns, "/usr/sbin/mariadbd", "--no-defaults",
                             f"--datadir={data}", f"--socket={data}/sock", f"--pid-file={data}/pid", "--port=3306",
                             "--bind-address=0.0.0.0", "--user=root", "--skip-grant-tables", "--skip-log-bin"],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        assert _wait_port(lab, 3306, timeout=30), (d / "mariadb.log").read_text()[-1500:]
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _scripts(xml: Path) -> dict:
    """{(proto, port): {script id: (output, elements)}} through python-libnmap, as its users read it."""
    from libnmap.parser import NmapParser
    report = NmapParser.parse_fromfile(str(xml))
    out: dict = {}
    for host in report.hosts:
        for svc in host.services:
            out[(svc.protocol, svc.port)] = {s["id"]: (s["output"], s.get("elements", {}))
                                             for s in svc.scripts_results if s["id"] in OURS}
    return out


def _nse_lines(sid: str, text: str) -> list:
    """An NSE table's text lines, without the facts of the connection itself (VOLATILE), lists
    that nmap writes in Lua's hash order sorted."""
    out = []
    for line in text.splitlines():
        key, _, value = line.strip().partition(": ")
        if key in VOLATILE.get(sid, ()):
            continue
        if key == "Some Capabilities":
            line = f"{key}: {', '.join(sorted(value.split(', ')))}"
        out.append(line)
    return out


def _ndiff(a: Path, b: Path) -> tuple:
    assert shutil.which("ndiff"), "apt-get install ndiff (scripts/test-packages.txt)"
    nd = subprocess.run(["ndiff", str(a), str(b)], capture_output=True, text=True, timeout=60)
    return nd.returncode in (0, 1) and "Traceback" not in nd.stderr, nd.stderr


def test_scripts_match_nmap(service_lab):  # noqa: F811 - the imported fixture
    lab, d = service_lab
    ours_xml, nmap_xml, ours_json, ours_normal = d / "ours.xml", d / "nmap.xml", d / "ours.json", d / "ours.nmap"
    with mariadb(lab, d):
        t0 = time.monotonic()
        p = lab.run(scanner_argv(TARGET, "-sS", "-sU", "-sV", "--script", "default,banner,redis-info", "-Pn", "-p",
                                 PORTS, "-oX", ours_xml, "-oN", ours_normal, "-oJ", ours_json, "--no-db"),
                    capture_output=True, text=True, env=scanner_env(), timeout=180)
        ours_time = time.monotonic() - t0
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
        t0 = time.monotonic()
        n = lab.run(["nmap", "-n", "-Pn", "-sS", "-sU", "-sV", "--script", "default,banner,redis-info", "-p", PORTS,
                     "-oX", str(nmap_xml), TARGET], capture_output=True, text=True, timeout=600)
        nmap_time = time.monotonic() - t0
    assert n.returncode == 0, n.stderr
    print(f"\n-sV -sC timing: scanner {ours_time:.1f}s, nmap {nmap_time:.1f}s")
    ours, theirs = _scripts(ours_xml), _scripts(nmap_xml)
    normal = ours_normal.read_text()
    report = f"\nscanner:\n{normal}\nnmap:\n{n.stdout}"

    # The same scripts on the same ports (among those scanner has).
    for key in [("tcp", p) for p in TCP] + [("udp", p) for p in UDP]:
        assert set(ours.get(key, {})) == set(theirs.get(key, {})), f"{key}{report}"
    assert sum(len(v) for v in theirs.values()) >= 12, f"nmap's scripts did not all run{report}"

    def same_text(port, sid, proto="tcp"):
        assert ours[(proto, port)][sid][0] == theirs[(proto, port)][sid][0], f"{sid} on {port}{report}"

    for port in (80, 443):
        same_text(port, "http-title")
        assert ours[("tcp", port)]["http-title"][1] == {"title": "Scanner lab"}
        same_text(port, "http-server-header")
    same_text(443, "ssl-cert")           # subject, SANs, validity: nmap's layout, to the character
    a, b = ours[("tcp", 443)]["ssl-cert"][1], theirs[("tcp", 443)]["ssl-cert"][1]
    for k in ("subject", "issuer", "validity", "md5", "sha1", "sig_algo"):
        assert a[k] == b[k], f"ssl-cert {k}: {a[k]} != {b[k]}"
    assert (a["pubkey"]["type"], a["pubkey"]["bits"], a["pubkey"]["modulus"]) == \
        (b["pubkey"]["type"], b["pubkey"]["bits"], b["pubkey"]["modulus"])
    same_text(22, "ssh-hostkey")         # fingerprints and key types
    a, b = ours[("tcp", 22)]["ssh-hostkey"][1], theirs[("tcp", 22)]["ssh-hostkey"][1]
    assert a == b and a, f"ssh-hostkey: {a} != {b}"
    same_text(21, "ftp-anon")
    assert "Anonymous FTP login allowed (FTP code 230)" in ours[("tcp", 21)]["ftp-anon"][0]
    for port in (21, 22, 25):            # text banners: the same line
        same_text(port, "banner")
    assert ours[("tcp", 3306)]["banner"][0][:40] == theirs[("tcp", 3306)]["banner"][0][:40]
    # SMTP: the same extensions and HELP text (the greeting echoes each client's EHLO name).
    a_ehlo, a_help = ours[("tcp", 25)]["smtp-commands"][0].split("\n ")
    b_ehlo, b_help = theirs[("tcp", 25)]["smtp-commands"][0].split("\n ")
    assert a_ehlo.split(", ")[1:] == b_ehlo.split(", ")[1:] and a_help == b_help
    assert "8BITMIME" in a_ehlo
    # Redis, MySQL: the same facts but those of the connection itself.
    for sid, port in (("redis-info", 6379), ("mysql-info", 3306)):
        a, b = _nse_lines(sid, ours[("tcp", port)][sid][0]), _nse_lines(sid, theirs[("tcp", port)][sid][0])
        assert a == b, f"{sid}: {a} != {b}"
    assert "  Version: 7" in ours[("tcp", 6379)]["redis-info"][0]
    from test_service_lab import nmap_services
    a, b = nmap_services(ours_xml)[("tcp", 6379)], nmap_services(nmap_xml)[("tcp", 6379)]
    assert (a["version"], a["extrainfo"]) == (b["version"], b["extrainfo"])    # redis-info tells -sV too
    assert "  Auth Plugin Name: mysql_native_password" in ours[("tcp", 3306)]["mysql-info"][0]
    same_text(53, "dns-nsid", "udp")
    assert "dnsmasq" in ours[("udp", 53)]["dns-nsid"][0]

    # -oN: nmap's layout under the port; NDJSON: the scripts in the detail rows.
    assert "| ssh-hostkey: \n|_  " in normal and "|_http-title: Scanner lab" in normal
    rows = [json.loads(line) for line in ours_json.read_text().splitlines()]
    ssh = [r for r in rows if r.get("details") and r.get("port") == 22][0]["service"]
    assert ssh["script_data"]["ssh-hostkey"][0]["fingerprint"] in ssh["scripts"]["ssh-hostkey"]
    lint = subprocess.run(["xmllint", "--noout", "--dtdvalid", "/usr/share/nmap/nmap.dtd", str(ours_xml)],
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stderr                       # valid per nmap's DTD
    # ndiff reads our XML against nmap's, or fails on nmap's own file alike: Debian's ndiff (Python 3)
    # cannot sort two <script>s of one port (ScriptResult has no order), whoever wrote them.
    ok, err = _ndiff(nmap_xml, ours_xml)
    if not ok:
        assert "ScriptResult" in err and _ndiff(nmap_xml, nmap_xml)[1].splitlines()[-1] == err.splitlines()[-1], err


def test_default_set_and_named_scripts(service_lab):  # noqa: F811
    """-sC runs nmap -sC's scripts (here without -sV: scanner turns it on, nmap's
    version-category http-server-header stays off); --script runs only those named."""
    lab, d = service_lab
    ours_xml, nmap_xml, one_xml = d / "sc.xml", d / "nmap-sc.xml", d / "one.xml"
    ports = "21,22,25,80,443"
    p = lab.run(scanner_argv(TARGET, "-sS", "-sC", "-Pn", "-p", ports, "-oX", ours_xml, "--no-db"),
                capture_output=True, text=True, env=scanner_env(), timeout=120)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    n = lab.run(["nmap", "-n", "-Pn", "-sS", "-sC", "-p", ports, "-oX", str(nmap_xml), TARGET],
                capture_output=True, text=True, timeout=300)
    assert n.returncode == 0, n.stderr
    ours, theirs = _scripts(ours_xml), _scripts(nmap_xml)
    for port in map(int, ports.split(",")):
        assert set(ours[("tcp", port)]) == set(theirs[("tcp", port)]), f"{port}: {ours} != {theirs}"
        for sid in set(ours[("tcp", port)]) - {"smtp-commands"}:    # the same text (EHLO names differ)
            assert ours[("tcp", port)][sid][0] == theirs[("tcp", port)][sid][0], f"{port} {sid}"
    assert "http-server-header" not in ours[("tcp", 80)] and "banner" not in ours[("tcp", 21)]
    p = lab.run(scanner_argv(TARGET, "-sS", "-sC", "--script", "ssh-hostkey", "-Pn", "-p", "21,22,80", "-oX",
                             one_xml, "--no-db"), capture_output=True, text=True, env=scanner_env(), timeout=120)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    got = _scripts(one_xml)
    assert set(got[("tcp", 22)]) == {"ssh-hostkey"} and "(ED25519)" in got[("tcp", 22)]["ssh-hostkey"][0]
    assert not got[("tcp", 21)] and not got[("tcp", 80)]
    ok, err = _ndiff(one_xml, one_xml)       # one script per port: ndiff reads its <table>s
    assert ok, err
