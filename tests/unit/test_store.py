"""The SQLite result store: recording batch by batch, reading back, history and diff."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from scanner.engine import ScanSummary
from scanner.errors import InputError
from scanner.output import ScanInfo
from scanner.store import Recorder, Store, default_path, diff_lines, diff_rows, history_lines, scan_info, summary_of

from test_output import LOCAL, OTHER, make_rows

INFO = ScanInfo(start=1_700_000_000.0, command="scanner 127.0.0.1 -p 22,80", ports=(22, 80), n_hosts=1)


def record(store, rows, summary=None, info=INFO):
    rec = Recorder(store, info, {"scan_type": "syn", "ports": "22,80", "n_hosts": info.n_hosts})
    for part in np.array_split(rows, 2):
        rec.write(part)
    rec.close(summary or ScanSummary(elapsed=1.25, states={"open": 1}))
    return rec.scan_id


def test_default_path(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_path() == tmp_path / "scanner" / "scans.db"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_path() == tmp_path / ".local" / "share" / "scanner" / "scans.db"


def test_round_trip(tmp_path):
    store = Store(tmp_path / "sub" / "scans.db")
    rows = make_rows([(LOCAL, 80, "open", "syn-ack", 64), (LOCAL, 22, "closed", "reset", 64)])
    sid = record(store, rows)
    r = store.scan(sid)
    assert r.command == INFO.command and r.started == INFO.start and r.ended and not r.interrupted
    assert r.counters["elapsed"] == 1.25 and summary_of(r).states == {"open": 1}
    assert scan_info(r).ports == (22, 80) and scan_info(r).scan_type == "syn"
    back = store.rows(sid)
    assert back[["ip", "port", "state", "reason", "ttl"]].tolist() == \
        np.sort(rows, order=["ip", "port"])[["ip", "port", "state", "reason", "ttl"]].tolist()
    # plain SQL sees readable names
    db = sqlite3.connect(tmp_path / "sub" / "scans.db")
    assert db.execute("SELECT state, reason FROM results WHERE port=80").fetchone() == ("open", "syn-ack")


def test_results_are_there_before_the_scan_ends(tmp_path):
    store = Store(tmp_path / "s.db")
    rec = Recorder(store, INFO, {})
    rec.write(make_rows([(LOCAL, 80, "open", "syn-ack", 64)]))
    other = sqlite3.connect(tmp_path / "s.db")     # e.g. after a crash: already committed
    assert other.execute("SELECT COUNT(*) FROM results").fetchone() == (1,)
    assert other.execute("SELECT ended FROM scans").fetchone() == (None,)
    assert summary_of(store.scan(rec.scan_id)).interrupted


def test_scan_refs_and_history(tmp_path):
    store = Store(tmp_path / "s.db")
    a = record(store, make_rows([(LOCAL, 80, "open", "syn-ack", 64)]))
    b = record(store, make_rows([(LOCAL, 80, "closed", "reset", 64)]))
    assert store.scan("last").id == b and store.scan(-2).id == a and store.scan(str(a)).id == a
    with pytest.raises(InputError, match="no scan 99"):
        store.scan(99)
    with pytest.raises(InputError, match="bad scan id"):
        store.scan("x")
    lines = history_lines(store)
    assert lines[0].split()[:2] == ["ID", "STARTED"] and lines[1].split()[0] == str(b)
    assert len(lines) == 3 and INFO.command in lines[1]
    assert history_lines(store, 1)[1:] == lines[1:2]


def test_missing_database_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no scan database"):
        Store(tmp_path / "none.db", create=False)
    with pytest.raises(InputError, match="cannot use the scan database"):
        Store(tmp_path)                      # a directory


def test_diff():
    a = make_rows([(LOCAL, 22, "open", "syn-ack", 64), (LOCAL, 80, "open", "syn-ack", 64),
                   (LOCAL, 443, "closed", "reset", 64), (OTHER, 22, "open", "syn-ack", 64)])
    b = make_rows([(LOCAL, 22, "open", "syn-ack", 64), (LOCAL, 80, "closed", "reset", 64),
                   (LOCAL, 8080, "open", "syn-ack", 64), (OTHER, 22, "filtered", "no-response", 0)])
    d = diff_rows(a, b)
    assert d.changed == [("127.0.0.1", 80, "tcp", "open", "closed"), ("127.0.0.2", 22, "tcp", "open", "filtered")]
    assert d.new_ports == [("127.0.0.1", 8080, "tcp", "open")]
    assert d.gone_ports == [("127.0.0.1", 443, "tcp", "closed")]
    assert d.gone_hosts == ["127.0.0.2"] and d.new_hosts == []
    assert diff_rows(a, a).empty


def test_diff_lines(tmp_path):
    store = Store(tmp_path / "s.db")
    a = store.scan(record(store, make_rows([(LOCAL, 80, "open", "syn-ack", 64)])))
    b = store.scan(record(store, make_rows([(LOCAL, 80, "closed", "reset", 64), (OTHER, 22, "open", "syn-ack", 9)])))
    text = "\n".join(diff_lines(a, b, diff_rows(store.rows(a.id), store.rows(b.id))))
    assert "-80/tcp open http\n+80/tcp closed http" in text
    assert "+127.0.0.2: host up (new)\n+22/tcp open ssh" in text
    assert "1 new hosts, 0 gone; 1 new ports, 0 gone, 1 changed state" in text


def test_recorder_failure_is_kept_not_raised(tmp_path):
    store = Store(tmp_path / "s.db")
    rec = Recorder(store, INFO, {})
    store.db.close()                         # any sqlite failure, e.g. the disk filling up
    rec.write(make_rows([(LOCAL, 80, "open", "syn-ack", 64)]))
    rec.close(ScanSummary())
    assert rec.error and f"scan {rec.scan_id}" in rec.error


def test_unanswered_probes_only_counted_unless_asked(tmp_path):
    store = Store(tmp_path / "s.db")
    rows = make_rows([(LOCAL, 80, "open", "syn-ack", 64), (LOCAL, 81, "filtered", "no-response", 0)])
    lean = Recorder(store, INFO, {}, unanswered=False)
    lean.write(rows)
    full = Recorder(store, INFO, {})
    full.write(rows)
    assert store.rows(lean.scan_id)["port"].tolist() == [80]
    assert store.rows(full.scan_id)["port"].tolist() == [80, 81]
