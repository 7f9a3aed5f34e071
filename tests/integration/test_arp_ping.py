"""Host discovery on the local Ethernet link: ARP, as nmap does it by default there (-PR),
compared with nmap on the lab's link; then the port scan of a neighbour, whose frames the
kernel addresses (each neighbour has its own MAC)."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from conftest import make_lab, require_lab_tools, scan, scanner_argv, scanner_env

NEIGHBOUR = "198.19.255.2"       # the target namespace's address on the lab's link


@pytest.fixture(scope="module")
def lab():
    require_lab_tools()
    from scanner.lab import LabSpec
    with make_lab(LabSpec(prefix="198.18.0.0/30", open_tcp=(22, 80))) as the_lab:
        yield the_lab


def status(xml_text: str) -> dict:
    root = ET.fromstring(xml_text)
    return {h.find("address").get("addr"): (h.find("status").get("state"), h.find("status").get("reason"))
            for h in root.iter("host")}


@pytest.mark.lab
def test_arp_ping_matches_nmap(lab, tmp_path):
    nmap = lab.run(["nmap", "-sn", "-n", "-oX", "-", NEIGHBOUR], capture_output=True, text=True, timeout=60)
    assert nmap.returncode == 0, nmap.stderr
    out = tmp_path / "ours.xml"
    ours = lab.run(scanner_argv(NEIGHBOUR, "-sn", "-oX", out, "--no-db", "--wait", "1"), capture_output=True,
                   text=True, env=scanner_env(), timeout=60)
    assert ours.returncode == 0, ours.stderr
    assert status(nmap.stdout)[NEIGHBOUR] == ("up", "arp-response")
    assert status(out.read_text())[NEIGHBOUR] == ("up", "arp-response")


@pytest.mark.lab
def test_port_scan_of_a_neighbour(lab):
    proc, got = scan(lab, [NEIGHBOUR, "-p", "22,23,80", "--wait", "1"])
    assert "host discovery: 1 of 1 hosts up" in proc.stderr, proc.stderr
    assert got == {(NEIGHBOUR, 22): ("open", "syn-ack"), (NEIGHBOUR, 80): ("open", "syn-ack"),
                   (NEIGHBOUR, 23): ("closed", "reset")}


@pytest.mark.lab
def test_arp_ping_needs_the_link(lab):
    r = lab.run(scanner_argv("198.18.0.1", "-sn", "-PR", "--no-db"), capture_output=True, text=True,
                env=scanner_env(), timeout=60)
    assert r.returncode == 2 and "local Ethernet link" in r.stderr, r.stderr
