"""scanner bench without a lab: statistics (medians, min/max, ratios), each tool's argv and output
parsing, and the report rendered from a synthetic result set."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from scanner.benchmark import report as R
from scanner.benchmark import stats, tools
from scanner.benchmark.workloads import WORKLOADS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def row(workload, variant, tool, rep, x=None, **m):
    base = {"workload": workload, "variant": variant, "tool": tool, "rep": rep, "x": x, "probes": 1000,
            "argv": [tool, "-p", "80"]}
    return {**base, **m}


def synthetic() -> list[dict]:
    rows = []
    for rep, (sw, nw) in enumerate([(1.0, 4.0), (3.0, 8.0), (2.0, 6.0)]):
        rows.append(row("sparse", "rate 100k", "scanner", rep, 100_000, wall_s=sw, pps_target=200_000.0,
                        coverage=1.0, false_pos=0, cpu_s=0.5, cpu_us_per_probe=5.0, capture_drops=0))
        rows.append(row("sparse", "rate 100k", "nmap", rep, 100_000, wall_s=nw, pps_target=50_000.0,
                        coverage=0.99, false_pos=0, cpu_s=0.1, cpu_us_per_probe=10.0))
        rows.append(row("allports", "-sS 1-1024", "scanner", rep, 1024, wall_s=sw, cpu_s=0.3,
                        cpu_us_per_probe=3.0, coverage=1.0, agree_nmap=0.5 + rep * 0.25))
        rows.append(row("allports", "-sS 1-1024", "nmap", rep, 1024, wall_s=nw, cpu_s=0.1, cpu_us_per_probe=1.0,
                        coverage=1.0))
        rows.append(row("allports", "-sS 1-8192", "scanner", rep, 8192, wall_s=2 * sw, cpu_s=0.4,
                        cpu_us_per_probe=1.5))
    rows.append({"workload": "allports", "variant": "-sS 1-1024", "tool": "zmap", "rep": 0, "x": 1024,
                 "probes": 1024, "skipped": "zmap sends SYNs to one port per run"})
    return rows


def test_spread_is_median_min_max_of_the_known_values():
    assert stats.spread([3.0, None, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert stats.spread([4.0, 1.0]) == {"median": 2.5, "min": 1.0, "max": 4.0, "n": 2}
    assert stats.spread([None, None]) is None


def test_summary_groups_by_workload_variant_tool():
    summary = stats.summarize(synthetic())
    keys = [(e["workload"], e["variant"], e["tool"]) for e in summary]
    assert keys == [("sparse", "rate 100k", "scanner"), ("sparse", "rate 100k", "nmap"),
                    ("allports", "-sS 1-1024", "scanner"), ("allports", "-sS 1-1024", "nmap"),
                    ("allports", "-sS 1-8192", "scanner"), ("allports", "-sS 1-1024", "zmap")]
    scanner = summary[0]
    assert scanner["runs"] == 3
    assert scanner["wall_s"] == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert summary[2]["agree_nmap"]["median"] == 0.75
    assert summary[1]["capture_drops"] is None
    assert summary[-1]["skipped"].startswith("zmap") and summary[-1]["runs"] == 0


def test_ratios_are_scanner_median_over_each_peer_of_the_same_variant():
    ratios = stats.ratios(stats.summarize(synthetic()))
    assert [(r["workload"], r["variant"], r["peer"]) for r in ratios] == [
        ("sparse", "rate 100k", "nmap"), ("allports", "-sS 1-1024", "nmap")]
    sparse = ratios[0]
    assert sparse["wall_s"] == pytest.approx(2.0 / 6.0)
    assert sparse["pps_target"] == pytest.approx(4.0)
    assert sparse["cpu_us_per_probe"] == pytest.approx(0.5)
    assert ratios[1]["pps_target"] is None          # no probes/s on either side


def test_spread_formatting_shows_the_range_only_when_runs_differ():
    assert R.fmt_spread({"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}, "{:.2f}") == "2.00 (1.00–3.00)"
    assert R.fmt_spread({"median": 0.5, "min": 0.5, "max": 0.5, "n": 3}, "{:.2%}") == "50.00%"
    assert R.fmt_spread(None, "{:.2f}") == "-"


def synthetic_result() -> dict:
    summary = stats.summarize(synthetic())
    return {"meta": {"command": "scanner bench sparse allports", "started": "2026-12-02 04:00:00 UTC",
                     "host": "h", "kernel": "k", "cpus": 2, "scanner_version": "0", "git": "abc", "repeat": 3,
                     "duration_s": 12.0},
            "notes": ["zmap is not installed: skipped"],
            "workloads": {n: {"title": WORKLOADS[n].title, "doc": WORKLOADS[n].doc, "x": WORKLOADS[n].x}
                          for n in ("sparse", "allports")},
            "rows": synthetic(), "summary": summary, "ratios": stats.ratios(summary)}


def test_report_from_a_synthetic_result_set(tmp_path):
    paths = R.write_report(synthetic_result(), tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    assert set(data) == {"meta", "notes", "workloads", "rows", "summary", "ratios"}
    md = (tmp_path / "report.md").read_text()
    assert "| workload | variant | tool | runs | wall s | probes/s at target | coverage |" in md
    assert "| sparse | rate 100k | scanner | 3 | 2.00 (1.00–3.00) | 200,000 | 100.00% |" in md
    assert "| sparse | rate 100k | nmap | 0.33 | 4.00 | 0.50 |" in md
    assert "| allports / -sS 1-1024 | zmap | skipped: zmap sends SYNs to one port per run |" in md
    assert "zmap is not installed: skipped" in md
    assert sorted(p.rsplit("/", 1)[1] for p in paths["plots"]) == ["cpu_per_probe.png", "rate_coverage.png",
                                                                   "wall_ports.png"]
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "<table>" in html
    for p in paths["plots"]:
        with open(p, "rb") as f:
            assert f.read(8) == PNG_MAGIC
        assert f"]({p.rsplit('/', 1)[1]})" in md


def test_each_tool_gets_explicit_options():
    sweep = tools.Scan("198.18.0.0/20", "80", rate=100_000, retries=0, wait=2.0)
    argv = tools.scanner_argv(sweep, "out")
    assert argv[3:] == ["198.18.0.0/20", "-Pn", "--no-db", "-sS", "-p", "80", "--rate", "100000", "--retries", "0",
                        "--wait", "2", "-oJ", "out"]
    assert tools.nmap_argv(sweep, "o")[-7:] == ["--min-rate", "100000", "--max-rate", "100000", "-oX", "o",
                                                "198.18.0.0/20"]
    z = tools.zmap_argv(sweep, "o", "if0", "aa:bb", "bl", "meta")
    assert z[z.index("-G") + 1] == "aa:bb" and z[z.index("-b") + 1] == "bl" and z[z.index("-P") + 1] == "1"
    m = tools.masscan_argv(sweep, "o", "if0", "aa:bb")
    assert m[m.index("--router-mac") + 1] == "aa:bb" and m[m.index("--source-ip") + 1] == tools.MASSCAN_SPARE_SRC
    one = tools.Scan("198.18.0.1/32", "1-1024", retries=1)
    assert "--retries" not in tools.masscan_argv(one, "o", "if0", "aa:bb")
    with pytest.raises(tools.NotApplicable):
        tools.zmap_argv(one, "o", "if0", "aa:bb", "bl", "meta")
    with pytest.raises(tools.NotApplicable):
        tools.masscan_argv(tools.Scan("198.18.0.0/30", "22", technique="sX"), "o", "if0", "aa:bb")
    send = tools.Scan("198.18.0.0/20", "80-83", send_only=True)
    z = tools.zmap_argv(send, "o", "if0", "aa:bb", "bl", "meta")
    assert z[z.index("-P") + 1] == "4" and z[z.index("-p") + 1] == "80"
    assert send.probes == 4096 * 4


def test_nmap_xml_with_extraports_expanded(tmp_path):
    xml = tmp_path / "n.xml"
    xml.write_text("""<?xml version="1.0"?><nmaprun><host><status state="up"/>
<address addr="198.18.0.1" addrtype="ipv4"/><ports>
<extraports state="closed" count="3"><extrareasons reason="reset" count="3" proto="tcp" ports="1-2,5"/></extraports>
<port protocol="tcp" portid="22"><state state="open" reason="syn-ack"/><service name="ssh" method="probed"/></port>
<port protocol="tcp" portid="80"><state state="open" reason="syn-ack"/><service name="http" method="table"/></port>
</ports></host></nmaprun>""")
    states, services = tools.parse_nmap_xml(xml)
    assert states == {("198.18.0.1", 1): "closed", ("198.18.0.1", 2): "closed", ("198.18.0.1", 5): "closed",
                      ("198.18.0.1", 22): "open", ("198.18.0.1", 80): "open"}
    assert services == {("198.18.0.1", 22): "ssh"}


def test_masscan_results_from_its_log_when_killed(tmp_path):
    log = ("Starting masscan 1.3.2\nDiscovered open port 22/tcp on 198.18.0.1                                    \n"
           "rate:  0.00-kpps, 100.00% done, waiting -8-secs, found=2\r"
           "Discovered open port 80/tcp on 198.18.0.1\n")
    assert tools.parse_masscan(tmp_path / "none", log)[0] == {("198.18.0.1", 22): "open", ("198.18.0.1", 80): "open"}
    (tmp_path / "l").write_text("#masscan\nopen tcp 443 198.18.0.4 1700000000\n# end\n")
    assert tools.parse_masscan(tmp_path / "l", log)[0] == {("198.18.0.4", 443): "open"}


# -- the summary the README quotes, --render and --readme ----------------------------------------

COMMITTED = Path(__file__).resolve().parents[2] / "bench" / "reports" / "2026-12-02"


def test_summary_quotes_medians_spreads_and_ratios_from_the_result():
    text = R.summary_markdown(synthetic_result(), "r/report.md")
    assert text.startswith("From [r/report.md](r/report.md): `scanner bench sparse allports`, 2026-12-02")
    assert "3 runs of each workload and tool" in text and "(min–max over the runs)" in text
    # sparse: judged by probes/s (equal in every run: no range), 4x nmap's; allports by wall time
    assert "| sparse | rate 100k | 200k/s | 100.0% | - | - | 4.00x (50k/s, 99.0% found) |" in text
    assert "| allports | -sS 1-1024 | 2.00 s (1.00 s–3.00 s) | 100.0% | - | 75.0% (50.0%–100.0%) | 0.33x (6.00 s, 100.0% found) |" in text
    assert "| allports | -sS 1-8192 | 4.00 s (2.00 s–6.00 s) |" in text
    assert "- zmap is not installed: skipped" in text


def test_summary_of_the_committed_report_matches_its_data():
    result = json.loads((COMMITTED / "report.json").read_text())
    text = R.summary_markdown(result, "report.md")
    assert text == (COMMITTED / "summary.md").read_text()
    by = {(e["workload"], e["variant"], e["tool"]): e for e in result["summary"] if "skipped" not in e}
    s, z = (by[("sparse", "rate unlimited", t)]["pps_target"]["median"] for t in ("scanner", "zmap"))
    assert f"| {s / z:.2f}x ({z / 1e3:.0f}k/s, 100.0% found) |" in text
    assert "--note" not in text.splitlines()[0]          # the notes are listed, not quoted in the command


def test_without_notes():
    assert R._without_notes("scanner bench --note 'a b' sparse --note x --repeat 3") == "scanner bench sparse --repeat 3"


def test_update_readme_replaces_only_the_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\nbefore\n{R.SUMMARY_BEGIN}\nold\n{R.SUMMARY_END}\nafter\n")
    R.update_readme(readme, "new table\n")
    assert readme.read_text() == f"# x\nbefore\n{R.SUMMARY_BEGIN}\nnew table\n{R.SUMMARY_END}\nafter\n"
    readme.write_text("no markers\n")
    with pytest.raises(ValueError):
        R.update_readme(readme, "t\n")


def test_render_and_readme_from_the_command_line(tmp_path, capsys):
    from scanner import cli
    report = tmp_path / "reports" / "full"
    shutil.copytree(COMMITTED, report)
    for name in ("summary.md", "report.md", "report.html", "wall_ports.png"):
        (report / name).unlink()
    data = (report / "report.json").read_bytes()
    readme = tmp_path / "README.md"
    readme.write_text(f"# scanner\n{R.SUMMARY_BEGIN}\n{R.SUMMARY_END}\n")
    with pytest.raises(SystemExit) as e:        # nothing to write into: refused before anything is done
        cli.main(["bench", "--render", str(report), "--readme", str(tmp_path / "nosuch.md")])
    assert e.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "--render", str(report), "--readme", str(readme)])
    assert e.value.code == 0
    assert capsys.readouterr().err.splitlines()[0] == f"scanner bench: summary written into {readme}"
    assert (report / "report.json").read_bytes() == data              # the data is left as it was
    assert (report / "wall_ports.png").read_bytes()[:8] == PNG_MAGIC
    assert (report / "summary.md").read_text() == (COMMITTED / "summary.md").read_text()
    assert "| sparse | rate 100k | scanner |" in (report / "report.md").read_text()
    block = R.summary_markdown(json.loads(data), "reports/full/report.md")
    assert readme.read_text() == f"# scanner\n{R.SUMMARY_BEGIN}\n{block}{R.SUMMARY_END}\n"
    for argv, message in [
            (["bench", "--render", str(tmp_path)], f"--render {tmp_path}: no scanner bench report.json there"),
            (["bench", "--render", str(report), "sparse"], "--render writes an existing report again"),
            (["bench", "--quick", "--readme", str(tmp_path / "x.md")], f"--readme {tmp_path / 'x.md'}: No such file"),
            (["bench", "--baseline", str(tmp_path)], f"--baseline {tmp_path}: no scanner package there")]:
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and message in err[0], (argv, err)


def test_baseline_and_packet_path_runs():
    from scanner.benchmark.runner import tools_for
    w = WORKLOADS["sendpath"]
    assert tools_for(w, ["zmap"]) == ["scanner", "zmap", "csend", "scanner-packet"]
    assert tools_for(w, ["zmap"], Path("/tmp/before")) == ["scanner", "scanner-base", "zmap", "csend", "scanner-packet"]
    assert tools_for(WORKLOADS["allports"], ["nmap", "zmap"]) == ["scanner", "nmap"]
    assert tools.scanner_env(Path("/tmp/before"))["PYTHONPATH"].split(":")[0] == "/tmp/before"
    scan = tools.Scan("198.18.0.0/20", "80-83", send_only=True)
    assert tools.scanner_argv(scan, "o", send_path="packet")[-4:] == ["--send-path", "packet", "-oJ", "o"]
