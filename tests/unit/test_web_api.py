"""The web GUI's JSON API with Starlette's test client, on a store filled through the Store API:
token, Host and Origin checks; listing, details, paging, filters, stats, diff and search; scan
requests that the command line's checks refuse (nothing is run)."""
from __future__ import annotations

import ipaddress
import sqlite3
import time
import warnings

import numpy as np
import pytest

warnings.filterwarnings("ignore", message=".*httpx.*")
from starlette.testclient import TestClient  # noqa: E402

from scanner.osguess import OsGuess  # noqa: E402
from scanner.output import ScanInfo  # noqa: E402
from scanner.service import ServiceInfo  # noqa: E402
from scanner.states import REASONS, RESULT_DTYPE, STATES  # noqa: E402
from scanner.store import Store  # noqa: E402
from scanner.web.app import create_app  # noqa: E402

TOKEN = "test-token-0123456789abcdef"
BASE = "http://127.0.0.1:8700"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAY = 86400


def rows_of(results) -> np.ndarray:
    rows = np.zeros(len(results), dtype=RESULT_DTYPE)
    for i, (ip, port, state, reason) in enumerate(results):
        rows[i]["ip"] = int(ipaddress.IPv4Address(ip))
        rows[i]["port"], rows[i]["proto"] = port, 6
        rows[i]["state"], rows[i]["reason"] = STATES[state], REASONS[reason]
        rows[i]["ttl"] = 64 if reason != "no-response" else 0
    return rows


def record(store, command, results, started, services=None, oses=None) -> int:
    info = ScanInfo(start=started, command=command, scan_type="syn", protocol="tcp", ports=(22, 80, 443),
                    n_hosts=256)
    sid = store.begin(info, {"n_hosts": 256, "ports": "22,80,443", "scan_type": "syn"})
    store.add(sid, rows_of(results))
    store.add_details(sid, services or {}, oses or {})
    store.finish(sid, {"elapsed": 1.5, "states": {}}, ended=started + 2)
    return sid


@pytest.fixture
def store_path(tmp_path):
    """Scan 1 (ten days ago): 40 hosts, 198.18.0.0-39 with 22 open and 80 closed; 0-9 also 443 open
    with -sV / -O details on 198.18.0.1. Scan 2 (now): 22 closed on 198.18.0.5, 198.18.0.39 gone,
    198.18.0.200 new with 8080 open."""
    path = tmp_path / "scans.db"
    store = Store(path)
    now = time.time()
    first = []
    for i in range(40):
        ip = f"198.18.0.{i}"
        first += [(ip, 22, "open", "syn-ack"), (ip, 80, "closed", "reset")]
        first.append((ip, 443, "open", "syn-ack") if i < 10 else (ip, 443, "filtered", "no-response"))
    cert = "Subject: commonName=lab.example\nIssuer: commonName=lab.example\nNot valid after: 2030-01-01"
    services = {("198.18.0.1", "tcp", 443): ServiceInfo("http", product="nginx", version="1.22.1", tunnel="ssl",
                                                         scripts={"ssl-cert": cert}),
                ("198.18.0.1", "tcp", 22): ServiceInfo("ssh", product="OpenSSH", version="9.2p1")}
    oses = {"198.18.0.1": OsGuess("Linux 5.x - 6.x", 95, "Linux", "Linux", "5.X")}
    record(store, "scanner 198.18.0.0/24 -p 22,80,443 -A", first, now - 10 * DAY, services, oses)
    second = [r for r in first if r[0] != "198.18.0.39"]
    second = [(ip, p, "closed", "reset") if (ip, p) == ("198.18.0.5", 22) else (ip, p, s, r) for ip, p, s, r in second]
    second += [("198.18.0.200", 8080, "open", "syn-ack")]
    record(store, "scanner 198.18.0.0/24 -p 22,80,443,8080", second, now)
    store.close()
    return path


@pytest.fixture
def client(store_path):
    with TestClient(create_app(store_path, TOKEN, 8700), base_url=BASE) as c:
        yield c


# ------------------------------------------------------------------ the guard

def test_no_token_is_refused(client):
    for path in ("/", "/api/scans", "/api/scans/1", "/api/search?q=x", "/static/app.js"):
        assert client.get(path).status_code == 401, path
    assert client.post("/api/scans", json={"argv": ["127.0.0.1"]}).status_code == 401
    assert client.get("/api/scans", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
    assert client.get("/api/scans", headers={"Cookie": "scanner_token=wrong"}).status_code == 401
    assert client.get("/api/scans", headers=AUTH).status_code == 200


def test_token_in_url_sets_a_cookie(client):
    r = client.get(f"/?token={TOKEN}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"scanner_token={TOKEN}") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    page = client.get("/")          # the client keeps the cookie, as a browser does
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/?token=nope", follow_redirects=False).status_code == 401


def test_foreign_host_and_origin_are_refused(client):
    # DNS rebinding: a name that resolves here but is not this server's.
    assert client.get("/api/scans", headers={**AUTH, "Host": "evil.example:8700"}).status_code == 403
    assert client.get("/api/scans", headers={**AUTH, "Host": "127.0.0.1:9999"}).status_code == 403
    assert client.get("/api/scans", headers={**AUTH, "Host": "localhost:8700"}).status_code == 200
    # Cross-site: another page's scripts, even with the cookie.
    assert client.post("/api/scans", json={"argv": ["127.0.0.1"]},
                       headers={**AUTH, "Origin": "http://evil.example"}).status_code == 403
    assert client.get("/api/scans", headers={**AUTH, "Origin": "http://127.0.0.1:8701"}).status_code == 403
    assert client.get("/api/scans", headers={**AUTH, "Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert client.get("/api/scans", headers={**AUTH, "Origin": BASE}).status_code == 200


def _scan_count(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM scans").fetchone()[0]


@pytest.mark.parametrize("argv, message", [
    (["127.0.0.1;touch /tmp/scanner-web-pwned", "-p", "22"], "bad target"),
    (["127.0.0.1 && id", "-p", "22"], "bad target"),
    (["$(id)", "-p", "22"], "bad target"),
    (["`id`", "-p", "22"], "bad target"),
    (["127.0.0.1", "-p", "22|id"], "bad port"),
    (["127.0.0.1", "-p", "22", "-oN", "/tmp/x"], "not available from the web"),
    (["127.0.0.1", "--db", "/tmp/other.db"], "not available from the web"),
    (["127.0.0.1", "-iL", "/etc/passwd"], "not available from the web"),
    (["127.0.0.1", "--no-such-option"], "no-such-option"),
])
def test_bad_requests_are_refused_and_nothing_runs(client, store_path, argv, message):
    before = _scan_count(store_path)
    r = client.post("/api/scans", json={"argv": argv}, headers=AUTH)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert message in error and "\n" not in error and "Traceback" not in error
    assert _scan_count(store_path) == before
    assert not __import__("os").path.exists("/tmp/scanner-web-pwned")


def test_scan_request_json_is_checked(client, store_path):
    before = _scan_count(store_path)
    for body, message in (({"targets": ["127.0.0.1"], "no_such_field": 1}, "unknown scan request field"),
                          ({"targets": ["127.0.0.1"], "json_out": "/tmp/x.ndjson"}, "-oJ is not available"),
                          ({"targets": ["127.0.0.1"], "input_file": "/etc/passwd"}, "-iL is not available"),
                          ({"targets": ["127.0.0.1;id"], "ports": "22"}, "bad target"),
                          ({"targets": ["127.0.0.1"], "udp": "yes"}, "expected true or false")):
        r = client.post("/api/scans", json=body, headers=AUTH)
        assert r.status_code == 400 and message in r.json()["error"], (body, r.text)
    assert _scan_count(store_path) == before


def test_malformed_bodies(client):
    assert client.post("/api/scans", content=b"{not json", headers=AUTH).status_code == 400
    assert client.post("/api/scans", json=["127.0.0.1"], headers=AUTH).status_code == 400
    assert client.post("/api/scans", json={"argv": []}, headers=AUTH).status_code == 400
    assert client.post("/api/scans", json={"argv": [1, 2]}, headers=AUTH).status_code == 400
    assert client.post("/api/scans", json={"command": "scanner 'unclosed"}, headers=AUTH).status_code == 400


# ------------------------------------------------------------------ reading

def test_list_and_details(client):
    scans = client.get("/api/scans", headers=AUTH).json()["scans"]
    assert [s["id"] for s in scans] == [2, 1]
    assert scans[1]["targets"] == "198.18.0.0/24" and scans[1]["status"] == "done"
    assert scans[1]["hosts_up"] == 40 and scans[1]["open"] == 50
    assert scans[0]["hosts_up"] == 40 and scans[0]["open"] == 38 + 10 + 1   # 22 on 0-38 but 5; 443; 8080
    d = client.get("/api/scans/1?limit=7", headers=AUTH).json()
    assert d["hosts"]["total"] == 40 and len(d["hosts"]["items"]) == 7
    # Numeric address order, not text order (198.18.0.10 after 198.18.0.9).
    page2 = client.get("/api/scans/1?offset=7&limit=7", headers=AUTH).json()["hosts"]["items"]
    assert [h["ip"] for h in page2] == [f"198.18.0.{i}" for i in range(7, 14)]
    h1 = d["hosts"]["items"][1]
    assert h1["ip"] == "198.18.0.1" and h1["up"] and h1["os"]["name"] == "Linux 5.x - 6.x"
    by_port = {p["port"]: p for p in h1["ports"]}
    assert by_port[22]["state"] == "open" and by_port[22]["reason"] == "syn-ack"
    assert by_port[22]["product"] == "OpenSSH" and by_port[22]["version"] == "9.2p1"
    assert by_port[80]["state"] == "closed" and by_port[80]["service"] == "http"
    for path in ("/api/scans/99", "/api/scans/99/ports", "/api/scans/99/stats", "/api/scans/99/hosts/198.18.0.1",
                 "/api/scans/99/events", "/api/nothing"):
        assert client.get(path, headers=AUTH).status_code == 404, path
    assert client.get("/api/scans/x", headers=AUTH).status_code == 400
    assert client.get("/api/scans/1?limit=100000", headers=AUTH).status_code == 400


def test_host_filters_and_ports_paging(client):
    def hosts(f, scan=1):
        return client.get(f"/api/scans/{scan}", params={"filter": f, "limit": 100}, headers=AUTH).json()["hosts"]
    assert hosts("open:443")["total"] == 10
    assert hosts("198.18.0.0/29")["total"] == 8
    assert hosts("198.18.0.0/24")["total"] == 40 and hosts("target:198.18.0.0/16")["total"] == 40
    assert hosts("198.18.1.0/24")["total"] == 0 and hosts("198.18.200.0/21")["total"] == 0
    assert [h["ip"] for h in hosts("198.18.0.3")["items"]] == ["198.18.0.3"]
    assert hosts("service:nginx")["total"] == 1
    assert hosts("os:linux")["total"] == 1
    assert hosts("closed:22", scan=2)["total"] == 1
    assert hosts("open:8080", scan=2)["items"][0]["ip"] == "198.18.0.200"
    r = client.get("/api/scans/1", params={"filter": "bogus:1"}, headers=AUTH)
    assert r.status_code == 400 and "bogus" in r.json()["error"]
    ports = client.get("/api/scans/1/ports", params={"filter": "state:open", "limit": 20}, headers=AUTH).json()
    assert ports["total"] == 50 and len(ports["items"]) == 20
    assert all(p["state"] == "open" for p in ports["items"])
    more = client.get("/api/scans/1/ports", params={"filter": "state:open", "offset": 40, "limit": 20},
                      headers=AUTH).json()
    assert len(more["items"]) == 10


def test_host_detail_has_services_certificate_and_os(client):
    h = client.get("/api/scans/1/hosts/198.18.0.1", headers=AUTH).json()
    tls = next(p for p in h["ports"] if p["port"] == 443)
    assert tls["product"] == "nginx" and tls["tunnel"] == "ssl"
    assert "commonName=lab.example" in tls["scripts"]["ssl-cert"]
    assert h["os"]["accuracy"] == 95 and h["seen_in"] == [2, 1]
    assert client.get("/api/scans/1/hosts/198.18.9.9", headers=AUTH).status_code == 404


def test_stats(client):
    st = client.get("/api/scans/1/stats", headers=AUTH).json()
    assert st["states"] == {"open": 50, "closed": 40, "filtered": 30}
    # -sV's names where it ran (198.18.0.1), the services table's elsewhere.
    assert st["services"][:2] == [["ssh (22/tcp)", 40], ["https (443/tcp)", 9]]
    assert ["ssl/http (443/tcp)", 1] in st["services"]
    hm = st["heatmap"]
    assert hm["first"] == "198.18.0.0" and hm["block"] == 1 and sum(hm["up"]) == 40
    assert hm["open"][1] == 2 and hm["open"][20] == 1
    assert st["distance"] == [["1 hop", 40]]          # TTL 64 from every host: a direct neighbour


def test_diff(client):
    d = client.get("/api/diff?a=1&b=2", headers=AUTH).json()
    assert d["gone_hosts"] == ["198.18.0.39"] and d["new_hosts"] == ["198.18.0.200"]
    assert d["changed"] == [{"ip": "198.18.0.5", "port": 22, "proto": "tcp", "a": "open", "b": "closed",
                             "service": "ssh"}]
    assert {(p["ip"], p["port"]) for p in d["new_ports"]} == {("198.18.0.200", 8080)}
    assert {(p["ip"], p["port"]) for p in d["gone_ports"]} == {("198.18.0.39", 22), ("198.18.0.39", 80),
                                                             ("198.18.0.39", 443)}   # filtered, reported
    assert client.get("/api/diff?a=1&b=1", headers=AUTH).json()["empty"] is True
    assert client.get("/api/diff?a=1&b=77", headers=AUTH).status_code == 404
    assert client.get("/api/diff?a=1", headers=AUTH).status_code == 400


@pytest.mark.parametrize("q, ids", [
    ("", [2, 1]),
    ("open:8080", [2]),
    ("open:443", [2, 1]),
    ("closed:22", [2]),
    ("target:198.18.0.39", [1]),
    ("target:198.18.0.192/26", [2]),
    ("198.18.0.200", [2]),
    ("service:nginx", [1]),
    ("service:ssh", [2, 1]),
    ("os:linux", [1]),
    ("after:-3", [2]),
    ("before:-3", [1]),
    ("date:-10", [1]),
    ("date:-0 open:22", [2]),
    ("option:-A", [1]),
    ("8080", [2]),
])
def test_search_keys(client, q, ids):
    r = client.get("/api/search", params={"q": q}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert [s["id"] for s in r.json()["scans"]] == ids


def test_search_errors(client):
    for q in ("nokey:1", "date:yesterday", "open:x"):
        r = client.get("/api/search", params={"q": q}, headers=AUTH)
        assert r.status_code == 400 and "\n" not in r.json()["error"], q


def test_events_of_a_scan_not_run_here(client):
    r = client.get("/api/scans/1/events", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    lines = r.text.splitlines()
    assert "event: done" in lines
    done = __import__("json").loads(next(x for x in lines if x.startswith("data: "))[6:])
    assert done["status"] == "done" and done["hosts_up"] == 40
    assert client.post("/api/scans/1/stop", headers=AUTH).status_code == 404


# ------------------------------------------------------------------ the command

def _web(*args, **kw):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "scanner", "web", *args], capture_output=True, text=True,
                          timeout=30, **kw)


def test_web_command_refuses_bad_listen_addresses(tmp_path):
    import socket
    from scanner.errors import InputError
    from scanner.web.cli import parse_listen
    assert parse_listen("127.0.0.1:9000") == ("127.0.0.1", 9000) and parse_listen("[::1]:0") == ("::1", 0)
    for listen in ("example.com:80", "127.0.0.1:99999", "127.0.0.1:x"):
        with pytest.raises(InputError, match="bad --listen"):
            parse_listen(listen)
    r = _web("--listen", "nonsense", "--db", str(tmp_path / "x.db"))
    assert r.returncode == 2 and r.stderr.startswith("scanner: error: bad --listen"), r.stderr
    assert len(r.stderr.splitlines()) == 1
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        r = _web("--listen", f"127.0.0.1:{busy.getsockname()[1]}", "--db", str(tmp_path / "x.db"))
    assert r.returncode == 2 and "cannot listen" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    r = _web("--token", "short")
    assert r.returncode == 2 and "at least 16" in r.stderr


def test_web_command_serves_with_its_token(tmp_path):
    import re
    import subprocess
    import sys
    import urllib.error
    import urllib.request
    proc = subprocess.Popen([sys.executable, "-m", "scanner", "web", "--listen", "127.0.0.1:0", "--db",
                             str(tmp_path / "new.db")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.fullmatch(r"scanner web: serving \S+new\.db on (http://127\.0\.0\.1:\d+)/\?token=(\S{24,})\n", line)
        assert m, line
        with urllib.request.urlopen(urllib.request.Request(m[1] + "/api/scans", headers={
                "Authorization": f"Bearer {m[2]}"}), timeout=10) as r:
            assert r.status == 200 and __import__("json").load(r) == {"scans": [], "running": []}
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(m[1] + "/api/scans", timeout=10)
        assert e.value.code == 401
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def test_heat_map_of_a_sweep(tmp_path):
    """Hosts spread over a /16: blocks of addresses (a power of two) so that at most 1024 cells
    cover the space, each with its hosts up and open ports."""
    store = Store(tmp_path / "sweep.db")
    results = []
    for i in range(0, 65536, 97):
        ip = str(ipaddress.IPv4Address("198.18.0.0") + i)
        results.append((ip, 80, "open", "syn-ack") if i % 2 == 0 else (ip, 80, "closed", "reset"))
    sid = record(store, "scanner 198.18.0.0/16 -p 80", results, time.time())
    store.close()
    with TestClient(create_app(tmp_path / "sweep.db", TOKEN, 8700), base_url=BASE) as c:
        hm = c.get(f"/api/scans/{sid}/stats", headers=AUTH).json()["heatmap"]
        assert hm["block"] == 64 and hm["first"] == "198.18.0.0" and len(hm["up"]) <= 1024
        assert sum(hm["up"]) == len(results) and sum(hm["open"]) == sum(r[2] == "open" for r in results)
        # The hosts of one block, as a click on its square asks for them.
        page = c.get(f"/api/scans/{sid}", params={"filter": "198.18.1.0/26"}, headers=AUTH).json()["hosts"]
        assert page["total"] == hm["up"][4] == sum(256 <= i < 320 for i in range(0, 65536, 97))


def test_options_for_the_command_builder(client):
    options = {n: o for o in client.get("/api/options", headers=AUTH).json()["options"] for n in o["names"]}
    assert options["-p"]["takes"] == "value" and options["-sV"]["takes"] == "flag"
    assert options["--exclude"]["takes"] == "multi"


def test_a_scan_of_100000_hosts_pages_on_the_server(tmp_path):
    """100,000 hosts x 2 ports: pages come from the database in address order, never the whole
    scan (loose time bounds: a shared CI machine; typically 0.5 s for the first view, then 0.1 s)."""
    store = Store(tmp_path / "big.db")
    n = 100_000
    rows = np.zeros(2 * n, dtype=RESULT_DTYPE)
    ips = int(ipaddress.IPv4Address("198.18.0.0")) + np.arange(n, dtype=np.uint32) * 2 + 1   # odd addresses
    rows["ip"][0::2] = rows["ip"][1::2] = ips
    rows["port"][0::2], rows["port"][1::2], rows["proto"] = 22, 80, 6
    is_open = np.arange(n) % 10 == 0
    rows["state"][0::2] = np.where(is_open, STATES["open"], STATES["closed"])
    rows["reason"][0::2] = np.where(is_open, REASONS["syn-ack"], REASONS["reset"])
    rows["state"][1::2], rows["reason"][1::2] = STATES["closed"], REASONS["reset"]
    info = ScanInfo(start=time.time(), command="scanner 198.18.0.0/14 -p 22,80", scan_type="syn",
                    protocol="tcp", ports=(22, 80), n_hosts=1 << 18)
    sid = store.begin(info, {"n_hosts": 1 << 18})
    store.add(sid, rows)
    store.finish(sid, {"elapsed": 1.0})
    store.close()
    with TestClient(create_app(tmp_path / "big.db", TOKEN, 8700), base_url=BASE) as c:
        def get(path, **params):
            t0 = time.monotonic()
            r = c.get(path, params=params, headers=AUTH)
            assert r.status_code == 200 and time.monotonic() - t0 < 5, (path, r.text[:200])
            return r.json()
        last = get(f"/api/scans/{sid}", offset=n - 3, limit=50)["hosts"]
        assert last["total"] == n and [h["ip"] for h in last["items"]] == [
            str(ipaddress.IPv4Address(int(a))) for a in ips[-3:]]
        mid = get(f"/api/scans/{sid}", offset=128, limit=2)["hosts"]["items"]
        assert [h["ip"] for h in mid] == ["198.18.1.1", "198.18.1.3"]            # numeric order
        assert get(f"/api/scans/{sid}", filter="open:22", limit=1)["hosts"]["total"] == n // 10
        ports = get(f"/api/scans/{sid}/ports", offset=2 * n - 1, limit=10)
        assert ports["total"] == 2 * n and ports["items"][0]["port"] == 80
        st = get(f"/api/scans/{sid}/stats")
        assert st["states"] == {"open": n // 10, "closed": 2 * n - n // 10} and sum(st["heatmap"]["up"]) == n
        assert get("/api/scans")["scans"][0]["hosts_up"] == n


def test_event_log_of_a_long_scan_stays_bounded():
    from scanner.web.runs import EVENT_LOG_LIMIT, Run
    run = Run("scanner 198.18.0.0/16 -p 80")
    for i in range(EVENT_LOG_LIMIT + 5000):
        run.emit("progress", percent=i / 1000)
    run.emit("stage", stage="service")
    run.emit("progress", percent=99.0)
    run.emit("note", text="dropped: past the limit")
    run.finish("done")
    kinds = [e["kind"] for e in run.events]
    assert len(run.events) == EVENT_LOG_LIMIT + 3 and kinds[-3:] == ["stage", "progress", "done"]
    assert run.events[EVENT_LOG_LIMIT - 1]["percent"] == (EVENT_LOG_LIMIT + 4999) / 1000   # the latest kept
