"""-sV and -O against real servers from Debian's packages, in the lab's target namespace, compared
with nmap -sV (Debian's nmap) run in the same lab: same service name on every port, same product
and version wherever nmap names them. -O must say Linux. Servers get their own temporary
configuration, are started by the fixture (not by systemd) and stopped in its finalizer.

Debian packages needed (installed here when missing; a failed install FAILS the test):
nginx-light openssh-server redis-server vsftpd dnsmasq-base opensmtpd openssl nmap
(and mariadb-server-core, for test_scripts_lab)"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import make_lab, require_lab_tools, scanner_argv, scanner_env

PACKAGES = {  # binary -> Debian package
    "/usr/sbin/nginx": "nginx-light", "/usr/sbin/sshd": "openssh-server", "/usr/bin/redis-server": "redis-server",
    "/usr/sbin/vsftpd": "vsftpd", "/usr/sbin/dnsmasq": "dnsmasq-base", "/usr/sbin/smtpd": "opensmtpd",
    "/usr/bin/openssl": "openssl", "/usr/bin/nmap": "nmap",
    "/usr/sbin/mariadbd": "mariadb-server-core",     # test_scripts_lab's mysql-info
}
TARGET = "198.18.0.1"
TCP_PORTS = {21: "ftp", 22: "ssh", 25: "smtp", 53: "domain", 80: "http", 443: "http", 6379: "redis"}
UDP_PORTS = {53: "domain"}


def ensure_packages() -> None:
    missing = sorted({pkg for path, pkg in PACKAGES.items() if not os.path.exists(path)})
    if not missing:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # No daemon may start in the root namespace on install: policy-rc.d says no (if none exists).
    policy = Path("/usr/sbin/policy-rc.d")
    own_policy = not policy.exists()
    if own_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        p = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env,
                           capture_output=True, text=True)
        if p.returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True)
            p = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env,
                               capture_output=True, text=True)
    finally:
        if own_policy:
            policy.unlink(missing_ok=True)
    still = [pkg for path, pkg in PACKAGES.items() if not os.path.exists(path)]
    if p.returncode != 0 or still:
        pytest.fail(f"cannot install the lab's servers ({' '.join(missing)}): apt-get said\n{p.stderr[-2000:]}",
                    pytrace=False)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _wait_port(lab, port: int, udp: bool = False, timeout: float = 10.0) -> bool:
    # ss inside the target namespace: is something listening?
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = lab.run_target(["ss", "-Hlnu" if udp else "-Hlnt", f"sport = :{port}"],
                             capture_output=True, text=True).stdout
        if out.strip():
            return True
        time.sleep(0.1)
    return False


@contextlib.contextmanager
def lab_servers(lab, workdir: Path):
    """Starts nginx (HTTP and HTTPS with a self-signed certificate), sshd, redis, vsftpd, OpenSMTPD
    and dnsmasq in the lab's target namespace; stops them however the block ends."""
    d = workdir
    procs: list[subprocess.Popen] = []
    logs = []

    def start(name, argv, port, udp=False):
        log = open(d / f"{name}.log", "w")
        logs.append(log)
        procs.append(subprocess.Popen(["ip", "netns", "exec", lab.target_ns, *argv], stdout=log, stderr=log,
                                      stdin=subprocess.DEVNULL, start_new_session=True))
        if not _wait_port(lab, port, udp):
            raise RuntimeError(f"{name} did not listen on port {port}: {(d / f'{name}.log').read_text()[-1500:]}")

    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                        "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"),
                        "-subj", "/CN=lab.example/O=Scanner Lab/C=US",
                        "-addext", "subjectAltName=DNS:lab.example,DNS:www.lab.example"],
                       check=True, capture_output=True)
        (d / "www").mkdir()
        _write(d / "www" / "index.html", "<html><head><title>Scanner lab</title></head><body>hi</body></html>\n")
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (d / sub).mkdir()
        _write(d / "nginx.conf", f"""daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{
    listen 80; listen 443 ssl;
    ssl_certificate {d}/cert.pem; ssl_certificate_key {d}/key.pem;
    root {d}/www; index index.html;
  }}
}}
""")
        start("nginx", ["nginx", "-c", str(d / "nginx.conf"), "-p", str(d)], 80)

        Path("/run/sshd").mkdir(exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "ssh_host_ed25519_key")],
                       check=True, capture_output=True)
        _write(d / "sshd_config", f"Port 22\nHostKey {d}/ssh_host_ed25519_key\nPidFile {d}/sshd.pid\n"
                                  "UsePAM no\nPasswordAuthentication no\n")
        start("sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")], 22)

        start("redis", ["redis-server", "--port", "6379", "--bind", "0.0.0.0", "--protected-mode", "no",
                        "--save", "", "--appendonly", "no", "--dir", str(d), "--daemonize", "no"], 6379)

        empty = d / "vsftpd-empty"
        empty.mkdir(mode=0o755)
        _write(d / "vsftpd.conf", f"listen=YES\nlisten_ipv6=NO\nlisten_port=21\nbackground=NO\n"
                                  f"anonymous_enable=YES\nno_anon_password=YES\nanon_root={empty}\nlocal_enable=NO\n"
                                  f"secure_chroot_dir={empty}\n"
                                  f"xferlog_enable=NO\nseccomp_sandbox=NO\n")
        start("vsftpd", ["vsftpd", str(d / "vsftpd.conf")], 21)

        _write(d / "smtpd.conf", "listen on 0.0.0.0 port 25\naction \"local\" mbox\n"
                                 "match from any for local action \"local\"\n")
        os.chmod(d / "smtpd.conf", 0o600)
        start("smtpd", ["/usr/sbin/smtpd", "-d", "-f", str(d / "smtpd.conf")], 25)

        start("dnsmasq", ["dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--port=53",
                          "--user=root", "--group=root", f"--pid-file={d}/dnsmasq.pid",
                          "--address=/lab.example/198.18.0.1", "--log-facility=-"], 53, udp=True)
        yield
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(3)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for log in logs:
            log.close()


@pytest.fixture
def service_lab():
    """A lab whose target namespace runs the real servers; yields (lab, workdir)."""
    from scanner.lab import LabSpec
    require_lab_tools()
    ensure_packages()
    spec = LabSpec(prefix="198.18.0.0/30", open_tcp=(), open_udp=(), drop_tcp=(), reject_tcp={})
    with tempfile.TemporaryDirectory(prefix="scanner-sv-") as tmp:
        os.chmod(tmp, 0o755)
        with make_lab(spec) as lab, lab_servers(lab, Path(tmp)):
            yield lab, Path(tmp)


def nmap_services(xml_path: Path) -> dict:
    """{(proto, port): {name, product, version, tunnel}} from an -oX file (nmap's or ours)."""
    out = {}
    root = ET.parse(xml_path).getroot()
    for port in root.iter("port"):
        if port.find("state").get("state") != "open":
            continue
        svc = port.find("service")
        out[(port.get("protocol"), int(port.get("portid")))] = {} if svc is None else dict(svc.attrib)
    return out


def _ports_arg() -> str:
    return "T:" + ",".join(map(str, TCP_PORTS)) + ",U:" + ",".join(map(str, UDP_PORTS))


def test_service_versions_match_nmap(service_lab):
    lab, d = service_lab
    ours_xml, nmap_xml = d / "ours.xml", d / "nmap.xml"
    t0 = time.monotonic()
    p = lab.run(scanner_argv(TARGET, "-sS", "-sU", "-sV", "-Pn", "-p", _ports_arg(), "-oX", str(ours_xml),
                             "-oN", str(d / "ours.nmap"), "--no-db"),
                capture_output=True, text=True, env=scanner_env(), timeout=180)
    ours_time = time.monotonic() - t0
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    t0 = time.monotonic()
    n = lab.run(["nmap", "-n", "-Pn", "-sS", "-sU", "-sV", "-p", _ports_arg(), "-oX", str(nmap_xml), TARGET],
                capture_output=True, text=True, timeout=600)
    nmap_time = time.monotonic() - t0
    assert n.returncode == 0, n.stderr
    print(f"\n-sV timing: scanner {ours_time:.1f}s, nmap {nmap_time:.1f}s")
    ours, theirs = nmap_services(ours_xml), nmap_services(nmap_xml)
    wanted = {("tcp", p) for p in TCP_PORTS} | {("udp", p) for p in UDP_PORTS}
    assert wanted <= set(theirs), f"nmap did not see every server open: {sorted(theirs)}"
    assert wanted <= set(ours), f"scanner did not see every server open: {sorted(ours)}\n{p.stderr}"
    problems = []
    for key in sorted(wanted):
        a, b = ours[key], theirs[key]
        for attr in ("name", "tunnel", "product", "version"):
            if attr in ("name", "tunnel") or b.get(attr):
                if a.get(attr, "") != b.get(attr, ""):
                    problems.append(f"{key} {attr}: scanner {a.get(attr)!r}, nmap {b.get(attr)!r}")
        assert a.get("method") == "probed", f"{key}: not identified by a probe: {a}"
    assert not problems, "\n".join(problems) + f"\nscanner:\n{(d / 'ours.nmap').read_text()}"
    # The certificate and the page title are reported (as nmap's ssl-cert / http-title scripts).
    root = ET.parse(ours_xml).getroot()
    scripts = {(s.get("id"), int(port.get("portid"))): s.get("output")
               for port in root.iter("port") for s in port.iter("script")}
    assert "commonName=lab.example" in scripts[("ssl-cert", 443)]
    assert "DNS:www.lab.example" in scripts[("ssl-cert", 443)]
    assert scripts[("http-title", 80)] == "Scanner lab"
    assert scripts[("http-title", 443)] == "Scanner lab"
    normal = (d / "ours.nmap").read_text()
    assert "VERSION" in normal and "ssl/http" in normal


def test_os_guess_linux(service_lab):
    lab, d = service_lab
    xml = d / "os.xml"
    p = lab.run(scanner_argv(TARGET, "-O", "-Pn", "-p", "22,80,81", "-oX", str(xml), "-oN", str(d / "os.nmap"),
                             "--no-db", "--os-db", "builtin"),     # nmap's database: test_os_nmapdb.py
                capture_output=True, text=True, env=scanner_env(), timeout=120)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    root = ET.parse(xml).getroot()
    osm = root.find("host/os/osmatch")
    assert osm is not None, xml.read_text()
    cls = osm.find("osclass")
    assert cls.get("osfamily") == "Linux" and cls.get("vendor") == "Linux", ET.tostring(osm).decode()
    assert int(osm.get("accuracy")) >= 85
    # The evidence used is what the lab's kernel really sent.
    port22 = [pt for pt in root.iter("port") if pt.get("portid") == "22"][0]
    assert port22.find("state").get("reason_ttl") == "64"
    assert "Linux" in (d / "os.nmap").read_text()


def test_aggressive_is_versions_os_scripts_and_traceroute(service_lab):
    lab, d = service_lab
    xml = d / "a.xml"
    p = lab.run(scanner_argv(TARGET, "-A", "-Pn", "-p", "22,80", "-oX", str(xml), "-oJ", str(d / "a.json"),
                             "--no-db"),
                capture_output=True, text=True, env=scanner_env(), timeout=120)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    svcs = nmap_services(xml)
    assert svcs[("tcp", 22)]["name"] == "ssh" and svcs[("tcp", 22)]["product"] == "OpenSSH"
    root = ET.parse(xml).getroot()
    assert root.find("host/os/osmatch") is not None
    assert root.find("host/trace/hop") is not None                      # --traceroute
    assert any(s.get("id") == "ssh-hostkey" for s in root.iter("script"))  # -sC's default set
    import json
    rows = [json.loads(line) for line in (d / "a.json").read_text().splitlines()]
    assert [r["state"] for r in rows if r.get("port") == 22 and not r.get("details")] == ["open"]
    ssh = [r for r in rows if r.get("port") == 22 and r.get("details")][0]     # the detail row that follows
    assert ssh["service"]["name"] == "ssh" and ssh["os"]["family"] == "Linux"
