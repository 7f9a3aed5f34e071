"""-O without a lab: recorded SYN-ACK (and RST) signatures of other systems, scored against our
signature file; the fingerprint taken from the scan's rows."""
from __future__ import annotations

import numpy as np
import pytest

from scanner.osguess import Fingerprint, fingerprints, guess, guess_hosts, initial_ttl, load_signatures, options_text
from scanner.states import REASONS, RESULT_DTYPE, STATES

M, N, W, S, T, E = 2, 1, 3, 4, 8, 0


def fp(ttl, window, mss, wscale, kinds, df=1, rst_ttl=0, rst_window=-1):
    return Fingerprint(ttl=ttl, window=window, mss=mss, wscale=wscale, options=options_text(kinds + [0] * 8)[:],
                       df=df, port=22, rst_ttl=rst_ttl, rst_window=rst_window, closed_port=81 if rst_ttl else 0)


# (what was seen, family, vendor, words the best name must contain)
RECORDED = {
    # Debian 12, Linux 6.1, one hop away; wscale from net.ipv4.tcp_rmem
    "linux-6.1": (fp(63, 65160, 1460, 7, [M, S, T, N, W], rst_ttl=63, rst_window=0), "Linux", "Linux", "4.19 - 6.x"),
    "linux-6.x-big-rmem": (fp(64, 65160, 1460, 10, [M, S, T, N, W]), "Linux", "Linux", "4.19 - 6.x"),
    "centos-7 (3.10)": (fp(64, 28960, 1460, 7, [M, S, T, N, W]), "Linux", "Linux", "3.0 - 4.18"),
    "windows-server-2019": (fp(127, 65535, 1460, 8, [M, N, W, N, N, S], rst_ttl=127, rst_window=0),
                            "Windows", "Microsoft", "Windows 10"),
    "windows-7": (fp(128, 8192, 1460, 8, [M, N, W, N, N, S]), "Windows", "Microsoft", "Windows 7"),
    "windows-xp": (fp(128, 65535, 1460, -1, [M, N, N, S]), "Windows", "Microsoft", "XP"),
    "freebsd-14": (fp(64, 65535, 1460, 6, [M, N, W, S, T]), "BSD", "FreeBSD", "FreeBSD"),
    "macos-14": (fp(64, 65535, 1460, 6, [M, N, W, N, N, T, S, E]), "BSD", "Apple", "macOS"),
    "openbsd-7 (options cut at 8)": (fp(64, 16384, 1460, 6, [M, N, N, S, N, W, N, N]), "BSD", "OpenBSD", "OpenBSD"),
    "cisco-ios-15": (fp(254, 4128, 536, -1, [M], df=0, rst_ttl=254, rst_window=0), "IOS", "Cisco", "Cisco IOS"),
}


@pytest.mark.parametrize("name", list(RECORDED))
def test_recorded_signatures(name):
    seen, family, vendor, words = RECORDED[name]
    g = guess(seen)
    assert g is not None, name
    assert (g.family, g.vendor) == (family, vendor), (name, g)
    assert words in g.name, (name, g.name)
    assert g.accuracy >= 85, (name, g.accuracy)
    assert all(g.accuracy >= o[1] for o in g.others)


def test_network_equipment_is_a_router_or_switch():
    g = guess(RECORDED["cisco-ios-15"][0])
    assert g.type == "router" and g.cpes == ["cpe:/o:cisco:ios"]


def test_unknown_stack_is_not_forced():
    odd = fp(32, 1234, 1400, -1, [N, N, N])
    g = guess(odd)
    assert g is None or g.accuracy < 85


def test_initial_ttl_and_options_text():
    assert [initial_ttl(t) for t in (30, 33, 64, 100, 128, 200, 255)] == [32, 64, 64, 128, 128, 255, 255]
    assert options_text([2, 4, 8, 1, 3, 0, 0, 0]) == "M,S,T,N,W"
    assert options_text([2, 1, 3, 1, 1, 8, 4, 0]) == "M,N,W,N,N,T,S"
    assert options_text([2, 30, 0, 0, 0, 0, 0, 0]) == "M,?30"


def test_every_signature_is_well_formed():
    sigs = load_signatures()
    assert {s.family for s in sigs} >= {"Linux", "Windows", "BSD", "IOS"}
    assert all(s.ttl in (32, 64, 128, 255) for s in sigs)
    assert any(s.type in ("router", "switch") for s in sigs)


def _rows():
    rows = np.zeros(4, dtype=RESULT_DTYPE)
    rows["ip"] = [int.from_bytes(bytes([198, 18, 0, x]), "big") for x in (1, 1, 2, 2)]
    rows["port"] = [22, 81, 3389, 80]
    rows["proto"] = 6
    rows["state"] = [STATES["open"], STATES["closed"], STATES["open"], STATES["closed"]]
    rows["reason"] = [REASONS["syn-ack"], REASONS["reset"], REASONS["syn-ack"], REASONS["reset"]]
    rows["ttl"] = [64, 64, 127, 127]
    rows["df"] = [1, 1, 1, 0]
    rows["window"] = [65160, 0, 65535, 0]
    rows["mss"] = [1460, 0, 1460, 0]
    rows["wscale"] = [7, 0, 8, 0]
    rows["tcpopts"][0] = [M, S, T, N, W, 0, 0, 0]
    rows["tcpopts"][2] = [M, N, W, N, N, S, 0, 0]
    return rows


def test_fingerprints_from_scan_rows():
    fps = fingerprints(_rows())
    linux = fps["198.18.0.1"]
    assert (linux.ttl, linux.window, linux.mss, linux.wscale, linux.options, linux.df, linux.port) == (
        64, 65160, 1460, 7, "M,S,T,N,W", 1, 22)
    assert (linux.rst_ttl, linux.rst_window, linux.closed_port) == (64, 0, 81)
    assert fps["198.18.0.2"].options == "M,N,W,N,N,S"


def test_guess_hosts_and_service_agreement():
    from scanner.service import ServiceInfo
    services = {("198.18.0.1", "tcp", 22): ServiceInfo("ssh", "OpenSSH", ostype="Linux")}
    g = guess_hosts(_rows(), services)
    assert g["198.18.0.1"].family == "Linux" and g["198.18.0.1"].accuracy == 100
    assert g["198.18.0.2"].family == "Windows"
    d = g["198.18.0.2"].to_dict()
    assert d["fingerprint"]["initial_ttl"] == 128 and d["vendor"] == "Microsoft"


def test_osscan_guess_shows_weaker_guesses_and_limit_needs_a_closed_port():
    from scanner.osguess import GUESS_ABOVE, SHOW_ABOVE, score
    sigs = load_signatures()
    odd = fp(64, 1234, 1400, -1, [M, N, N])
    best = max(score(sig, odd) for sig in sigs)
    assert GUESS_ABOVE <= best < SHOW_ABOVE, best       # a fingerprint between the two thresholds
    assert guess(odd) is None
    weak = guess(odd, show_above=GUESS_ABOVE)           # --osscan-guess
    assert weak is not None and weak.accuracy == best
    rows = np.zeros(2, dtype=RESULT_DTYPE)
    rows["ip"] = [0xC6120005, 0xC6120006]
    rows["port"], rows["proto"], rows["ttl"], rows["window"], rows["mss"] = 22, 6, 64, 65160, 1460
    rows["state"], rows["reason"] = STATES["open"], REASONS["syn-ack"]
    rst = rows[:1].copy()
    rst["port"], rst["state"], rst["reason"], rst["window"] = 81, STATES["closed"], REASONS["reset"], 0
    both = np.concatenate([rows, rst])
    assert set(guess_hosts(both)) == {"198.18.0.5", "198.18.0.6"}
    assert set(guess_hosts(both, limit=True)) == {"198.18.0.5"}     # --osscan-limit: open and closed
