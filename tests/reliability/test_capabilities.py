"""Raw-scan permission follows the capabilities, not the uid (scanner/privileges.py). Root."""
import os
import subprocess
import sys

from integration_helpers import require_root


def test_root_without_cap_net_raw_and_user_with_it():
    """Root without CAP_NET_RAW (dropped with setpriv) may not raw-scan although its uid is 0;
    a non-root user holding CAP_NET_RAW (ambient) may. Each answer checked against the kernel:
    whether a raw socket opens in that process."""
    require_root("dropping and granting capabilities")
    code = ("import socket\nfrom scanner.privileges import can_raw_scan\n"
            "try:\n    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP).close(); ok = True\n"
            "except PermissionError:\n    ok = False\nprint(can_raw_scan(), ok)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    dropped = subprocess.run(["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw", "--",
                              sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert dropped.returncode == 0, dropped.stderr
    assert dropped.stdout.split() == ["False", "False"]
    granted = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              "--inh-caps=+net_raw", "--ambient-caps=+net_raw", "--",
                              sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert granted.returncode == 0, granted.stderr
    assert granted.stdout.split() == ["True", "True"]


def test_the_scan_follows_the_capabilities():
    """End to end on loopback: nobody with CAP_NET_RAW runs a SYN scan; root without it gets the
    one-line error before anything is sent."""
    require_root("dropping and granting capabilities")
    scan = [sys.executable, "-m", "scanner", "127.0.0.1", "-sS", "-p", "22,80", "--no-db", "-oJ", "-", "-q"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    granted = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              "--inh-caps=+net_raw,+net_admin", "--ambient-caps=+net_raw,+net_admin", "--", *scan],
                             capture_output=True, text=True, env=env, cwd="/", timeout=60)
    assert granted.returncode == 0, granted.stderr
    assert {line.split('"port": ')[1].split(",")[0] for line in granted.stdout.splitlines()} == {"22", "80"}
    dropped = subprocess.run(["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw", "--", *scan],
                             capture_output=True, text=True, env=env, cwd="/", timeout=60)
    assert dropped.returncode == 2 and dropped.stdout == ""
    assert dropped.stderr.startswith("scanner: error: -sS sends raw packets and needs root (or CAP_NET_RAW)")
