"""Memory bounded by design: a -Pn scan into nmap's XML does not hold a row per probe of the hosts
that never answered (they are made one at a time when the XML is written), yet the XML says the
same as when every probe is listed."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from conftest import make_lab, require_lab_tools, scanner_argv, scanner_env

PREFIX = "198.18.0.0/18"            # 16384 hosts: above the terminal table's 4096
LIVE_EVERY = 1 << 10


def host_states(path) -> dict:
    """{address: {port: state}} with nmap's folded ports (extraports) unfolded."""
    out = {}
    for h in ET.parse(path).getroot().iter("host"):
        states = {int(p.get("portid")): p.find("state").get("state") for p in h.iter("port")}
        for extra in h.iter("extraports"):
            for why in extra.iter("extrareasons"):
                for part in why.get("ports").split(","):
                    lo, _, hi = part.partition("-")
                    states.update({port: extra.get("state") for port in range(int(lo), int(hi or lo) + 1)})
        out[h.find("address").get("addr")] = states
    return out


@pytest.mark.lab
def test_pn_into_xml_holds_no_row_per_silent_probe(tmp_path):
    require_lab_tools()
    from scanner.lab import LabSpec
    with make_lab(LabSpec(prefix=PREFIX, live_every=LIVE_EVERY, open_tcp=(22, 80))) as lab:
        peaks = {}
        for name, extra in (("late", []), ("listed", ["--show-all"])):
            r = lab.run(["/usr/bin/time", "-f", "peak %M", *scanner_argv(
                PREFIX, "-Pn", "-p", "1-30", "--rate", "0", "--retries", "0", "--wait", "1", "--seed", "3",
                "-oX", str(tmp_path / f"{name}.xml"), "--no-db", "-q", *extra)],
                capture_output=True, text=True, env=scanner_env(), timeout=300)
            assert r.returncode == 0, r.stderr
            peaks[name] = int(r.stderr.split("peak ")[-1])
    late, listed = host_states(tmp_path / "late.xml"), host_states(tmp_path / "listed.xml")
    assert len(late) == 1 << 14 and late == listed
    live = [a for a, ports in late.items() if ports.get(22) == "open"]
    assert len(live) == (1 << 14) // LIVE_EVERY
    assert all(set(late[a].values()) == {"filtered"} for a in late if a not in live)
    # 491,520 probes: listing them costs a few hundred bytes each; the late view costs nothing per probe.
    assert peaks["late"] < peaks["listed"] - 60_000, peaks
