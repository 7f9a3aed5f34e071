"""The web GUI's read side: the result store queried in SQL, paged and filtered in the database so
that a scan of 100,000 hosts stays fast (one page of hosts is read, never the whole scan).

Filters (hosts and ports tables) and searches (saved scans) share Zenmap's search keys:
  target:ADDR  open:PORT  closed:PORT  filtered:PORT  scanned:PORT  service:NAME  os:TEXT
  state:STATE  date:YYYY-MM-DD|-N  after:DATE|-N  before:DATE|-N  option:TEXT  and plain words."""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import sqlite3
import time
from array import array
from functools import lru_cache
from pathlib import Path
from typing import Optional

from ..errors import InputError
from ..ports import service_name
from ..store import Store, diff_rows

MAX_LIMIT = 1000


@lru_cache(maxsize=65536)
def _ipkey(text: str) -> bytes:
    """A sort key that orders addresses numerically (IPv4 before IPv6)."""
    try:
        a = ipaddress.ip_address(text)
    except ValueError:
        return b"\xff" + text.encode()
    return bytes([a.version]) + a.packed


def _svc(port, proto) -> str:
    return service_name(int(port), proto)


def connect(path) -> sqlite3.Connection:
    """A connection for one request (sqlite3 connections are not shared between threads)."""
    path = Path(path)
    if not path.exists():           # a fresh server: an empty store, as `scanner` would create it
        Store(path).close()
    db = sqlite3.connect(str(path), timeout=30)
    db.execute("PRAGMA query_only=ON")
    db.create_function("ipkey", 1, _ipkey, deterministic=True)
    db.create_function("svc", 2, _svc, deterministic=True)
    return db


def page_args(offset, limit, default: int = 100) -> tuple:
    try:
        offset = int(offset or 0)
        limit = int(limit or default)
    except ValueError:
        raise InputError("offset and limit must be whole numbers") from None
    if offset < 0 or not 0 < limit <= MAX_LIMIT:
        raise InputError(f"offset must be >= 0 and limit between 1 and {MAX_LIMIT}")
    return offset, limit


# ------------------------------------------------------------------ scans

def _status(ended, counters: dict, interrupted: bool, running: bool) -> str:
    if running:
        return "running"
    if interrupted:
        return "interrupted"
    return "done" if ended is not None else "unfinished"


_MEMO: dict = {}     # (database, scan id, what) -> (version of the scan's results, value)


def memo(db, scan_id: int, what: str, compute):
    """compute() once per version of a scan's results (its end time and row count), so that
    reading a large finished scan again costs an index count, not a pass over its rows."""
    key = (db.execute("PRAGMA database_list").fetchone()[2], scan_id, what)
    ended = db.execute("SELECT ended FROM scans WHERE id=?", (scan_id,)).fetchone()
    version = (ended[0] if ended else None,
               db.execute("SELECT COUNT(*) FROM results WHERE scan_id=?", (scan_id,)).fetchone()[0])
    hit = _MEMO.get(key)
    if hit is not None and hit[0] == version:
        return hit[1]
    value = compute()
    _MEMO[key] = (version, value)
    if len(_MEMO) > 256:
        _MEMO.pop(next(iter(_MEMO)))
    return value


def scan_summary(db, row, running=frozenset()) -> dict:
    sid, started, ended, command, config, counters, interrupted = row
    config = json.loads(config or "{}")
    counters = json.loads(counters or "{}")
    up, n_open = memo(db, sid, "counts", lambda: db.execute(
        "SELECT COUNT(DISTINCT CASE WHEN reason!='no-response' THEN ip END), "
        "SUM(state='open') FROM results WHERE scan_id=?", (sid,)).fetchone())
    return {"id": sid, "started": started, "ended": ended, "command": command,
            "targets": targets_of(command, config), "n_hosts": config.get("n_hosts"),
            "ports": config.get("ports"), "scan_type": config.get("scan_type"),
            "status": _status(ended, counters, bool(interrupted), sid in running),
            "elapsed": counters.get("elapsed", (ended or time.time()) - started),
            "hosts_up": up or 0, "open": n_open or 0, "states": counters.get("states", {})}


def targets_of(command: str, config: dict) -> str:
    """The targets as typed: the command's words that are neither options nor their values."""
    if config.get("targets"):
        return " ".join(config["targets"])
    import shlex
    try:
        words = shlex.split(command)[1:]
    except ValueError:
        return ""
    flags_with_value = {"-p", "--top-ports", "-iL", "--exclude", "--excludefile", "--scanflags", "-PS", "-PA",
                        "-PU", "--max-parallelism", "--rate", "--retries", "--max-udp-rounds", "--wait",
                        "--seed", "--shard", "-e", "--interface", "-oJ", "-oN", "-oX", "-oG", "--csv", "-oL",
                        "-oA", "--db", "--stats-every", "--version-intensity", "--service-db"}
    out, skip = [], False
    for w in words:
        if skip:
            skip = False
        elif w in flags_with_value:
            skip = True
        elif not w.startswith("-"):
            out.append(w)
    return " ".join(out)


SCAN_COLUMNS = "id, started, ended, command, config, counters, interrupted"


def list_scans(db, running=frozenset(), where: str = "", params=()) -> list:
    rows = db.execute(f"SELECT {SCAN_COLUMNS} FROM scans s {where} ORDER BY id DESC", params).fetchall()
    return [scan_summary(db, r, running) for r in rows]


def require_scan(db, scan_id: int) -> int:
    if db.execute("SELECT 1 FROM scans WHERE id=?", (scan_id,)).fetchone() is None:
        raise LookupError(f"no scan {scan_id}")
    return scan_id


def get_scan(db, scan_id, running=frozenset()) -> dict:
    try:
        sid = int(scan_id)
    except (TypeError, ValueError):
        raise InputError(f"bad scan id '{scan_id}'") from None
    row = db.execute(f"SELECT {SCAN_COLUMNS} FROM scans WHERE id=?", (sid,)).fetchone()
    if row is None:
        raise LookupError(f"no scan {sid}")
    return scan_summary(db, row, running)


# ------------------------------------------------------------------ filter / search terms

TERM = re.compile(r'(\w[\w|]*):("[^"]*"|\S*)|("[^"]*"|\S+)')
PORT_KEYS = {"open": "state='open'", "closed": "state='closed'", "filtered": "state='filtered'",
             "unfiltered": "state='unfiltered'", "open|filtered": "state='open|filtered'",
             "closed|filtered": "state='closed|filtered'", "scanned": "1"}


def parse_terms(text: str) -> list:
    """[(key or '', value)]: Zenmap's 'key:value' terms and plain words."""
    out = []
    for key, value, word in TERM.findall(text or ""):
        if key:
            out.append((key.lower(), value.strip('"')))
        else:
            out.append(("", word.strip('"')))
    return [(k, v) for k, v in out if v]


def _ports_of(value: str) -> list:
    try:
        out: list = []
        for part in value.split(","):
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
        return out[:65536]
    except ValueError:
        raise InputError(f"bad port list '{value}'") from None


def _date(value: str, now: Optional[float] = None) -> tuple:
    """(start, end) epoch seconds of a day: YYYY-MM-DD, or -N for N days ago (Zenmap's date:-N)."""
    now = now or time.time()
    today = dt.datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
    try:
        if re.fullmatch(r"-\d+", value):
            day = today - dt.timedelta(days=int(value[1:]))
        else:
            day = dt.datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise InputError(f"bad date '{value}': YYYY-MM-DD or -N (N days ago)") from None
    return day.timestamp(), (day + dt.timedelta(days=1)).timestamp()


def _ip_match(value: str, col: str = "ip") -> tuple:
    """SQL (on column col) and params for an address, a CIDR block or a prefix of its text."""
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return f"{col} LIKE ?", [value.replace("*", "%") + ("" if "*" in value else "%")]
    if net.num_addresses == 1:
        return f"{col} = ?", [str(net.network_address)]
    if net.version == 4 and net.prefixlen % 8 == 0:     # 198.51.100.0/24: a prefix of the text, on the index
        octets = str(net.network_address).split(".")[:net.prefixlen // 8]
        return f"{col} LIKE ?", [".".join(octets) + ".%" if octets else "%.%"]
    lo, hi = _ipkey(str(net.network_address)), _ipkey(str(net.broadcast_address))
    return f"ipkey({col}) BETWEEN ? AND ?", [lo, hi]


def scan_conditions(terms: list) -> tuple:
    """WHERE conditions on scans s (saved-scan search)."""
    conds, params = [], []
    for key, value in terms:
        if key in ("", "keyword"):
            sub, p = _ip_match(value) if _looks_like_ip(value) else ("0", [])
            conds.append(f"(s.command LIKE ? OR EXISTS (SELECT 1 FROM results WHERE scan_id=s.id AND {sub}))")
            params += [f"%{value}%"] + p
        elif key in ("target", "host"):
            sub, p = _ip_match(value)
            conds.append(f"(EXISTS (SELECT 1 FROM results WHERE scan_id=s.id AND reason!='no-response' AND {sub})"
                         " OR s.command LIKE ?)")
            params += p + [f"%{value}%"]
        elif key in PORT_KEYS:
            ports = _ports_of(value)
            conds.append(f"EXISTS (SELECT 1 FROM results WHERE scan_id=s.id AND {PORT_KEYS[key]} AND port IN "
                         f"({','.join('?' * len(ports))}))")
            params += ports
        elif key == "service":
            conds.append("(EXISTS (SELECT 1 FROM results WHERE scan_id=s.id AND state='open' AND svc(port, proto) "
                         "LIKE ?) OR EXISTS (SELECT 1 FROM details WHERE scan_id=s.id AND kind='service' AND "
                         "data LIKE ?))")
            params += [f"%{value}%", f'%"{value}%']
        elif key == "os":
            conds.append("EXISTS (SELECT 1 FROM details WHERE scan_id=s.id AND kind='os' AND data LIKE ?)")
            params.append(f"%{value}%")
        elif key == "date":
            lo, hi = _date(value)
            conds.append("s.started >= ? AND s.started < ?")
            params += [lo, hi]
        elif key == "after":
            conds.append("s.started >= ?")
            params.append(_date(value)[0])
        elif key == "before":
            conds.append("s.started < ?")
            params.append(_date(value)[0])
        elif key in ("option", "profile", "in"):
            conds.append("s.command LIKE ?")
            params.append(f"%{value}%")
        else:
            raise InputError(f"unknown search key '{key}:' (target: os: open: closed: filtered: scanned: "
                             "service: date: after: before: option:)")
    return conds, params


def _looks_like_ip(value: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-fA-F:.]+(/\d+)?|[\d.]+\*", value)) and any(c in value for c in ".:")


def search(db, q: str, running=frozenset()) -> list:
    conds, params = scan_conditions(parse_terms(q))
    return list_scans(db, running, ("WHERE " + " AND ".join(conds)) if conds else "", params)


def row_conditions(terms: list, scan_id: int, per_host: bool) -> tuple:
    """WHERE conditions on results r of one scan: per row (ports table), or per host: the host has
    such a row (hosts table)."""
    conds, params = [], []

    def add(sql, p):
        if per_host:
            conds.append(f"EXISTS (SELECT 1 FROM results x WHERE x.scan_id=? AND x.ip=r.ip AND {sql})")
            params.extend([scan_id] + p)
        else:
            conds.append(sql)
            params.extend(p)

    for key, value in terms:
        if key in PORT_KEYS:
            ports = _ports_of(value)
            add(f"{PORT_KEYS[key]} AND port IN ({','.join('?' * len(ports))})", ports)
        elif key == "port":
            ports = _ports_of(value)
            add(f"port IN ({','.join('?' * len(ports))})", ports)
        elif key == "state":
            add("state = ?", [value])
        elif key == "reason":
            add("reason = ?", [value])
        elif key == "proto":
            add("proto = ?", [value])
        elif key == "service":
            add("(svc(port, proto) LIKE ? OR EXISTS (SELECT 1 FROM details d WHERE d.scan_id=? AND d.addr=ip "
                "AND d.port=port AND d.data LIKE ?))", [f"%{value}%", scan_id, f"%{value}%"])
        elif key == "os":
            conds.append("EXISTS (SELECT 1 FROM details d WHERE d.scan_id=? AND d.addr=r.ip AND d.kind='os' "
                         "AND d.data LIKE ?)")
            params += [scan_id, f"%{value}%"]
        elif key in ("target", "host", ""):
            if key == "" and value.isdigit() and int(value) < 65536 and not per_host:
                conds.append("(port = ? OR ip LIKE ?)")
                params += [int(value), f"{value}%"]
            elif key == "" and not _looks_like_ip(value) and not value.isdigit():
                add("(state = ? OR svc(port, proto) LIKE ? OR EXISTS (SELECT 1 FROM details d WHERE "
                    "d.scan_id=? AND d.addr=ip AND d.port=port AND d.data LIKE ?))",
                    [value, f"%{value}%", scan_id, f"%{value}%"])
            else:
                sql, p = _ip_match(value, "r.ip")
                conds.append(sql)
                params += p
        else:
            raise InputError(f"unknown filter key '{key}:' (open: closed: filtered: port: state: reason: "
                             "service: os: target:)")
    return conds, params


# ------------------------------------------------------------------ one scan

def _details(db, scan_id: int, ips: list) -> tuple:
    """({(ip, proto, port): service dict}, {ip: os dict}) for these hosts."""
    services, oses = {}, {}
    for i in range(0, len(ips), 500):
        chunk = ips[i:i + 500]
        for addr, proto, port, kind, data in db.execute(
                f"SELECT addr, proto, port, kind, data FROM details WHERE scan_id=? AND addr IN "
                f"({','.join('?' * len(chunk))})", [scan_id] + chunk):
            if kind == "service":
                services[(addr, proto, port)] = json.loads(data)
            elif kind == "os":
                oses[addr] = json.loads(data)
    return services, oses


def _port(row, services) -> dict:
    ip, port, proto, state, reason, ttl = row
    d = {"ip": ip, "port": port, "proto": proto, "state": state, "reason": reason, "ttl": ttl,
         "service": service_name(port, proto)}
    s = services.get((ip, proto, port))
    if s:
        d["service"] = s.get("name") or d["service"]
        d["product"] = s.get("product", "")
        d["version"] = s.get("version", "")
        d["extrainfo"] = s.get("extrainfo", "")
        d["tunnel"] = s.get("tunnel", "")
        if s.get("scripts"):
            d["scripts"] = s["scripts"]
    return d


def host_order(db, scan_id: int) -> tuple:
    """({ip: rank}, [ips]) of a scan's hosts in address order."""
    def compute():
        ips = sorted((r[0] for r in db.execute("SELECT DISTINCT ip FROM results WHERE scan_id=?", (scan_id,))),
                     key=_ipkey)
        return {ip: i for i, ip in enumerate(ips)}, ips
    return memo(db, scan_id, "hosts", compute)


def hosts_page(db, scan_id: int, offset: int = 0, limit: int = 100, text: str = "",
               all_ports: bool = False) -> dict:
    """One page of a scan's hosts in address order, each with its answered ports and OS guess."""
    conds, params = row_conditions(parse_terms(text), scan_id, per_host=True)
    rank, ordered = host_order(db, scan_id)
    if conds:
        where = "r.scan_id=?" + "".join(f" AND {c}" for c in conds)
        ordered = sorted((r[0] for r in db.execute(f"SELECT DISTINCT r.ip FROM results r WHERE {where}",
                                                   [scan_id] + params)), key=rank.__getitem__)
    total = len(ordered)
    ips = ordered[offset:offset + limit]
    services, oses = _details(db, scan_id, ips)
    items = {ip: {"ip": ip, "up": False, "ports": [], "counts": {}, "os": oses.get(ip)} for ip in ips}
    for i in range(0, len(ips), 500):
        chunk = ips[i:i + 500]
        for row in db.execute(
                f"SELECT ip, port, proto, state, reason, ttl FROM results WHERE scan_id=? AND ip IN "
                f"({','.join('?' * len(chunk))}) ORDER BY port, proto", [scan_id] + chunk):
            h = items[row[0]]
            if row[4] != "no-response":
                h["up"] = True
            if row[3] == "up":
                h["reason"] = row[4]
                continue
            h["counts"][row[3]] = h["counts"].get(row[3], 0) + 1
            if all_ports or row[4] != "no-response":
                h["ports"].append(_port(row, services))
    return {"total": total, "offset": offset, "limit": limit, "items": [items[ip] for ip in ips]}


def ports_page(db, scan_id: int, offset: int = 0, limit: int = 100, text: str = "") -> dict:
    conds, params = row_conditions(parse_terms(text), scan_id, per_host=False)
    where = "r.scan_id=? AND r.state!='up'" + "".join(f" AND {c}" for c in conds)
    args = [scan_id] + params
    rank, _ = host_order(db, scan_id)

    def ordered() -> array:
        keys = db.execute(f"SELECT ip, proto, port, rowid FROM results r WHERE {where}", args).fetchall()
        keys.sort(key=lambda k: (rank[k[0]], k[1], k[2]))
        return array("q", [k[3] for k in keys])
    rowids = ordered() if conds else memo(db, scan_id, "ports", ordered)
    total = len(rowids)
    chosen = list(rowids[offset:offset + limit])
    by_rowid = {r[0]: r[1:] for r in db.execute(
        f"SELECT rowid, ip, port, proto, state, reason, ttl FROM results WHERE rowid IN ({','.join('?' * len(chosen))})",
        chosen)}
    rows = [by_rowid[i] for i in chosen]
    services, _ = _details(db, scan_id, sorted({r[0] for r in rows}))
    return {"total": total, "offset": offset, "limit": limit, "items": [_port(r, services) for r in rows]}


def host_detail(db, scan_id: int, ip: str) -> dict:
    page = hosts_page(db, scan_id, 0, 1, f"target:{ip}", all_ports=True)
    if not page["items"]:
        raise LookupError(f"no host {ip} in scan {scan_id}")
    host = page["items"][0]
    host["scan"] = scan_id
    # The same host in the other scans, newest first (Zenmap's host history).
    host["seen_in"] = [r[0] for r in db.execute(
        "SELECT DISTINCT scan_id FROM results WHERE ip=? AND reason!='no-response' ORDER BY scan_id DESC LIMIT 50",
        (ip,))]
    return host


def stats(db, scan_id: int, cells: int = 1024) -> dict:
    """Charts of one scan: ports by state, open ports by service, and a heat map of the IPv4
    address space scanned (blocks of addresses, each with its hosts up and open ports)."""
    return memo(db, scan_id, f"stats{cells}", lambda: _stats(db, scan_id, cells))


def _stats(db, scan_id: int, cells: int) -> dict:
    states = dict(db.execute("SELECT state, COUNT(*) FROM results WHERE scan_id=? AND state!='up' GROUP BY state",
                             (scan_id,)).fetchall())
    # Open ports by service: what -sV found where it ran, else the services table's name.
    by_service: dict = {}
    found: dict = {}
    for port, proto, data in db.execute("SELECT port, proto, data FROM details WHERE scan_id=? AND kind='service'",
                                        (scan_id,)):
        d = json.loads(data)
        name = (d.get("tunnel") + "/" if d.get("tunnel") else "") + d.get("name", "unknown")
        key = f"{name} ({port}/{proto})"
        by_service[key] = by_service.get(key, 0) + 1
        found[(port, proto)] = found.get((port, proto), 0) + 1
    for port, proto, n in db.execute("SELECT port, proto, COUNT(*) FROM results WHERE scan_id=? AND state='open' "
                                     "GROUP BY port, proto", (scan_id,)):
        if n > found.get((port, proto), 0):
            key = f"{service_name(port, proto)} ({port}/{proto})"
            by_service[key] = by_service.get(key, 0) + n - found.get((port, proto), 0)
    top = sorted(by_service.items(), key=lambda kv: -kv[1])[:15]
    per_host = db.execute(
        "SELECT ip, MAX(reason!='no-response'), SUM(state='open') FROM results WHERE scan_id=? AND ip NOT LIKE '%:%' "
        "GROUP BY ip", (scan_id,)).fetchall()
    heat = None
    if per_host:
        nums = [(int(ipaddress.IPv4Address(ip)), up, n_open) for ip, up, n_open in per_host]
        lo = min(n for n, _, _ in nums)
        hi = max(n for n, _, _ in nums)
        block = 1
        while (hi // block - lo // block + 1) > cells:
            block *= 2
        first = lo // block * block
        n_cells = (hi - first) // block + 1
        up = [0] * n_cells
        opened = [0] * n_cells
        for n, is_up, n_open in nums:
            up[(n - first) // block] += int(bool(is_up))
            opened[(n - first) // block] += n_open or 0
        heat = {"first": str(ipaddress.IPv4Address(first)), "block": block, "up": up, "open": opened}
    # Distance as nmap estimates it without traceroute: the hops a reply's TTL lost from the
    # nearest usual initial TTL (32, 64, 128, 255), plus one.
    distance: dict = {}
    for (ttl,) in db.execute("SELECT MAX(ttl) FROM results WHERE scan_id=? AND ttl > 0 AND reason!='no-response' "
                             "GROUP BY ip", (scan_id,)):
        if ttl:
            hops = next(i for i in (32, 64, 128, 255) if i >= ttl) - ttl + 1
            distance[hops] = distance.get(hops, 0) + 1
    return {"states": states, "services": top, "heatmap": heat,
            "distance": [[f"{hops} hop{'s' * (hops > 1)}", n] for hops, n in sorted(distance.items())]}


def diff(db_path, a, b) -> dict:
    store = Store(db_path, create=False)
    try:
        ra, rb = store.scan(a), store.scan(b)
        d = diff_rows(store.rows(ra.id), store.rows(rb.id))
    finally:
        store.close()
    svc = lambda port, proto: service_name(port, proto)  # noqa: E731
    return {"a": ra.id, "b": rb.id, "new_hosts": d.new_hosts, "gone_hosts": d.gone_hosts,
            "new_ports": [{"ip": ip, "port": p, "proto": pr, "state": s, "service": svc(p, pr)}
                          for ip, p, pr, s in d.new_ports],
            "gone_ports": [{"ip": ip, "port": p, "proto": pr, "state": s, "service": svc(p, pr)}
                           for ip, p, pr, s in d.gone_ports],
            "changed": [{"ip": ip, "port": p, "proto": pr, "a": sa, "b": sb, "service": svc(p, pr)}
                        for ip, p, pr, sa, sb in d.changed],
            "empty": d.empty}
