"""The web GUI's benchmark pages' API (Starlette's test client): reports found under the
configured directories (nested, lab and --target kinds, broken ones left out), one report's
tables and plots, nothing served by path, and `scanner bench --report` directories remembered
for `scanner web`."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", message=".*httpx.*")
from starlette.testclient import TestClient  # noqa: E402

from scanner.benchmark import cli as bench_cli  # noqa: E402
from scanner.web import bench as web_bench  # noqa: E402
from scanner.web.app import create_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "bench" / "reports" / "2026-12-02"       # a real full run, with its plots
TOKEN = "test-token-0123456789abcdef"
BASE = "http://127.0.0.1:8700"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def target_report(directory: Path) -> None:
    """What `scanner bench --target ... --report DIR` writes (target.json)."""
    directory.mkdir(parents=True)
    spread = lambda v: {"median": v, "min": v, "max": v, "n": 1}  # noqa: E731
    summary = [{"workload": "target", "variant": "-sT 127.0.0.1 -p 1-200", "tool": t, "x": None, "probes": None,
                "runs": 1, "argv": [t], "wall_s": spread(w), "cpu_s": spread(0.1), "open": 1}
               for t, w in (("scanner", 0.5), ("nmap", 1.0))]
    (directory / "target.json").write_text(json.dumps({
        "meta": {"command": "scanner bench --target 127.0.0.1 --authorized -p 1-200 --technique sT",
                 "started": "2026-12-03 10:00:00 UTC", "repeat": 1},
        "rows": [{"tool": "scanner"}, {"tool": "nmap"}], "summary": summary, "ratios": []}))


@pytest.fixture
def reports(tmp_path):
    root = tmp_path / "reports"
    shutil.copytree(COMMITTED, root / "lab" / "2026-12-02")          # nested one level down
    target_report(root / "mine")
    (root / "broken").mkdir()
    (root / "broken" / "report.json").write_text("{not json")
    (tmp_path / "elsewhere").mkdir()                                   # not under a root: never listed
    shutil.copy(COMMITTED / "report.json", tmp_path / "elsewhere" / "report.json")
    return root


@pytest.fixture
def client(tmp_path, reports):
    app = create_app(tmp_path / "scans.db", TOKEN, 8700, reports=web_bench.Reports([reports]))
    with TestClient(app, base_url=BASE) as c:
        yield c


def test_reports_are_listed_newest_first(client, reports):
    r = client.get("/api/bench", headers=AUTH)
    assert r.status_code == 200
    d = r.json()
    assert d["dirs"] == [str(reports.resolve())]
    listed = [(b["kind"], Path(b["path"]).relative_to(reports.resolve()).as_posix(), b["started"]) for b in d["reports"]]
    assert listed == [("target", "mine", "2026-12-03 10:00:00 UTC"), ("lab", "lab/2026-12-02", "2026-12-02 04:25:08 UTC")]
    lab = d["reports"][1]
    committed = json.loads((COMMITTED / "report.json").read_text())
    assert lab["workloads"] == list(committed["workloads"]) and lab["runs"] == len(committed["rows"])
    assert lab["command"] == committed["meta"]["command"] and lab["repeat"] == 1 and lab["duration_s"] > 400


def test_one_report_has_its_tables_and_plots(client):
    lab = next(b for b in client.get("/api/bench", headers=AUTH).json()["reports"] if b["kind"] == "lab")
    r = client.get(f"/api/bench/{lab['id']}", headers=AUTH)
    assert r.status_code == 200
    d = r.json()
    committed = json.loads((COMMITTED / "report.json").read_text())
    shown = [e for e in committed["summary"] if "skipped" not in e]
    assert d["table"]["head"][:6] == ["workload", "variant", "tool", "runs", "wall s", "probes/s at target"]
    assert len(d["table"]["body"]) == len(shown)
    first = d["table"]["body"][0]
    assert first[:3] == [shown[0]["workload"], shown[0]["variant"], shown[0]["tool"]]
    assert first[4] == f"{shown[0]['wall_s']['median']:.2f}"
    # the ratios: scanner's median over each peer's, for each variant a peer ran
    sparse_zmap = next(row for row in d["ratios"]["body"] if row[:3] == ["sparse", "rate unlimited", "zmap"])
    med = {e["tool"]: e["pps_target"]["median"] for e in shown if (e["workload"], e["variant"]) == ("sparse", "rate unlimited")}
    assert sparse_zmap[4] == f"{med['scanner'] / med['zmap']:.2f}"
    assert [p["name"] for p in d["plots"]] == ["rate_coverage.png", "wall_ports.png", "cpu_per_probe.png"]
    for p in d["plots"]:
        img = client.get(p["url"], headers=AUTH)
        assert img.status_code == 200 and img.headers["content-type"] == "image/png"
        assert img.content == (COMMITTED / p["name"]).read_bytes() and img.content[:8] == PNG_MAGIC
    assert set(d["workloads"]) == set(committed["workloads"]) and d["notes"] == committed["notes"]


def test_a_target_report_shows_its_table(client):
    target = next(b for b in client.get("/api/bench", headers=AUTH).json()["reports"] if b["kind"] == "target")
    d = client.get(f"/api/bench/{target['id']}", headers=AUTH).json()
    assert [row[2] for row in d["table"]["body"]] == ["scanner", "nmap"] and d["plots"] == []
    assert d["ratios"]["body"][0][:3] == ["target", "-sT 127.0.0.1 -p 1-200", "nmap"]
    assert d["ratios"]["body"][0][3] == "0.50"


def test_nothing_is_served_by_path_and_the_token_is_needed(client, tmp_path):
    lab = next(b for b in client.get("/api/bench", headers=AUTH).json()["reports"] if b["kind"] == "lab")
    assert client.get("/api/bench").status_code == 401
    assert client.get(f"/api/bench/{lab['id']}").status_code == 401
    assert client.get(f"/api/bench/{lab['id']}/plots/wall_ports.png").status_code == 401
    elsewhere = web_bench.report_id((tmp_path / "elsewhere" / "report.json").resolve())
    for path in (f"/api/bench/{elsewhere}", "/api/bench/nosuch", "/api/bench/..%2F..%2Fetc",
                 f"/api/bench/{lab['id']}/plots/report.json", f"/api/bench/{lab['id']}/plots/..%2Freport.json",
                 f"/api/bench/{elsewhere}/plots/wall_ports.png"):
        r = client.get(path, headers=AUTH)
        assert r.status_code == 404 and "error" in r.json(), path
    target = next(b for b in client.get("/api/bench", headers=AUTH).json()["reports"] if b["kind"] == "target")
    assert client.get(f"/api/bench/{target['id']}/plots/wall_ports.png", headers=AUTH).status_code == 404


def test_report_directories_are_remembered_for_the_web(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)                     # no bench/reports here
    shutil.copytree(COMMITTED, tmp_path / "mine")
    assert not any(b["path"].startswith(str(tmp_path)) for b in web_bench.Reports().listing()["reports"])
    bench_cli.remember(tmp_path / "mine")
    bench_cli.remember(tmp_path / "mine")           # once only
    assert (tmp_path / "data" / "scanner" / "bench-reports").read_text() == f"{(tmp_path / 'mine').resolve()}\n"
    mine = [b for b in web_bench.Reports().listing()["reports"] if b["path"].startswith(str(tmp_path))]
    assert [b["path"] for b in mine] == [str((tmp_path / "mine").resolve())]
    # --reports names the directories instead of the defaults
    assert web_bench.Reports([tmp_path / "nothing"]).listing() == {"dirs": [str(tmp_path / "nothing")], "reports": []}
