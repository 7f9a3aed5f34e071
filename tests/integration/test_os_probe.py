"""-O's extra probe: when the scan saw no closed port on a host, one SYN to a closed port gives
the OS guess the RST it also weighs (TTL, window, DF), as nmap's closed-port probe does. (The
built-in guess, --os-db builtin; nmap's database is tests/integration/test_os_nmapdb.py.)"""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from conftest import make_lab, require_lab_tools, scanner_argv, scanner_env


@pytest.mark.lab
def test_os_guess_gets_a_closed_port(tmp_path):
    require_lab_tools()
    from scanner.lab import LabSpec
    from scanner.osguess import CLOSED_PROBE_PORT
    out = tmp_path / "os.xml"
    with make_lab(LabSpec(prefix="198.18.0.0/32", open_tcp=(22, 80))) as lab:
        r = lab.run(scanner_argv("198.18.0.0", "-Pn", "-O", "-p", "22,80", "-oX", out, "--no-db", "--wait", "1",
                                "--os-db", "builtin"),
                    capture_output=True, text=True, env=scanner_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    host = ET.parse(out).getroot().find("host")
    ports = {int(p.get("portid")): p.find("state").get("state") for p in host.iter("port")}
    assert ports == {22: "open", 80: "open"}            # the extra probe is not a port result
    used = {(u.get("state"), int(u.get("portid"))) for u in host.iter("portused")}
    assert ("closed", CLOSED_PROBE_PORT) in used, used
    match = host.find("os/osmatch")
    assert match is not None and "Linux" in match.get("name"), ET.tostring(host, encoding="unicode")
