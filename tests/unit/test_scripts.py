"""The script layer (scanner/service/scripts.py): which scripts -sC / --script select, the
dialogues of each script against small servers on 127.0.0.1, and nmap's output layout of script
results (-oN `| id:` lines, -oX <script> with <elem>/<table>, read by python-libnmap)."""
from __future__ import annotations

import asyncio
import base64
import json
import shutil
import struct
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from scanner.errors import InputError
from scanner.request import ScanRequest
from scanner.service import ServiceInfo
from scanner.service import scripts as SC
from scanner.service.sshkey import parse_key

# ---------------------------------------------------------------- selection and options


def test_select_default_names_categories_patterns():
    default = SC.select((), default=True)
    assert default == {"http-title", "ssl-cert", "ssh-hostkey", "ftp-anon", "smtp-commands", "mysql-info",
                       "dns-nsid"}       # nmap's "default" category among scanner's scripts
    assert SC.select(()) is None                                   # plain -sV: its own set
    assert SC.select((), default=True, versions=True) == default | {"http-server-header"}
    assert SC.select(["banner,redis-info"]) == {"banner", "redis-info"}
    assert SC.select(["http-*"]) == {"http-title", "http-server-header"}
    assert SC.select(["version"]) == {"http-server-header"}
    assert SC.select(["all"]) == set(SC.SCRIPTS)
    assert SC.select(["ssh-hostkey"], default=True) == {"ssh-hostkey"}     # --script replaces -sC, as nmap
    with pytest.raises(InputError, match="unknown script: nope"):
        SC.select(["http-title,nope"])
    assert SC.named(["default,banner", "http-*"]) == {"banner", "http-title", "http-server-header"}


def test_options_parse_and_round_trip():
    r = ScanRequest.from_argv(["-sCV", "--script", "banner", "--script=redis-info", "--script-args",
                               "smtp-commands.domain=x.test,http.useragent='a b'", "127.0.0.1"])
    assert r.script_scan and r.version_scan and r.scripts == ("banner", "redis-info")
    assert SC.parse_args(r.script_args) == {"smtp-commands.domain": "x.test", "http.useragent": "a b"}
    assert ScanRequest.from_argv(r.to_argv()) == r
    assert ScanRequest.from_json(r.to_json()) == r
    assert ScanRequest.from_argv(["-sC", "127.0.0.1"]).script_scan
    with pytest.raises(InputError, match="unknown script: nope"):
        ScanRequest.from_argv(["--script", "nope", "127.0.0.1"])
    with pytest.raises(InputError, match="unknown script"):
        ScanRequest.from_json({"targets": ["127.0.0.1"], "scripts": ["ssl-cert,bogus"]})


def test_cli_unknown_script_is_one_line_exit_2():
    root = Path(__file__).resolve().parents[2]
    p = subprocess.run([sys.executable, "-m", "scanner", "--script", "nope", "-p", "1", "127.0.0.1", "--no-db"],
                       capture_output=True, text=True, cwd=root, timeout=60)
    assert p.returncode == 2 and "unknown script: nope" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


# ---------------------------------------------------------------- layouts


def test_banner_layout_is_nmaps():
    assert SC.banner_text(b"220 (vsFTPd 3.0.3)") == "220 (vsFTPd 3.0.3)"
    short = SC.banner_text(bytes(range(0, 60)))    # 156 characters escaped: cut at 63
    assert len(short) == 64 and short.endswith("...\n") and short.startswith("\\x00\\x01")
    text = SC.banner_text(bytes(range(0, 60)), 1)  # named in --script: nmap's one more level, 63 + 71
    first, second, last = text.split("\n")         # nmap ends a full last line with a newline
    assert len(first) == 63 and first.startswith("\\x00\\x01\\x02") and "\\x0A" in first
    assert len(second) == 71 and second.endswith("...") and "\\x1F" in second and last == ""


def test_nse_text_layout():
    assert SC.nse_text({"Version": "7.0", "Bind addresses": ["0.0.0.0"], "x": {"y": "z"}}) == \
        "\n  Version: 7.0\n  Bind addresses: \n    0.0.0.0\n  x: \n    y: z"


def _render(option, tmp_path, services):
    from scanner.engine import ScanSummary
    from scanner.output import ScanInfo, make_writer
    from scanner.states import REASONS, RESULT_DTYPE, STATES
    import numpy as np
    rows = np.zeros(1, dtype=RESULT_DTYPE)
    rows["ip"] = int.from_bytes(bytes([198, 18, 0, 1]), "big")
    rows["port"], rows["proto"], rows["state"], rows["reason"], rows["ttl"] = 22, 6, STATES["open"], \
        REASONS["syn-ack"], 64
    path = tmp_path / f"out{option.strip('-')}"
    w = make_writer(option, str(path), ScanInfo(ports=(22,), n_hosts=1), details=True)
    w.write(rows)
    w.set_details(services, {})
    w.close(ScanSummary())
    return path.read_text()


DTD = "/usr/share/nmap/nmap.dtd"
HOSTKEY = [{"key": "AAAA", "fingerprint": "ea01a31da1fe16672c191206e607acde", "type": "ssh-ed25519", "bits": "256"}]
SSH = {("198.18.0.1", "tcp", 22): ServiceInfo(
    "ssh", "OpenSSH", scripts={"ssh-hostkey": "\n  256 ea01a31da1fe16672c191206e607acde (ED25519)",
                               "banner": "SSH-2.0-x\n",
                               "redis-info": SC.nse_text({"Version": "7", "Bind addresses": ["0.0.0.0", "::1"]})},
    script_data={"ssh-hostkey": HOSTKEY, "redis-info": {"Version": "7", "Bind addresses": ["0.0.0.0", "::1"]}})}


def test_xml_script_elements_read_by_libnmap(tmp_path):
    text = _render("-oX", tmp_path, SSH)
    port = ET.fromstring(text).find("host/ports/port")
    scripts = {s.get("id"): s for s in port.findall("script")}
    table = scripts["ssh-hostkey"].find("table")
    assert table.get("key") is None and {e.get("key"): e.text for e in table.findall("elem")} == HOSTKEY[0]
    assert scripts["ssh-hostkey"].get("output") == "\n  256 ea01a31da1fe16672c191206e607acde (ED25519)"
    redis = scripts["redis-info"]
    assert redis.find("elem[@key='Version']").text == "7"
    assert [e.text for e in redis.find("table[@key='Bind addresses']")] == ["0.0.0.0", "::1"]
    assert not list(scripts["banner"])              # no structured values: a bare <script/>
    # Valid against nmap's DTD (Debian's nmap ships it; xmllint: libxml2-utils).
    assert shutil.which("xmllint") and Path(DTD).exists(), "apt-get install nmap libxml2-utils"
    (tmp_path / "v.xml").write_text(text)
    lint = subprocess.run(["xmllint", "--noout", "--dtdvalid", DTD, str(tmp_path / "v.xml")], capture_output=True,
                          text=True)
    assert lint.returncode == 0, lint.stderr
    from libnmap.parser import NmapParser
    svc = NmapParser.parse_fromstring(text).hosts[0].services[0]
    got = {s["id"]: s for s in svc.scripts_results}
    assert got["ssh-hostkey"]["elements"] == {"fingerprint": HOSTKEY[0]["fingerprint"], "key": "AAAA",
                                              "type": "ssh-ed25519", "bits": "256"} or \
        HOSTKEY[0]["fingerprint"] in json.dumps(got["ssh-hostkey"]["elements"])
    assert got["redis-info"]["elements"]["Version"] == "7"


def test_normal_output_script_lines(tmp_path):
    text = _render("-oN", tmp_path, SSH)
    lines = text.splitlines()
    i = lines.index("| ssh-hostkey: ")
    assert lines[i + 1] == "|_  256 ea01a31da1fe16672c191206e607acde (ED25519)"
    assert "|_banner: SSH-2.0-x" in lines                  # a trailing newline makes no empty line
    j = lines.index("| redis-info: ")
    assert lines[j + 1:j + 5] == ["|   Version: 7", "|   Bind addresses: ", "|     0.0.0.0", "|_    ::1"]


def test_ndjson_rows_carry_scripts(tmp_path):
    rows = [json.loads(line) for line in _render("-oJ", tmp_path, SSH).splitlines()]
    svc = [r for r in rows if r.get("service")][0]["service"]
    assert svc["scripts"]["ssh-hostkey"].endswith("(ED25519)") and svc["script_data"]["ssh-hostkey"] == HOSTKEY
    assert ServiceInfo.from_dict(svc).script_data == SSH[("198.18.0.1", "tcp", 22)].script_data


# ---------------------------------------------------------------- parsers


@pytest.mark.parametrize("kind", ["ed25519", "rsa", "ecdsa"])
def test_ssh_key_fingerprint_matches_ssh_keygen(tmp_path, kind):
    assert shutil.which("ssh-keygen"), "apt-get install openssh-client"
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(key)], check=True)
    blob = base64.b64decode((tmp_path / "k.pub").read_text().split()[1])
    parsed = parse_key(blob)
    out = subprocess.run(["ssh-keygen", "-l", "-E", "md5", "-f", str(key)], capture_output=True, text=True).stdout
    bits, fp = out.split()[0], out.split()[1]
    assert fp == "MD5:" + ":".join(parsed.fingerprint[i:i + 2] for i in range(0, 32, 2))
    assert str(parsed.bits) == bits and parsed.label == out.split()[-1].strip("()")


def _greeting(version=b"10.11.6-MariaDB", caps=0xF7FE, ext=0x81FF, status=2, plugin=b"mysql_native_password"):
    body = bytes([10]) + version + b"\0" + struct.pack("<I", 42) + b"abcdefgh" + b"\0" + struct.pack("<H", caps)
    body += struct.pack("<BHHB", 8, status, ext, 21) + b"\0" * 10 + b"ijklmnopqrst\0" + plugin + b"\0"
    return struct.pack("<I", len(body))[:3] + b"\0" + body


def test_mysql_greeting():
    out = SC.mysql_greeting(_greeting())
    assert out["Protocol"] == "10" and out["Version"] == "10.11.6-MariaDB" and out["Thread ID"] == "42"
    assert out["Capabilities flags"] == str(0xF7FE) and out["Status"] == "Autocommit"
    assert out["Salt"] == "abcdefghijklmnopqrst" and out["Auth Plugin Name"] == "mysql_native_password"
    assert "Support41Auth" in out["Some Capabilities"] and "LongPassword" not in out["Some Capabilities"]
    assert "SupportsAuthPlugins" in out["Some Capabilities"]
    assert SC.mysql_greeting(b"\x05\0\0\0\xff\x15\x04ab") is None      # an error packet


# ---------------------------------------------------------------- dialogues, on 127.0.0.1


class Servers:
    """FTP, SMTP, Redis, MySQL and HTTP look-alikes (and DNS over UDP) on 127.0.0.1, in a thread."""

    def __init__(self):
        self.ports: dict = {}
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()

    def __enter__(self):
        threading.Thread(target=self._run, daemon=True).start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc):
        async def cancel_all():          # the handlers still waiting end before the loop stops
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in others:
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)

    def _run(self):
        asyncio.set_event_loop(self.loop)

        async def line(r):
            return (await r.readline()).decode().strip()

        async def ftp(r, w):
            w.write(b"220 (fake ftpd)\r\n")
            data_srv = None
            while True:
                cmd = await line(r)
                if not cmd or cmd == "QUIT":
                    break
                if cmd.startswith("USER anonymous"):
                    w.write(b"331 Please specify the password.\r\n")
                elif cmd.startswith("PASS"):
                    w.write(b"230 Login successful.\r\n")
                elif cmd == "PASV":
                    async def data(dr, dw):
                        await asyncio.sleep(0.2)
                        dw.write(b"-rw-r--r--    1 0        0               5 Jan 01 00:00 readme.txt\r\n")
                        dw.close()
                    data_srv = await asyncio.start_server(data, "127.0.0.1", 0)
                    p = data_srv.sockets[0].getsockname()[1]
                    # The address named here is never connected to: the script uses the host it scans.
                    w.write(f"227 Entering Passive Mode (192,0,2,1,{p >> 8},{p & 255}).\r\n".encode())
                elif cmd == "LIST":
                    w.write(b"150 Here comes the directory listing.\r\n")
                    await asyncio.sleep(0.4)
                    w.write(b"226 Directory send OK.\r\n")
            w.close()

        async def smtp(r, w):
            w.write(b"220-fake.test ESMTP\r\n220 ready\r\n")
            while True:
                cmd = await line(r)
                if not cmd or cmd == "QUIT":
                    break
                if cmd.startswith("EHLO"):
                    w.write(f"250-fake.test Hello {cmd[5:]}\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 HELP\r\n"
                            .encode())
                elif cmd == "HELP":
                    w.write(b"214-2.0.0 This is fake\r\n214 2.0.0 End of HELP info\r\n")
            w.close()

        async def redis(r, w):
            while True:
                head = await line(r)
                if not head:
                    break
                words = []
                for _ in range(int(head[1:])):
                    await line(r)
                    words.append(await line(r))
                if words == ["INFO"]:
                    body = b"# Server\r\nredis_version:7.0.15\r\nos:Linux\r\narch_bits:64\r\nrole:master\r\n"
                    w.write(b"$%d\r\n%s\r\n" % (len(body), body))
                elif words[:2] == ["CONFIG", "GET"]:
                    w.write(b"*2\r\n$4\r\nbind\r\n$16\r\n* -::1 192.0.2.4\r\n")
                elif words[:2] == ["CLIENT", "LIST"]:
                    body = b"id=3 addr=127.0.0.1:5000 fd=8\nid=4 addr=[::1]:5001 fd=9\n"
                    w.write(b"$%d\r\n%s\r\n" % (len(body), body))
                else:
                    w.write(b"-ERR unknown command\r\n")
            w.close()

        async def mysql(r, w):
            w.write(_greeting())
            await r.read()
            w.close()

        async def http(r, w):
            req = (await r.readuntil(b"\r\n\r\n")).decode()
            if req.startswith("GET /old"):
                w.write(b"HTTP/1.1 301 Moved\r\nServer: fake/1.0\r\nLocation: /new\r\nContent-Length: 0\r\n\r\n")
            elif req.startswith("GET /away"):     # elsewhere: never followed (never connected to)
                w.write(b"HTTP/1.1 302 Found\r\nLocation: http://192.0.2.1/\r\nContent-Length: 0\r\n\r\n")
            elif req.startswith("GET /titled"):
                w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html><TITLE>A\tvery " + b"long " * 20
                        + b"title</TITLE>")
            else:
                w.write(b"HTTP/1.1 200 OK\r\nServer: fake/1.0\r\nContent-Type: text/plain\r\n\r\nno title here")
            w.close()

        class Dns(asyncio.DatagramProtocol):
            def connection_made(self, t):
                self.t = t

            def datagram_received(self, q, addr):
                qname_end = q.index(b"\0", 12) + 5
                question = q[12:qname_end]
                name = question[:-4]
                txt = b"fake-dns-1.0" if b"version" in name else b"ns1.fake"
                answer = b"\xc0\x0c" + struct.pack(">HHIH", 16, 3, 0, len(txt) + 1) + bytes([len(txt)]) + txt
                extra, ar = b"", 0
                if len(q) > qname_end:                # the query had an OPT: answer the NSID
                    opt = struct.pack(">HH", 3, 4) + b"ns-a"
                    extra, ar = b"\0" + struct.pack(">HHIH", 41, 4096, 0, len(opt)) + opt, 1
                self.t.sendto(q[:2] + b"\x84\x00" + struct.pack(">HHHH", 1, 1, 0, ar) + question + answer + extra,
                              addr)

        async def start():
            for name, handler in (("ftp", ftp), ("smtp", smtp), ("redis", redis), ("mysql", mysql), ("http", http)):
                srv = await asyncio.start_server(handler, "127.0.0.1", 0)
                self.ports[name] = srv.sockets[0].getsockname()[1]
            t, _ = await self.loop.create_datagram_endpoint(Dns, local_addr=("127.0.0.1", 0))
            self.ports["dns"] = t.get_extra_info("sockname")[1]
        self.loop.run_until_complete(start())
        self.ready.set()
        self.loop.run_forever()


def _run(name, service, port, proto="tcp", args=None):
    facts = SC.PortFacts("127.0.0.1", port, proto, args=args or {}, active=True)
    info = asyncio.run(SC.run_scripts(ServiceInfo(service), facts, frozenset({name})))
    return info.scripts.get(name), info.script_data.get(name)


def test_script_dialogues_on_loopback():
    with Servers() as s:
        p = s.ports
        ftp, _ = _run("ftp-anon", "ftp", p["ftp"])
        smtp, _ = _run("smtp-commands", "smtp", p["smtp"], args={"smtp-commands.domain": "me.test"})
        redis, redis_data = _run("redis-info", "redis", p["redis"])
        mysql, mysql_data = _run("mysql-info", "mysql", p["mysql"])
        dns, dns_data = _run("dns-nsid", "domain", p["dns"], "udp")
        title, _ = _run("http-title", "http", p["http"])
        moved, moved_data = _run("http-title", "http", p["http"], args={"http-title.url": "/old"})
        away, away_data = _run("http-title", "http", p["http"], args={"http-title.url": "/away"})
        titled, titled_data = _run("http-title", "http", p["http"], args={"http-title.url": "/titled"})
        server, _ = _run("http-server-header", "http", p["http"])
        banner, _ = _run("banner", "ftp", p["ftp"])
    assert ftp.splitlines() == ["Anonymous FTP login allowed (FTP code 230)",
                                "-rw-r--r--    1 0        0               5 Jan 01 00:00 readme.txt"]
    assert smtp == "fake.test Hello me.test, PIPELINING, SIZE 1000, HELP\n 2.0.0 This is fake 2.0.0 End of HELP info"
    assert redis_data == {"Version": "7.0.15", "Operating System": "Linux", "Architecture": "64 bits",
                          "Role": "master", "Bind addresses": ["*", "-::1", "192.0.2.4"],
                          "Client connections": ["127.0.0.1", "::1"]}
    assert redis.startswith("\n  Version: 7.0.15\n")
    assert mysql_data["Version"] == "10.11.6-MariaDB" and "\n  Status: Autocommit" in mysql
    assert dns_data == {"NSID": "ns-a (6e732d61)", "id.server": "ns1.fake", "bind.version": "fake-dns-1.0"}
    assert title == "Site doesn't have a title (text/plain)."
    assert moved == "Site doesn't have a title (text/plain).\nRequested resource was /new"
    assert moved_data == {"redirect_url": "/new"}
    assert away == "Did not follow redirect to http://192.0.2.1/" and away_data == {"redirect_url": "http://192.0.2.1/"}
    assert titled == "Avery " + "long " * 11 + "l..." and len(titled) == 65        # nmap: 62 + "..."
    assert titled_data == {"title": "A\tvery " + "long " * 20 + "title"}
    assert server == "fake/1.0"
    assert banner == "220 (fake ftpd)"


def test_plain_sv_scripts_never_connect():
    """Without -sC/--script the scripts only read what the probes learned (no connection made:
    the port here is closed, and the facts say what -sV saw)."""
    facts = SC.PortFacts("127.0.0.1", 9, "tcp", title="T", replies={"GetRequest": b"HTTP/1.0 200 OK\r\n"
                                                                                b"Server: x/1\r\n\r\n"})
    info = asyncio.run(SC.run_scripts(ServiceInfo("http"), facts))
    assert info.scripts == {"http-title": "T", "http-server-header": "x/1"}
    bare = asyncio.run(SC.run_scripts(ServiceInfo("http"), SC.PortFacts("127.0.0.1", 9, "tcp")))
    assert bare.scripts == {}
    two = SC.PortFacts("127.0.0.1", 9, "tcp", replies={"GetRequest": b"HTTP/1.0 200 OK\r\nServer: z/2\r\n\r\n",
                                                       "HTTPOptions": b"HTTP/1.1 200 OK\r\nserver: a/1\r\n\r\n",
                                                       "RTSPRequest": b"HTTP/1.1 400 x\r\nServer: z/2\r\n\r\n"})
    info = asyncio.run(SC.run_scripts(ServiceInfo("http"), two))
    assert info.scripts["http-server-header"] == "\n  a/1\n  z/2" and info.script_data["http-server-header"] == \
        ["a/1", "z/2"]                      # nmap's layout of several, sorted
    same = asyncio.run(SC.run_scripts(ServiceInfo("http", product="z/2"), two))
    assert same.scripts["http-server-header"] == "a/1"          # what -sV named is not said again
