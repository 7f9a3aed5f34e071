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
