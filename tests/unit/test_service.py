"""-sV without a lab: the probe databases (ours and nmap's format), matching recorded replies of
many servers, certificates, and the concurrent engine against servers on 127.0.0.1."""
from __future__ import annotations

import asyncio
import csv
import io
import json
import socket
import ssl
import struct
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from scanner import service as S
from scanner.osguess import Fingerprint, OsGuess

KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgqb7MfJ0XW8uqK69k
TrnNdAhOKQy/R3XtX7QwMzUflayhRANCAAR4rrcqbNWzn1G1VraRj51iZoqtw/EP
GaXXkjaVOVLu0Rt1iiHNl4IiqZaVrr1Eodtr/UROhJouGKBuoTGynBp4
-----END PRIVATE KEY-----
"""
CERT = """-----BEGIN CERTIFICATE-----
MIIB6zCCAZCgAwIBAgIUWBKFpz/heV+14avYZJk944syGHEwCgYIKoZIzj0EAwIw
OzEVMBMGA1UEAwwMdW5pdC5leGFtcGxlMRUwEwYDVQQKDAxTY2FubmVyIFVuaXQx
CzAJBgNVBAYTAkRFMB4XDTI2MTEyODA0Mjg1MVoXDTM2MTEyNTA0Mjg1MVowOzEV
MBMGA1UEAwwMdW5pdC5leGFtcGxlMRUwEwYDVQQKDAxTY2FubmVyIFVuaXQxCzAJ
BgNVBAYTAkRFMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEeK63KmzVs59RtVa2
kY+dYmaKrcPxDxml15I2lTlS7tEbdYohzZeCIqmWla69RKHba/1EToSaLhigbqEx
spwaeKNyMHAwHQYDVR0OBBYEFIwkwEUF6kkxWqnyEyyhRokJvIK/MB8GA1UdIwQY
MBaAFIwkwEUF6kkxWqnyEyyhRokJvIK/MA8GA1UdEwEB/wQFMAMBAf8wHQYDVR0R
BBYwFIIMdW5pdC5leGFtcGxlhwR/AAABMAoGCCqGSM49BAMCA0kAMEYCIQD2VLdY
MfMzgKV6Z6iIRrX27G+HIAgd3nrrxBra8nTKZAIhAJNx7NDBNHrEgXVVsbdLInIt
DXLck9a0VunJ1LQUlCbl
-----END CERTIFICATE-----
"""
NMAP_DB = Path("/usr/share/nmap/nmap-service-probes")


@pytest.fixture(scope="module")
def db():
    return S.load_db()


def probe(db, name, proto="tcp"):
    return db.by_name[(proto, name)]


def ident(db, name, data, proto="tcp"):
    hard, soft = S.match_reply(db, probe(db, name, proto), data)
    return hard or soft


# ---------------------------------------------------------------- the database

def test_own_database_loads_and_every_pattern_compiles(db):
    assert db.null() is not None and db.null().payload == b""
    bad = [(p.name, m.line) for p in db.probes for m in p.matches if m.regex is None]
    assert not bad
    services = {m.service.split("/")[-1] for p in db.probes for m in p.matches}
    for want in ("http", "ssl", "ssh", "ftp", "smtp", "pop3", "imap", "redis", "mysql", "postgresql",
                 "memcached", "mongodb", "domain", "ntp", "snmp"):
        assert want in services, want
    assert 443 in probe(db, "TLSSessionReq").ports and 443 in probe(db, "GetRequest").sslports
    assert {p.proto for p in db.probes} == {"tcp", "udp"}


def test_probe_order_registered_first_then_rarity(db):
    order = [p.name for p in db.ordered("tcp", 6379, intensity=0)]
    assert order[0] == "Redis"                      # registered: tried whatever its rarity
    assert "Memcache" not in order                  # rarity 6 > intensity 0, not registered
    order = [p.name for p in db.ordered("tcp", 6379, intensity=9)]
    assert order[0] == "Redis" and "Memcache" in order
    assert [p.name for p in db.ordered("tcp", 443, 7, tls=True)][0] == "GetRequest"


@pytest.mark.parametrize("name,data,want", [
    ("NULL", b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
     ("ssh", "OpenSSH", "9.2p1 Debian 2+deb12u3", "protocol 2.0", "Linux")),
    ("NULL", b"SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6\r\n",
     ("ssh", "OpenSSH", "8.9p1 Ubuntu 3ubuntu0.6", "Ubuntu Linux; protocol 2.0", "Linux")),
    ("NULL", b"SSH-2.0-dropbear_2022.83\r\n", ("ssh", "Dropbear sshd", "2022.83", "protocol 2.0", "Linux")),
    ("NULL", b"SSH-2.0-OpenSSH_for_Windows_8.1\r\n", ("ssh", "OpenSSH", "for_Windows_8.1", "protocol 2.0", "Windows")),
    ("NULL", b"220 (vsFTPd 3.0.3)\r\n", ("ftp", "vsftpd", "3.0.3", "", "Unix")),
    ("NULL", b"220 ProFTPD 1.3.8 Server (Debian) [::ffff:198.18.200.1]\r\n", ("ftp", "ProFTPD", "1.3.8", "", "")),
    ("NULL", b"220 mail.example.org ESMTP Postfix (Debian/GNU)\r\n", ("smtp", "Postfix smtpd", "", "", "")),
    ("NULL", b"220 mx.example.org ESMTP Exim 4.96 Tue, 01 Oct 2024 10:00:00 +0000\r\n",
     ("smtp", "Exim smtpd", "4.96", "", "")),
    ("NULL", b"220 vm ESMTP OpenSMTPD\r\n", ("smtp", "OpenSMTPD", "", "", "")),
    ("NULL", b"+OK Dovecot (Debian) ready.\r\n", ("pop3", "Dovecot pop3d", "", "", "")),
    ("NULL", b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] "
             b"Dovecot (Debian) ready.\r\n", ("imap", "Dovecot imapd", "", "", "")),
    ("NULL", b"J\0\0\0\x0a8.0.36\0\x08\0\0\0abcdefgh\0\xff\xff\xff\x02\0\xff\xdf\x15\0\0\0\0\0\0\0\0\0\0",
     ("mysql", "MySQL", "8.0.36", "", "")),
    ("NULL", b"Y\0\0\0\x0a5.5.5-10.11.6-MariaDB-0+deb12u1\0\x03\0\0\0", ("mysql", "MySQL",
                                                                      "5.5.5-10.11.6-MariaDB-0+deb12u1", "", "")),
    ("GetRequest", b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: x\r\n\r\n<title>Hi</title>",
     ("http", "nginx", "1.22.1", "", "")),
    ("GetRequest", b"HTTP/1.1 200 OK\r\nDate: x\r\nServer: Apache/2.4.62 (Debian)\r\n\r\n",
     ("http", "Apache httpd", "2.4.62", "(Debian)", "Linux")),
    ("GetRequest", b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nServer: Microsoft-IIS/10.0\r\n\r\n",
     ("http", "Microsoft IIS httpd", "10.0", "", "Windows")),
    ("GetRequest", b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11.2\r\n\r\n",
     ("http", "SimpleHTTPServer", "0.6", "Python 3.11.2", "")),
    ("GetRequest", b"HTTP/1.1 200 OK\r\nServer: Foo/2.1\r\n\r\n", ("http", "Foo", "2.1", "", "")),  # soft
    ("GetRequest", b"-ERR wrong number of arguments for 'get' command\r\n", ("redis", "Redis key-value store", "", "", "")),
    ("Redis", b"$3000\r\n# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n",
     ("redis", "Redis key-value store", "7.0.15", "", "")),
    ("Memcache", b"STAT pid 1234\r\nSTAT uptime 20\r\nSTAT time 1700000000\r\nSTAT version 1.6.18\r\n",
     ("memcached", "Memcached", "1.6.18", "", "")),
    ("PostgreSQL", b"E\0\0\0\x64SFATAL\0VFATAL\0C28000\0Mrole \"scanner\" does not exist\0Fpostmaster.c\0\0",
     ("postgresql", "PostgreSQL DB", "9.6.0 or later", "", "")),
    ("PostgreSQL", b"R\0\0\0\x0c\0\0\0\x05salt", ("postgresql", "PostgreSQL DB", "", "", "")),
])
def test_recorded_replies(db, name, data, want):
    info = ident(db, name, data)
    assert info is not None, data
    assert (info.name, info.product, info.version, info.extrainfo, info.ostype) == want


def test_mongodb_reply(db):
    doc = b"\x02version\0" + struct.pack("<i", 6) + b"7.0.5\0" + b"\x01ok\0" + struct.pack("<d", 1.0)
    body = struct.pack("<i", len(doc) + 5) + doc + b"\0"
    msg = struct.pack("<i", 0) + b"\0" + body
    reply = struct.pack("<iiii", 16 + len(msg), 99, 1, 2013) + msg
    info = ident(db, "MongoDB", reply)
    assert (info.name, info.product, info.version) == ("mongodb", "MongoDB", "7.0.5")
    assert info.cpes == ["cpe:/a:mongodb:mongodb:7.0.5"]


def _dns_txt_reply(txt: bytes, tcp: bool) -> bytes:
    q = b"\x07version\x04bind\0\0\x10\0\x03"
    msg = b"\0\x06\x85\x80\0\x01\0\x01\0\0\0\0" + q + b"\xc0\x0c\0\x10\0\x03\0\0\0\0" + \
        struct.pack(">H", len(txt) + 1) + bytes([len(txt)]) + txt
    return struct.pack(">H", len(msg)) + msg if tcp else msg


def test_dns_ntp_snmp_replies(db):
    info = ident(db, "DNSVersionBindReq", _dns_txt_reply(b"dnsmasq-2.90", False), "udp")
    assert (info.name, info.product, info.version) == ("domain", "dnsmasq", "2.90")
    info = ident(db, "DNSVersionBindReqTCP", _dns_txt_reply(b"9.18.28-1~deb12u2-Debian", True))
    assert (info.name, info.product, info.version) == ("domain", "ISC BIND", "9.18.28-1~deb12u2-Debian")
    info = ident(db, "NTPRequest", b"\x24\x02\x00\xe7" + b"\0" * 44, "udp")
    assert (info.name, info.product, info.version) == ("ntp", "NTP", "v4")
    descr = b"Linux gw 6.1.0-28-amd64 #1 SMP x86_64"
    varbind = b"\x06\x08\x2b\x06\x01\x02\x01\x01\x01\x00\x04" + bytes([len(descr)]) + descr
    pdu = b"\xa2\x2a\x02\x04\0\0\x30\x39\x02\x01\0\x02\x01\0\x30" + bytes([len(varbind) + 2]) + b"\x30" + \
        bytes([len(varbind)]) + varbind
    snmp = b"\x30" + bytes([len(pdu) + 13]) + b"\x02\x01\x00\x04\x06public" + pdu
    info = ident(db, "SNMPv1public", snmp, "udp")
    assert (info.name, info.product, info.ostype) == ("snmp", "SNMPv1 server", "Linux")


def test_version_template_substitutions():
    m = S.parse_nmap_match(r'x m|^V(\d)_(\d)_(\d) (..)\0|s p/Prod/ v/$SUBST(1,"_",".")$2.$3/ i/$P(4)/ '
                           r'h/$I(4,">")/ cpe:/a:x:y:$1/a', False, 1)
    info = m.apply(b"V7_1_2 \x01\x02\0")
    assert info.version == "71.2" and info.extrainfo == "" and info.hostname == str(0x0102)
    assert info.cpes == ["cpe:/a:x:y:7"]
    m = S.parse_nmap_match(r'x m|^V(a_b)| v/$SUBST(1,"_",".")/', False, 1)
    assert m.apply(b"Va_b").version == "a.b"


NMAP_SNIPPET = r"""
# a comment
Exclude T:9100-9107
Probe TCP NULL q||
totalwaitms 6000
tcpwrappedms 3000
match ssh m|^SSH-([\d.]+)-OpenSSH_([\w._-]+)\r?\n| p/OpenSSH/ v/$2/ i/protocol $1/ cpe:/a:openbsd:openssh:$2/
softmatch ftp m|^220 .*ftp|i
Probe TCP GetRequest q|GET / HTTP/1.0\r\n\r\n|
rarity 1
ports 80-85,8080
sslports 443
match http m=^HTTP/1\.[01] \d\d\d.*\r\nServer: nginx/([\d.]+)\r\n=s p/nginx/ v/$1/ cpe:/a:igor_sysoev:nginx:$1/
Probe UDP DNSVersionBindReq q|\0\x06\x01\0\0\x01\0\0\0\0\0\0\x07version\x04bind\0\0\x10\0\x03|
rarity 1
ports 53
fallback GetRequest
"""


def test_nmap_format_parser(tmp_path):
    path = tmp_path / "nmap-service-probes"
    path.write_text(NMAP_SNIPPET)
    db = S.load_db(path)
    assert [p.name for p in db.probes] == ["NULL", "GetRequest", "DNSVersionBindReq"]
    get = probe(db, "GetRequest")
    assert get.payload == b"GET / HTTP/1.0\r\n\r\n" and get.rarity == 1
    assert set(range(80, 86)) <= get.ports and 443 in get.sslports
    assert probe(db, "NULL").wait == 6.0 and 9104 in db.excluded
    assert probe(db, "DNSVersionBindReq", "udp").payload.startswith(b"\0\x06\x01\0")
    assert probe(db, "DNSVersionBindReq", "udp").fallback == ("GetRequest",)
    info = ident(db, "GetRequest", b"HTTP/1.1 200 OK\r\nServer: nginx/1.25.3\r\n\r\n")
    assert (info.name, info.product, info.version, info.cpes) == (
        "http", "nginx", "1.25.3", ["cpe:/a:igor_sysoev:nginx:1.25.3"])
    # NULL's matches apply to every TCP probe's answer (nmap's rule)
    info = ident(db, "GetRequest", b"SSH-2.0-OpenSSH_9.6\r\n")
    assert (info.name, info.version, info.extrainfo) == ("ssh", "9.6", "protocol 2.0")
    hard, soft = S.match_reply(db, probe(db, "NULL"), b"220 Welcome to FTP\r\n")
    assert hard is None and soft.name == "ftp"


def test_nmap_real_database():
    """nmap's own file (Debian's nmap package, which CI installs) loads and matches."""
    assert NMAP_DB.exists(), "needs nmap's nmap-service-probes: apt-get install nmap"
    db = S.load_db(NMAP_DB)
    assert len(db.probes) > 100 and sum(len(p.matches) for p in db.probes) > 10000
    info = ident(db, "NULL", b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
    assert (info.name, info.product, info.version) == ("ssh", "OpenSSH", "9.2p1 Debian 2+deb12u3")
    info = ident(db, "GetRequest", b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\r\n")
    assert (info.name, info.product, info.version) == ("http", "nginx", "1.22.1")


def test_bad_database_is_an_input_error(tmp_path):
    from scanner.errors import InputError
    bad = tmp_path / "bad.txt"
    bad.write_text('probe tcp NULL ""\n  match ssh SSH-no-slashes\n')
    with pytest.raises(InputError):
        S.load_db(bad)
    with pytest.raises(InputError):
        S.load_db(tmp_path / "missing.txt")


# ---------------------------------------------------------------- certificates

def test_certificate_parser():
    der = ssl.PEM_cert_to_DER_cert(CERT)
    cert = S.parse_certificate(der)
    assert cert["subject"] == [("commonName", "unit.example"), ("organizationName", "Scanner Unit"),
                               ("countryName", "DE")]
    assert cert["issuer"] == cert["subject"]
    assert cert["names"] == ["DNS:unit.example", "IP Address:127.0.0.1"]
    assert cert["not_before"] == "2026-11-28T04:28:51" and cert["not_after"] == "2036-11-25T04:28:51"
    text = S.cert_text(cert)
    assert text.startswith("Subject: commonName=unit.example/organizationName=Scanner Unit/countryName=DE")
    assert "Subject Alternative Name: DNS:unit.example, IP Address:127.0.0.1" in text


def test_http_title():
    assert S.http_title(b"HTTP/1.1 200 OK\r\n\r\n<html><TITLE>\n  Hello\n world </TITLE>") == "Hello world"
    assert S.http_title(b"SSH-2.0-x <title>no</title>") is None


# ---------------------------------------------------------------- the engine, on 127.0.0.1

class LoopbackServers:
    """A thread running asyncio servers on 127.0.0.1: banner, HTTP, HTTPS, silent, closing, UDP DNS."""

    def __init__(self, tmp_path: Path, n_silent: int = 0):
        self.tmp, self.n_silent = tmp_path, n_silent
        self.ports: dict = {}
        self.connections = 0
        self.max_concurrent = 0
        self._open = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc):
        async def shutdown():
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
            await asyncio.sleep(0.05)
        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def _track(self, handler):
        async def wrapped(reader, writer):
            self.connections += 1
            self._open += 1
            self.max_concurrent = max(self.max_concurrent, self._open)
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError, ssl.SSLError):
                pass
            finally:
                self._open -= 1
                writer.close()
        return wrapped

    def _run(self):
        asyncio.set_event_loop(self.loop)

        async def ssh(reader, writer):
            writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
            await writer.drain()
            await reader.read(100)

        async def http(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nContent-Type: text/html\r\n\r\n"
                         b"<html><title>Unit page</title></html>")
            await writer.drain()

        async def silent(reader, writer):         # reads, never answers, until the client leaves
            while await reader.read(100):
                pass

        async def closer(reader, writer):
            pass

        (self.tmp / "k.pem").write_text(KEY)
        (self.tmp / "c.pem").write_text(CERT)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.tmp / "c.pem", self.tmp / "k.pem")

        async def start():
            for name, handler, tls in (("ssh", ssh, None), ("http", http, None), ("https", http, ctx),
                                       ("closer", closer, None)):
                srv = await asyncio.start_server(self._track(handler), "127.0.0.1", 0, ssl=tls)
                self.ports[name] = srv.sockets[0].getsockname()[1]
            self.ports["silent"] = []
            for _ in range(self.n_silent):
                srv = await asyncio.start_server(self._track(silent), "127.0.0.1", 0)
                self.ports["silent"].append(srv.sockets[0].getsockname()[1])

            class Dns(asyncio.DatagramProtocol):
                def connection_made(self, t):
                    self.t = t

                def datagram_received(self, data, addr):
                    self.t.sendto(data[:2] + _dns_txt_reply(b"dnsmasq-2.89", False)[2:], addr)
            t, _ = await self.loop.create_datagram_endpoint(Dns, local_addr=("127.0.0.1", 0))
            self.ports["dns"] = t.get_extra_info("sockname")[1]

        self.loop.run_until_complete(start())
        self.ready.set()
        self.loop.run_forever()


def test_engine_identifies_loopback_services(tmp_path):
    with LoopbackServers(tmp_path) as srv:
        p = srv.ports
        scanner = S.ServiceScanner(intensity=7, null_wait=0.6, probe_wait=1.0)
        targets = [("127.0.0.1", "tcp", p[k]) for k in ("ssh", "http", "https", "closer")] + \
                  [("127.0.0.1", "udp", p["dns"])]
        res = scanner.scan(targets)
    ssh = res[("127.0.0.1", "tcp", p["ssh"])]
    assert (ssh.name, ssh.product, ssh.version, ssh.method) == ("ssh", "OpenSSH", "9.2p1 Debian 2+deb12u3", "probed")
    http = res[("127.0.0.1", "tcp", p["http"])]
    assert (http.name, http.product, http.version, http.tunnel) == ("http", "nginx", "1.22.1", "")
    assert http.scripts["http-title"] == "Unit page"
    https = res[("127.0.0.1", "tcp", p["https"])]
    assert (https.name, https.product, https.tunnel, https.display_name) == ("http", "nginx", "ssl", "ssl/http")
    assert "commonName=unit.example" in https.scripts["ssl-cert"]
    assert https.scripts["http-title"] == "Unit page"
    assert res[("127.0.0.1", "tcp", p["closer"])].name == "tcpwrapped"
    dns = res[("127.0.0.1", "udp", p["dns"])]
    assert (dns.name, dns.product, dns.version) == ("domain", "dnsmasq", "2.89")
    assert scanner.progress()["done"] == len(targets)


def test_engine_runs_ports_concurrently(tmp_path):
    """40 silent ports, each costing several probe timeouts: at once, not one after another."""
    with LoopbackServers(tmp_path, n_silent=40) as srv:
        scanner = S.ServiceScanner(intensity=1, null_wait=0.5, probe_wait=0.5, concurrency=64)
        t0 = time.monotonic()
        res = scanner.scan([("127.0.0.1", "tcp", port) for port in srv.ports["silent"]])
        took = time.monotonic() - t0
        assert srv.max_concurrent >= 20, srv.max_concurrent
    assert len(res) == 40 and all(i.guess and i.method == "table" for i in res.values())   # nmap's "name?"
    steps = 1 + len(S.load_db().ordered("tcp", 1, 1))
    assert took < steps * 0.5 * 40 / 4, took        # far less than a port at a time
    assert scanner.progress()["done"] == 40


def test_concurrency_limit_is_respected(tmp_path):
    with LoopbackServers(tmp_path, n_silent=12) as srv:
        scanner = S.ServiceScanner(intensity=0, null_wait=0.3, probe_wait=0.3, concurrency=3)
        scanner.scan([("127.0.0.1", "tcp", port) for port in srv.ports["silent"]])
        assert srv.max_concurrent <= 3


def test_refused_port_gives_nothing():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    res = S.ServiceScanner(null_wait=0.2, probe_wait=0.2).scan([("127.0.0.1", "tcp", port)])
    info = res[("127.0.0.1", "tcp", port)]
    assert info.guess and info.method == "table" and info.display_name.endswith("?")


# ---------------------------------------------------------------- outputs

def _rows():
    from scanner.states import REASONS, RESULT_DTYPE, STATES
    rows = np.zeros(3, dtype=RESULT_DTYPE)
    rows["ip"] = int.from_bytes(bytes([198, 18, 0, 1]), "big")
    rows["port"] = [22, 443, 81]
    rows["proto"] = 6
    rows["state"] = [STATES["open"], STATES["open"], STATES["closed"]]
    rows["reason"] = [REASONS["syn-ack"], REASONS["syn-ack"], REASONS["reset"]]
    rows["ttl"] = 64
    return rows


SERVICES = {
    ("198.18.0.1", "tcp", 22): S.ServiceInfo("ssh", "OpenSSH", "9.2p1 Debian 2+deb12u3", "protocol 2.0",
                                             ostype="Linux", cpes=["cpe:/a:openbsd:openssh:9.2p1",
                                                                   "cpe:/o:linux:linux_kernel"]),
    ("198.18.0.1", "tcp", 443): S.ServiceInfo("http", "nginx", "1.22.1", tunnel="ssl",
                                              cpes=["cpe:/a:igor_sysoev:nginx:1.22.1"],
                                              scripts={"ssl-cert": "Subject: commonName=x\nIssuer: commonName=x",
                                                       "http-title": "Lab"}),
}
OS = {"198.18.0.1": OsGuess("Linux 4.19 - 6.x", 100, "Linux", "Linux", "4.X|5.X|6.X", "general purpose",
                            ["cpe:/o:linux:linux_kernel"],
                            Fingerprint(ttl=64, window=65160, mss=1460, wscale=7, options="M,S,T,N,W", df=1,
                                        port=22, rst_ttl=64, rst_window=0, closed_port=81))}


def _render(option, tmp_path, details=True):
    from scanner.output import ScanInfo, make_writer
    path = tmp_path / f"out{option.strip('-')}"
    w = make_writer(option, str(path), ScanInfo(ports=(22, 81, 443), n_hosts=1), details=details)
    w.write(_rows())
    w.set_details(SERVICES, OS)
    from scanner.engine import ScanSummary
    w.close(ScanSummary())
    return path.read_text()


def test_xml_has_nmaps_service_and_os_elements(tmp_path):
    root = ET.fromstring(_render("-oX", tmp_path))
    ports = {int(p.get("portid")): p for p in root.iter("port")}
    svc = ports[22].find("service")
    assert svc.attrib == {"name": "ssh", "product": "OpenSSH", "version": "9.2p1 Debian 2+deb12u3",
                          "extrainfo": "protocol 2.0", "ostype": "Linux", "method": "probed", "conf": "10"}
    assert [c.text for c in svc.findall("cpe")] == ["cpe:/a:openbsd:openssh:9.2p1", "cpe:/o:linux:linux_kernel"]
    assert ports[443].find("service").get("tunnel") == "ssl"
    assert {s.get("id") for s in ports[443].findall("script")} == {"ssl-cert", "http-title"}
    assert ports[81].find("service").attrib == {"name": "hosts2-ns", "method": "table", "conf": "3"}
    osm = root.find("host/os/osmatch")
    assert osm.get("name") == "Linux 4.19 - 6.x" and osm.get("accuracy") == "100"
    classes = osm.findall("osclass")
    assert [c.get("osgen") for c in classes] == ["4.X", "5.X", "6.X"]
    assert classes[0].attrib == {"type": "general purpose", "vendor": "Linux", "osfamily": "Linux", "osgen": "4.X",
                                 "accuracy": "100"}
    assert classes[0].find("cpe").text == "cpe:/o:linux:linux_kernel"
    assert {(p.get("state"), p.get("portid")) for p in root.findall("host/os/portused")} == {("open", "22"),
                                                                                            ("closed", "81")}


def test_xml_reads_with_python_libnmap(tmp_path):
    from libnmap.parser import NmapParser
    report = NmapParser.parse_fromstring(_render("-oX", tmp_path))
    host = report.hosts[0]
    ssh = [s for s in host.services if s.port == 22][0]
    assert ssh.service == "ssh" and "OpenSSH" in ssh.banner
    assert host.os_match_probabilities()[0].name == "Linux 4.19 - 6.x"


def test_normal_output_has_version_column_and_os(tmp_path):
    text = _render("-oN", tmp_path)
    assert "PORT      STATE           SERVICE         VERSION" in text
    assert "22/tcp    open            ssh             OpenSSH 9.2p1 Debian 2+deb12u3 (protocol 2.0)" in text
    assert "443/tcp   open            ssl/http        nginx 1.22.1" in text
    assert "|_http-title: Lab" in text and "| ssl-cert: Subject: commonName=x" in text
    assert "Running: Linux 4.X|5.X|6.X" in text and "OS details: Linux 4.19 - 6.x" in text
    assert "Service Info: OS: Linux; CPE: cpe:/o:linux:linux_kernel" in text


def test_grepable_output(tmp_path):
    text = _render("-oG", tmp_path)
    assert "22/open/tcp//ssh//OpenSSH 9.2p1 Debian 2+deb12u3 (protocol 2.0)/" in text
    assert "443/open/tcp//ssl|http//nginx 1.22.1/" in text
    assert "\tOS: Linux 4.19 - 6.x" in text


def test_ndjson_and_csv_carry_service_and_os(tmp_path):
    from scanner.output import NdjsonWriter
    from scanner.engine import ScanSummary
    path = tmp_path / "o.json"
    w = NdjsonWriter(str(path), details=True)
    w.write(_rows())
    assert path.read_text().count("\n") == 3            # every port at once: nothing waits for -sV
    w.set_details(SERVICES, OS)                         # then a detail row per described port
    w.close(ScanSummary())
    lines = list(map(json.loads, path.read_text().splitlines()))
    ports = {d["port"]: d for d in lines if not d.get("details")}
    details = {d["port"]: d for d in lines if d.get("details")}
    assert len(ports) == 3 and all("service" not in d for d in ports.values())
    assert set(details) == {22, 443} and all("state" not in d for d in details.values())
    assert details[22]["service"]["product"] == "OpenSSH" and details[22]["os"]["family"] == "Linux"
    assert details[443]["service"]["tunnel"] == "ssl" and details[443]["ip"] == ports[443]["ip"]
    table = list(csv.DictReader(io.StringIO(_render("--csv", tmp_path))))
    assert {int(r["port"]) for r in table if r["state"]} == {22, 81, 443}     # the ports, then the details
    by_port = {int(r["port"]): r for r in table if not r["state"]}
    assert by_port[22]["service"] == "ssh" and by_port[22]["version"] == "9.2p1 Debian 2+deb12u3"
    assert by_port[443]["service"] == "ssl/http" and by_port[22]["os"] == "Linux 4.19 - 6.x"
    banners = [line for line in _render("-oL", tmp_path).splitlines() if line.startswith("banner")]
    assert banners and banners[0].startswith("banner tcp 22 ") and banners[0].endswith(
        " ssh OpenSSH 9.2p1 Debian 2+deb12u3 (protocol 2.0)")


def test_store_keeps_services_and_os(tmp_path):
    from scanner.output import ScanInfo
    from scanner.store import Recorder, Store
    store = Store(tmp_path / "s.db")
    rec = Recorder(store, ScanInfo(), {})
    rec.write(_rows())
    rec.set_details(SERVICES, OS)
    from scanner.engine import ScanSummary
    rec.close(ScanSummary())
    services, guesses = store.details(rec.scan_id)
    assert services[("198.18.0.1", "tcp", 22)].version == "9.2p1 Debian 2+deb12u3"
    assert services[("198.18.0.1", "tcp", 443)].scripts["http-title"] == "Lab"
    assert guesses["198.18.0.1"].name == "Linux 4.19 - 6.x"
    assert guesses["198.18.0.1"].fingerprint.options == "M,S,T,N,W"


# ---------------------------------------------------------------- the command line, on 127.0.0.1

def _scanner(*args, timeout=60):
    import os
    import subprocess
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "scanner", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_cli_connect_scan_with_versions(tmp_path):
    with LoopbackServers(tmp_path) as srv:
        p = srv.ports
        xml = tmp_path / "o.xml"
        proc = _scanner("127.0.0.1", "-sT", "-Pn", "-sV", "--version-intensity", "2", "-p",
                        f"{p['ssh']},{p['http']},{p['https']}", "--no-db", "-oX", xml, "-oG", "-")
    assert proc.returncode == 0, proc.stderr
    assert "service scan: 3 of 3 open ports identified" in proc.stderr
    root = ET.parse(xml).getroot()
    got = {int(x.get("portid")): x.find("service").attrib for x in root.iter("port")}
    assert got[p["ssh"]]["product"] == "OpenSSH" and got[p["ssh"]]["method"] == "probed"
    assert (got[p["https"]]["name"], got[p["https"]]["tunnel"]) == ("http", "ssl")
    assert f"{p['http']}/open/tcp//http//nginx 1.22.1/" in proc.stdout


def test_cli_rejects_bad_version_options(tmp_path):
    proc = _scanner("127.0.0.1", "-sT", "-Pn", "-sV", "--version-intensity", "12", "-p", "1", "--no-db")
    assert proc.returncode == 2 and "--version-intensity" in proc.stderr
    proc = _scanner("127.0.0.1", "-sT", "-Pn", "-sV", "--service-db", tmp_path / "nope", "-p", "1", "--no-db")
    assert proc.returncode == 2 and "cannot read the service database" in proc.stderr


def test_row_collector_keeps_open_ports_and_one_rst_per_host():
    rows = np.concatenate([_rows(), _rows()])
    c = S.RowCollector()
    c.write(rows[:3])
    c.write(rows[3:])
    kept = c.rows()
    assert sorted(kept["port"].tolist()) == [22, 22, 81, 443, 443]
    assert S.service_targets(kept) == [("198.18.0.1", "tcp", 22), ("198.18.0.1", "tcp", 443)]


def test_a_registered_script_runs_on_the_services_it_declares():
    import asyncio

    from scanner.service import scripts
    calls = []

    async def shout(info, facts):
        calls.append((facts.host, facts.port))
        return f"{info.name} on {facts.port}"
    script = scripts.register(scripts.Script("test-shout", lambda info, facts: info.name == "http", shout,
                                             default=False))
    try:
        http = asyncio.run(scripts.run_scripts(S.ServiceInfo("http"), scripts.PortFacts("198.18.0.1", 80, "tcp"),
                                               names={"test-shout"}))
        ssh = asyncio.run(scripts.run_scripts(S.ServiceInfo("ssh"), scripts.PortFacts("198.18.0.1", 22, "tcp"),
                                              names={"test-shout"}))
        default = asyncio.run(scripts.run_scripts(S.ServiceInfo("http"), scripts.PortFacts(
            "198.18.0.1", 80, "tcp", title="Welcome")))
    finally:
        del scripts.SCRIPTS[script.name]
    assert http.scripts == {"test-shout": "http on 80"} and ssh.scripts == {}
    assert calls == [("198.18.0.1", 80)]
    assert default.scripts == {"http-title": "Welcome"}      # the default set, not the opt-in script
