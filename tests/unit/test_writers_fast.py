"""The batch formatting of the streams (a line per distinct tail, addresses from octet tables)
writes exactly what the per-row formatting writes: CSV through the csv module, the list format,
NDJSON through json.dumps; and masscan's binary records decode back to the rows."""
import csv
import io
import ipaddress
import json

import numpy as np

from scanner.output import FORMATS, ScanInfo
from scanner.output.binary import encode, read_binary, header, TRAILER
from scanner.ports import service_name
from scanner.states import PROTO_NAMES, REASON_NAMES, RESULT_DTYPE, STATE_NAMES, STATES


def mixed_rows(n=5000, seed=3):
    rng = np.random.default_rng(seed)
    rows = np.zeros(n, dtype=RESULT_DTYPE)
    rows["ip"] = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    rows["ip"][:3] = [0, 0xFFFFFFFF, 0x0A000001]
    rows["port"] = rng.choice([0, 22, 53, 80, 443, 65535, 31337], n)
    rows["proto"] = rng.choice([6, 17, 1], n)
    rows["state"] = rng.choice(list(STATE_NAMES), n)
    rows["reason"] = rng.choice(list(REASON_NAMES), n)
    rows["ttl"] = rng.choice([0, 1, 64, 255], n)
    return rows


def written(name, rows, tmp_path):
    path = tmp_path / f"out.{name}"
    w = FORMATS[name](str(path), ScanInfo(), show_all=True)
    w.write(rows[:1000])
    w.write(rows[1000:])
    from scanner.engine import ScanSummary
    w.close(ScanSummary())
    return path.read_text()


def test_csv_batches_equal_the_csv_module_row_by_row(tmp_path):
    rows = mixed_rows()
    out = io.StringIO()
    wr = csv.writer(out, lineterminator="\n")
    wr.writerow(["ip", "port", "proto", "state", "reason", "ttl", "service"])
    for r in rows:
        proto = PROTO_NAMES[int(r["proto"])]
        wr.writerow([str(ipaddress.IPv4Address(int(r["ip"]))), int(r["port"]), proto, STATE_NAMES[int(r["state"])],
                     REASON_NAMES[int(r["reason"])], int(r["ttl"]) or "", service_name(int(r["port"]), proto)])
    assert written("csv", rows, tmp_path) == out.getvalue()


def test_list_and_ndjson_batches_equal_their_row_by_row_lines(tmp_path):
    rows = mixed_rows()
    rows = rows[rows["state"] != STATES["up"]]
    text = written("list", rows, tmp_path).splitlines()          # --show-all: every row
    assert text[0] == "#masscan" and text[-1] == "# end" and len(text) == len(rows) + 2
    assert [line.rsplit(" ", 1)[0] for line in text[1:-1]] == [
        f"{STATE_NAMES[int(r['state'])]} {PROTO_NAMES[int(r['proto'])]} {int(r['port'])} "
        f"{ipaddress.IPv4Address(int(r['ip']))}" for r in rows]
    lines = written("json", rows, tmp_path).splitlines()
    assert lines == [json.dumps({"ip": str(ipaddress.IPv4Address(int(r["ip"]))), "port": int(r["port"]),
                                 "proto": PROTO_NAMES[int(r["proto"])], "state": STATE_NAMES[int(r["state"])],
                                 "reason": REASON_NAMES[int(r["reason"])], "ttl": int(r["ttl"]) or None})
                     for r in rows]


def test_binary_records_decode_to_the_open_and_closed_rows(tmp_path):
    rows = mixed_rows(20000)
    rows["reason"] = np.where(rows["state"] == STATES["closed"], 2, 1)
    rows["proto"] = 6
    path = tmp_path / "x.bin"
    path.write_bytes(header(1700000000) + encode(rows[:7000], 1700000001) + encode(rows[7000:], 1700000002) + TRAILER)
    start, batches = read_binary(str(path), batch=1000)
    got = np.concatenate(list(batches))
    keep = rows[np.isin(rows["state"], [STATES["open"], STATES["closed"]])]
    assert start == 1700000000 and len(got) == len(keep)
    for field in ("ip", "port", "proto", "state", "reason", "ttl"):
        assert np.array_equal(got[field], keep[field]), field


def test_readscan_bad_files_are_one_line_errors(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    text = tmp_path / "text.txt"
    text.write_text("not masscan\n" * 20)
    good = tmp_path / "good.bin"
    rows = mixed_rows(10)
    rows["state"], rows["proto"] = STATES["open"], 6
    good.write_bytes(header(1700000000) + encode(rows, 1700000001) + TRAILER)
    cut = tmp_path / "cut.bin"
    cut.write_bytes(good.read_bytes()[:99 + 15 * 3 + 7])
    junk = tmp_path / "junk.bin"
    junk.write_bytes(header(1) + bytes([99, 3, 1, 2, 3]))
    for args, message in [([str(tmp_path / "missing")], "cannot read --readscan file"),
                          ([str(text)], "is not a masscan binary file"),
                          ([str(cut)], "ends in the middle of a record"),
                          ([str(junk)], "unknown record type 99"),
                          ([str(good), "-oJ"], "")]:
        out = [] if args[-1] == "-oJ" else ["-oJ", str(tmp_path / "o.ndjson")]
        r = subprocess.run([sys.executable, "-m", "scanner", "--readscan", *args, *out], capture_output=True,
                           text=True, env=env, timeout=60)
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and message in r.stderr, (args, r.stderr)
    r = subprocess.run([sys.executable, "-m", "scanner", "--readscan", str(good), "-oL", "-"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 10 + 2, r.stderr
