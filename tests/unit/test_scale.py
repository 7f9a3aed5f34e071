"""Internet-scale spaces in bounded memory: the inverse permutation, the answered-probe bitmap
over one shard's probes only (N/n bits), and a 2^48-probe space accepted with memory flat."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scanner._ext.permutation import Permutation
from scanner.engine import MAX_SHARD_PROBES, ScanConfig, Tracker
from scanner.errors import InputError
from scanner.space import ScanSpace
from scanner.states import RESULT_DTYPE
from scanner.targets import TargetSet
from scanner.techniques import SYN_SCAN, Probes

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16, 17, 1000, 65537, 1 << 20, (1 << 48) - 12345, (1 << 63) + 7])
def test_positions_invert_the_permutation(n):
    perm = Permutation(n, 99)
    rng = np.random.default_rng(n % 1000)
    pos = rng.integers(0, n, size=min(n, 2000), dtype=np.uint64) if n > 2000 else np.arange(n, dtype=np.uint64)
    elements = np.array([perm.at(int(p)) for p in pos], dtype=np.uint64)
    assert np.array_equal(perm.positions(elements), pos)
    if n <= 1000:            # a bijection: every element has exactly one position
        assert sorted(perm.positions(np.arange(n, dtype=np.uint64)).tolist()) == list(range(n))
    with pytest.raises(IndexError):
        perm.positions(np.array([n], dtype=np.uint64))


def config_of(spec, ports, shard=(1, 1), seed=5):
    targets = TargetSet.from_specs([spec], exclude_file="/dev/null", default_exclude=False)
    return ScanConfig(space=ScanSpace(targets, Probes.ports(SYN_SCAN, ports)), seed=seed, shard=shard)


def rows_for(indices):
    rows = np.zeros(len(indices), dtype=RESULT_DTYPE)
    rows["index"] = indices
    return rows


def test_tracker_holds_one_bit_per_probe_of_its_shard():
    cfg = config_of("198.18.0.0/22", [22, 80, 443], shard=(2, 7))
    start, step, count = cfg.positions()
    tracker = Tracker(cfg)
    assert tracker.size == count == -(-(1024 * 3 - 1) // 7) and len(tracker.bitmap) == (count + 7) // 8
    mine = np.concatenate(list(cfg.indices(100)))                 # bit j <-> mine[j]
    assert len(mine) == count
    other = np.concatenate(list(config_of("198.18.0.0/22", [22, 80, 443], shard=(3, 7)).indices()))
    # Replies to this shard's probes pass once; replies to another shard's probes never do.
    got = tracker.first_seen(rows_for(np.concatenate([mine[[5, 9, 5]], other[:4], mine[[9, 100]]])))
    assert got["index"].tolist() == mine[[5, 9, 100]].tolist()
    assert tracker.count == 3
    assert tracker.answered(mine[[5, 6, 100]]).tolist() == [True, False, True]
    assert not tracker.answered(other[:4]).any()
    run = tracker.answered_run(0, count)
    assert np.flatnonzero(run).tolist() == [5, 9, 100]
    assert tracker.answered_run(99, 3).tolist() == [False, True, False]
    tracker.mark(int(mine[7]))
    tracker.mark(int(other[0]))                                    # not ours: no bit
    assert tracker.count == 4 and tracker.answered_run(7, 1).tolist() == [True]
    with pytest.raises(InputError, match="resume file does not match"):
        Tracker(config_of("198.18.0.0/22", [22, 80, 443], shard=(1, 7)), np.zeros(3, dtype=np.uint8))


def test_a_shard_is_limited_not_the_space():
    cfg = config_of("0.0.0.0/0", list(range(1, 65536)), shard=(1, 1 << 32))   # ~2^48 probes
    assert cfg.space.size > 1 << 47 and cfg.positions()[2] <= 65536
    assert len(Tracker(cfg).bitmap) <= 8192
    # Beyond the cap a fixed-rate raw scan goes window by window: the bitmap stays the cap's size;
    # scans that cannot (the adaptive window, connect scans: Tracker without windowed) are refused.
    big = config_of("0.0.0.0/0", list(range(1, 65536)), shard=(1, 1 << 10))
    tracker = Tracker(big, windowed=True)
    assert tracker.windowed and len(tracker.bitmap) == MAX_SHARD_PROBES // 8
    with pytest.raises(InputError, match=r"too many .* --shard K/N, N at least"):
        Tracker(big)
    from dataclasses import replace
    from scanner.timing import Timing
    from scanner.request import ScanRequest
    with pytest.raises(InputError, match=r"too many .* without a fixed --rate"):
        replace(big, timing=Timing.from_request(ScanRequest(targets=("198.18.0.1",))))
    assert MAX_SHARD_PROBES // 8 <= 1 << 30                      # the bitmap stays under 1 GiB


def max_rss_kib(*args, stdout=None) -> int:
    """Peak RSS of `python -m scanner ARGS` (its stdout into the file stdout, or discarded)."""
    code = ("import resource, runpy, sys; sys.argv = ['scanner', *sys.argv[1:]]\n"
            "try:\n    runpy.run_module('scanner', run_name='__main__')\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    sink = open(stdout, "wb") if stdout else subprocess.DEVNULL
    r = subprocess.run([sys.executable, "-c", code, *args], stdout=sink, stderr=subprocess.PIPE,
                       text=True, env=env, timeout=120, cwd=str(ROOT))
    if stdout:
        sink.close()
    assert r.returncode == 0, r.stderr
    return int(r.stderr.strip().splitlines()[-1])


def test_the_whole_ipv4_space_times_every_port_in_flat_memory():
    """A dry run of a tiny shard of 0.0.0.0/0 x 1-65535 (2^48 probes) costs what a dry run of
    a /24 x 1 port does: nothing is sized by N."""
    small = max_rss_kib("198.18.0.0/24", "-p", "80", "-Pn", "--dry-run")
    huge = max_rss_kib("0.0.0.0/0", "-p", "1-65535", "-Pn", "--excludefile", "/dev/null", "--no-default-exclude",
                       "--dry-run", "--shard", f"1/{1 << 33}")
    assert huge < small + 40 * 1024, (small, huge)          # KiB: within 40 MiB of the tiny scan


@pytest.mark.parametrize("rate", [[], ["--rate", "100000"]])
def test_discovery_of_the_internet_before_a_port_scan_is_refused_in_one_line(rate):
    """(Discovery keeps every target's bits at once: no windows for it, adaptive or fixed rate.)"""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "scanner", "0.0.0.0/0", "-p", "80", "--excludefile", "/dev/null",
                        "--dry-run", "--shard", "1/1000", *rate], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines()[-1].startswith("scanner: error: host discovery of 3702258432 addresses")
    assert "-Pn" in r.stderr.splitlines()[-1]


@pytest.mark.parametrize("sequential", [False, True])
def test_tracker_bits_follow_the_sending_order_in_either_order(sequential):
    """Bit j is the shard's j-th probe as sent: through the inverse permutation, or with -r (no
    permutation) straight from the index; mark_all (the connect scan's verdicts) maps the same way."""
    from dataclasses import replace
    cfg = replace(config_of("198.18.0.0/24", [22, 80, 443], shard=(2, 3)), sequential=sequential)
    start, step, count = cfg.positions()
    mine = np.concatenate(list(cfg.indices(50)))
    assert len(mine) == count
    if sequential:
        assert mine.tolist() == list(range(start, cfg.space.size, step))
    other = np.concatenate(list(replace(cfg, shard=(1, 3)).indices()))
    tracker = Tracker(cfg)
    got = tracker.first_seen(rows_for(mine[[3, 40, 3]]))
    assert got["index"].tolist() == mine[[3, 40]].tolist()
    tracker.mark_all(np.concatenate([mine[[7, 200]], other[:5]]))        # other shards' probes: no bit
    assert np.flatnonzero(tracker.answered_run(0, count)).tolist() == [3, 7, 40, 200]
    assert tracker.count == 4
    assert tracker.answered(np.concatenate([mine[[3, 4, 200]], other[:2]])).tolist() == [True, False, True,
                                                                                         False, False]


# --- IPv6 hitlists: packed 16-byte rows, read in chunks ------------------------------------------

def hitlist_rows(n, seed=7):
    """n random addresses inside 2001:2::/48 as (n, 16) uint8 rows, and their text (one a line,
    every group written out in full: 40 bytes an address), both built with numpy."""
    rng = np.random.default_rng(seed)
    rows = np.zeros((n, 16), dtype=np.uint8)
    rows[:, :4] = [0x20, 0x01, 0x00, 0x02]
    rows[:, 6:] = rng.integers(0, 256, size=(n, 10), dtype=np.uint8)
    hexd = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    digits = np.empty((n, 32), dtype=np.uint8)
    digits[:, 0::2], digits[:, 1::2] = hexd[rows >> 4], hexd[rows & 15]
    text = np.full((n, 40), ord(":"), dtype=np.uint8)
    for g in range(8):
        text[:, 5 * g:5 * g + 4] = digits[:, 4 * g:4 * g + 4]
    text[:, 39] = ord("\n")
    return rows, text.tobytes()


def as_ints(targets):
    return [int.from_bytes(bytes(a), "big") for a in targets.hosts6]


def test_a_hitlist_is_parsed_sorted_and_deduplicated_as_ipaddress_says(tmp_path, monkeypatch):
    import ipaddress
    import scanner.targets as targets_mod
    monkeypatch.setattr(targets_mod, "READ_CHUNK", 64)          # many pieces, lines cut across them
    rows, text = hitlist_rows(500)
    words = [w for w in text.decode().split()]
    extra = "2001:2::1  2001:2:0:0::0001 # a comment 2001:2::99\n\t2001:2::fe00/126 ::ffff:198.18.0.1\n" \
            "2001:2::10-2001:2::12\r\n2001:2::2 "
    path = tmp_path / "hits.txt"
    path.write_text("\n".join(words[:250]) + "\n" + extra + "\n" + "\n".join(words[250:] + words[:10]))
    ts = TargetSet.from_specs([], input_file=str(path), exclude=["2001:2::11", words[3]])
    want = {int(ipaddress.IPv6Address(w)) for w in words}
    want |= {int(ipaddress.IPv6Address(a)) for a in ["2001:2::1", "2001:2::2", "::ffff:198.18.0.1",
                                                     "2001:2::10", "2001:2::12"]}
    want |= {int(a) for a in ipaddress.IPv6Network("2001:2::fe00/126")}
    want -= {int(ipaddress.IPv6Address(words[3]))}
    assert as_ints(ts) == sorted(want) and ts.count == len(want)
    assert words[5] in ts and words[3] not in ts and "2001:2::99" not in ts and "2001:2::11" not in ts
    assert ts.ranges()[:3] == [(int(ipaddress.IPv6Address(a)), int(ipaddress.IPv6Address(b)))
                               for a, b in [("::ffff:c612:1", "::ffff:c612:1"), ("2001:2::1", "2001:2::2"),
                                            ("2001:2::10", "2001:2::10")]]
    space = ScanSpace(ts, Probes.ports(SYN_SCAN, [80, 443]))
    got = space.rows(np.arange(space.size, dtype=np.uint64))       # every probe, each host twice
    assert [int.from_bytes(bytes(a), "big") for a in got["ip6"][::2]] == sorted(want)
    # a hitlist may not be mixed with IPv4, nor be larger than the cap
    with pytest.raises(InputError, match="cannot be mixed"):
        TargetSet.from_specs(["198.18.0.1"], input_file=str(path))
    monkeypatch.setattr(targets_mod, "MAX_IPV6_HOSTS", 100)
    with pytest.raises(InputError, match="more than 100 IPv6 addresses"):
        TargetSet.from_specs([], input_file=str(path))


def test_a_hitlist_keeps_special_purpose_addresses_it_names():
    """Each hitlist address names itself: 2001:2::/48 (benchmarking) is not excluded from it,
    while a prefix that merely contains a special range loses that range."""
    ts = TargetSet.from_specs(["2001:2::5", "2001:1::/126"])
    assert ts.count == 1 + 4 - 3 and "2001:2::5" in ts and "2001:1::" in ts and "2001:1::1" not in ts


def test_a_ten_million_address_hitlist_in_bounded_memory(tmp_path):
    """10M IPv6 addresses through -iL cost about their 16 bytes each (the parse buffer is the
    final array; it is sorted in place): a dry run of a tiny shard stays within 24 bytes an
    address of a one-address scan. (Python objects per address took 2.5 GB for 4M.)"""
    n = 10_000_000
    rows, text = hitlist_rows(n)
    path = tmp_path / "hitlist.txt"
    path.write_bytes(text + text[:40 * 1000])                 # 1000 repeats, dropped
    del text
    small = max_rss_kib("2001:2::1", "-p", "80", "-Pn", "--dry-run")
    out = tmp_path / "dry.txt"
    huge = max_rss_kib("-iL", str(path), "-p", "80", "-Pn", "--dry-run", "--shard", f"1/{n // 20}",
                       stdout=out)
    assert huge - small < n * 24 // 1024, (small, huge)
    lines = [ln for ln in out.read_text().splitlines() if ln.startswith("2001:")]
    assert len(lines) == 20
    import ipaddress
    listed = {bytes(r) for r in rows}
    assert all(ipaddress.IPv6Address(ln.split()[0]).packed in listed for ln in lines)


def test_a_windowed_tracker_counts_only_its_window(monkeypatch):
    """Beyond the cap (SCANNER_DEDUP_WINDOW here) the bitmap covers one window of the shard's
    probes in sending order: replies to probes outside it are not passed (late ones dropped,
    never reported twice); slide() moves it on, empty; the checkpoint is the window's bits and
    its base, so a resume file stays the window's size, compressed."""
    monkeypatch.setenv("SCANNER_DEDUP_WINDOW", "100")
    cfg = config_of("198.18.0.0/22", [22, 80, 443], shard=(2, 3))
    count = cfg.positions()[2]
    mine = np.concatenate(list(cfg.indices(100)))
    tracker = Tracker(cfg, windowed=True)
    assert tracker.windowed and tracker.bits == 100 and len(tracker.bitmap) == 13 and count == 1024
    got = tracker.first_seen(rows_for(mine[[5, 150, 5, 99, 100]]))
    assert got["index"].tolist() == mine[[5, 99]].tolist()
    tracker.slide(100)
    assert not tracker.bitmap.any()
    got = tracker.first_seen(rows_for(mine[[5, 150, 100, 150, 199, 200]]))
    assert got["index"].tolist() == mine[[150, 100, 199]].tolist()
    assert np.flatnonzero(tracker.answered_run(90, 120)).tolist() == [100 - 90, 150 - 90, 199 - 90]
    assert tracker.answered(mine[[5, 100, 101]]).tolist() == [False, True, False]
    with pytest.raises(InputError, match="too many"):
        Tracker(cfg)                                    # a scan that cannot go window by window
    from scanner.engine import StageCheckpoint
    from scanner.request import ScanRequest
    from scanner.resume import Checkpoint
    cp = Checkpoint(ScanRequest(targets=("198.18.0.0/22",)), 5, 0,
                    StageCheckpoint(1, 12, tracker.bitmap, b"k" * 16, tracker.base))
    doc = cp.to_dict()
    assert doc["checkpoint"]["base"] == 100 and len(doc["checkpoint"]["bitmap"]) < 64
    resumed = Tracker(cfg, tracker.bitmap, base=100, windowed=True)
    assert resumed.answered(mine[[100, 150, 5]]).tolist() == [True, True, False]
