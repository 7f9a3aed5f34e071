"""The UDP payload cookies against real servers from Debian's packages, in the lab's target
namespace: dnsmasq must echo the DNS id, chronyd the NTP transmit timestamp (as its origin), and
net-snmp's snmpd the SNMP request-id, in whatever encoding they choose, or their open ports would
be taken for forgeries. Servers get a temporary configuration, are started here (never by the
system) and stopped however the test ends; chronyd runs with -x (it never touches the clock).
Debian packages: dnsmasq-base, chrony, snmpd (scripts/test-packages.txt). Root."""
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from integration_helpers import make_lab, scanner_argv, scanner_env
from scanner.lab import LabSpec

pytestmark = pytest.mark.lab

TARGET = "198.18.0.1"
SERVERS = {"dnsmasq": "dnsmasq-base", "chronyd": "chrony", "snmpd": "snmpd"}


def _listening(lab, port):
    out = lab.run_target(["ss", "-Hlnu", f"sport = :{port}"], capture_output=True, text=True).stdout
    return bool(out.strip())


@contextlib.contextmanager
def servers(lab, d: Path):
    (d / "snmpd.conf").write_text("rocommunity public default\n")
    (d / "chrony.conf").write_text(f"port 123\ncmdport 0\nlocal stratum 8\nallow all\npidfile {d}/chronyd.pid\n"
                                   f"driftfile {d}/drift\n")
    argvs = {
        53: ["dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--port=53", "--user=root",
             "--group=root", f"--pid-file={d}/dnsmasq.pid", "--address=/lab.example/198.18.0.1"],
        123: ["chronyd", "-d", "-x", "-u", "root", "-f", str(d / "chrony.conf")],
        161: ["snmpd", "-f", "-Lo", "-C", "-c", str(d / "snmpd.conf"), "-M", "/dev/null", "-p", str(d / "snmpd.pid"),
              "udp:161"],
    }
    procs = []
    try:
        for port, argv in argvs.items():
            log = open(d / f"{argv[0]}.log", "w")
            procs.append(subprocess.Popen(["ip", "netns", "exec", lab.target_ns, *argv], stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                          env=dict(os.environ, SNMP_PERSISTENT_DIR=str(d))))
            log.close()
            deadline = time.monotonic() + 10
            while not _listening(lab, port):
                assert time.monotonic() < deadline, (d / f"{argv[0]}.log").read_text()[-1500:]
                time.sleep(0.1)
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


def test_real_dns_ntp_snmp_servers_echo_the_cookie():
    missing = [pkg for binary, pkg in SERVERS.items() if shutil.which(binary) is None
               and not os.path.exists(f"/usr/sbin/{binary}")]
    if missing:
        pytest.fail(f"needs {' '.join(missing)}: apt-get install -y {' '.join(missing)}", pytrace=False)
    spec = LabSpec(prefix="198.18.0.0/30", open_tcp=(), open_udp=(), drop_tcp=(), reject_tcp={})
    with tempfile.TemporaryDirectory(prefix="scanner-udp-") as tmp, make_lab(spec) as lab, servers(lab, Path(tmp)):
        r = lab.run(scanner_argv(TARGET, "-sU", "-Pn", "-p", "53,123,161,40000", "--reason", "--wait", "1",
                                 "--no-db", "-oG", "-"), capture_output=True, text=True, env=scanner_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if "Ports:" in x)
    for port, name in ((53, "domain"), (123, "ntp"), (161, "snmp")):
        assert f"{port}/open/udp//{name}" in line, (line, r.stderr)
    assert "40000/closed/udp" in line, line
    assert "suspected forgeries" not in r.stderr, r.stderr       # genuine answers: none withheld
