"""The report: report.json (everything), report.md (tables), PNG plots (matplotlib) and
report.html (the tables and the plots, embedded: one self-contained page)."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Optional

from .stats import median

INSTALL_HINT = "the bench plots need matplotlib: pip install 'scanner[bench]' (or pip install matplotlib)"
PLOTS = {"rate_coverage.png": "Probes/s at the target against coverage (sweeps)",
         "wall_ports.png": "Wall time against ports scanned",
         "cpu_per_probe.png": "CPU per probe (median over each workload's runs)"}
COLUMNS = [  # (header, metric, format)
    ("wall s", "wall_s", "{:.2f}"), ("probes/s at target", "pps_target", "{:,.0f}"),
    ("coverage", "coverage", "{:.2%}"), ("false +", "false_pos", "{:.0f}"), ("CPU s", "cpu_s", "{:.2f}"),
    ("CPU µs/probe", "cpu_us_per_probe", "{:.2f}"), ("capture drops", "capture_drops", "{:.0f}"),
    ("= lab", "agree_lab", "{:.2%}"), ("= nmap", "agree_nmap", "{:.2%}"), ("service = nmap", "service_agree_nmap", "{:.2%}"),
    ("send CPU µs/pkt", "send_cpu_us_per_packet", "{:.3f}"), ("others' CPU", "others_cpu_share", "{:.0%}")]
RATIO_COLUMNS = [("wall (lower is better)", "wall_s"), ("probes/s at target (higher)", "pps_target"),
                 ("CPU/probe (lower)", "cpu_us_per_probe"), ("send CPU/pkt (lower)", "send_cpu_us_per_packet")]


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def fmt_spread(s: Optional[dict], spec: str) -> str:
    """median, with (min-max) when the runs differ."""
    if s is None:
        return "-"
    m = spec.format(s["median"])
    if s["n"] > 1 and s["min"] != s["max"]:
        return f"{m} ({spec.format(s['min'])}–{spec.format(s['max'])})"
    return m


def summary_table(summary: list[dict]) -> tuple[list[str], list[list[str]]]:
    head = ["workload", "variant", "tool", "runs"] + [c[0] for c in COLUMNS]
    body = []
    for e in summary:
        if "skipped" in e:
            continue
        body.append([e["workload"], e["variant"], e["tool"], str(e["runs"])]
                    + [fmt_spread(e.get(m), spec) for _, m, spec in COLUMNS])
    return head, body


def ratio_table(ratios: list[dict]) -> tuple[list[str], list[list[str]]]:
    head = ["workload", "variant", "scanner ÷"] + [c[0] for c in RATIO_COLUMNS]
    body = [[r["workload"], r["variant"], r["peer"]]
            + ["-" if r.get(m) is None else f"{r[m]:.2f}" for _, m in RATIO_COLUMNS] for r in ratios]
    return head, body


def markdown_table(head: list[str], body: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in row] for row in [head, *body]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in esc[1:]])


def html_table(head: list[str], body: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def commands(summary: list[dict]) -> list[tuple[str, str, str]]:
    """(workload/variant, tool, argv or why skipped): every tool's exact command line."""
    out = []
    for e in summary:
        what = "skipped: " + e["skipped"] if "skipped" in e else " ".join(map(str, e.get("argv") or []))
        out.append((f"{e['workload']} / {e['variant']}", e["tool"], what))
    return out


# -- plots ------------------------------------------------------------------------------------

def _series(summary, workloads, xkey_metric):
    """{(workload, tool): [(x, y-spread)]}"""
    out: dict = {}
    for e in summary:
        if "skipped" in e or e["workload"] not in workloads:
            continue
        out.setdefault((e["workload"], e["tool"]), []).append(e)
    return out


def _save(plt, fig, ax, directory: Path, name: str, grid: bool) -> str:
    """Titles, legends and writes one plot; returns its file name."""
    ax.set_title(PLOTS[name])
    if grid:
        ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(directory / name, dpi=110)
    plt.close(fig)
    return name


def make_plots(summary: list[dict], workloads: dict, directory: Path) -> list[str]:
    """Writes the PNG plots that have data; returns their file names."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    rate_w = [n for n, w in workloads.items() if w.get("x") == "rate"]
    groups = _series(summary, rate_w, "pps_target")
    if groups:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for (w, tool), es in groups.items():
            pts = sorted((x, y) for x, y in ((median(e, "pps_target"), median(e, "coverage")) for e in es)
                         if x is not None and y is not None)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] * 100 for p in pts], marker="o", label=f"{tool} ({w})")
        ax.set_xlabel("probes/s at the target (median)")
        ax.set_ylabel("coverage %")
        written.append(_save(plt, fig, ax, directory, "rate_coverage.png", grid=True))

    port_w = [n for n, w in workloads.items() if w.get("x") == "ports"]
    groups = _series(summary, port_w, "wall_s")
    if groups:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for (w, tool), es in groups.items():
            by_tech: dict = {}
            for e in es:
                by_tech.setdefault(e["variant"].split()[0] if e["variant"].startswith("-s") else w, []).append(e)
            for tech, tes in by_tech.items():
                tes = sorted((e for e in tes if e.get("wall_s")), key=lambda e: e["x"])
                if not tes:
                    continue
                xs = [e["x"] for e in tes]
                ys = [e["wall_s"]["median"] for e in tes]
                err = [[y - e["wall_s"]["min"] for y, e in zip(ys, tes)], [e["wall_s"]["max"] - y for y, e in zip(ys, tes)]]
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=f"{tool} {tech}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("ports scanned per host")
        ax.set_ylabel("wall time s (median, min-max; log)")
        written.append(_save(plt, fig, ax, directory, "wall_ports.png", grid=True))

    cpu: dict = {}
    for e in summary:
        v = median(e, "cpu_us_per_probe") if "skipped" not in e else None
        if v is not None:
            cpu.setdefault(e["workload"], {}).setdefault(e["tool"], []).append(v)
    if cpu:
        tools = sorted({t for d in cpu.values() for t in d}, key=lambda t: (t != "scanner", t))
        fig, ax = plt.subplots(figsize=(max(7, 1.2 * len(cpu)), 4.5))
        width = 0.8 / len(tools)
        for i, tool in enumerate(tools):
            xs = [j + i * width for j, w in enumerate(cpu) if tool in cpu[w]]
            ys = [sorted(cpu[w][tool])[len(cpu[w][tool]) // 2] for w in cpu if tool in cpu[w]]
            ax.bar(xs, ys, width, label=tool)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cpu))])
        ax.set_xticklabels(list(cpu), rotation=20)
        ax.set_yscale("log")
        ax.set_ylabel("CPU µs per probe (log)")
        written.append(_save(plt, fig, ax, directory, "cpu_per_probe.png", grid=False))
    return written


# -- the summary (what the README quotes) ----------------------------------------------------

SUMMARY_BEGIN = "<!-- scanner bench summary: begin (generated by scanner bench --readme; edit the report, not this) -->"
SUMMARY_END = "<!-- scanner bench summary: end -->"
SUMMARY_PEERS = ("nmap", "masscan", "zmap", "csend", "scanner-packet", "scanner-base")
RATE_WORKLOADS = ("sparse", "dense", "sendpath")    # judged by probes/s; the others by wall time


def _si(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    return f"{v / 1e3:.0f}k" if v >= 1e4 else f"{v / 1e3:.1f}k" if v >= 1e3 else f"{v:.0f}"


def _value(metric: str, v: float) -> str:
    return _si(v) + "/s" if metric == "pps_target" else f"{v:.2f} s"


def _headline(e: dict, metric: str) -> str:
    """A median, with (min–max) when the runs differ."""
    s = e.get(metric)
    if s is None:
        return "-"
    spread = (f" ({_value(metric, s['min'])}–{_value(metric, s['max'])})"
              if s["n"] > 1 and s["min"] != s["max"] else "")
    return _value(metric, s["median"]) + spread


def _without_notes(command: str) -> str:
    """The command line without its --note texts (the notes are listed below the tables)."""
    import shlex
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    out = [w for i, w in enumerate(words) if w != "--note" and (i == 0 or words[i - 1] != "--note")]
    return shlex.join(out)


def summary_markdown(result: dict, link: str) -> str:
    """The headline tables: per workload and variant, scanner's median (min–max) and its ratio to
    each peer's median from the same run (the peer's median beside it); `link` is where the full
    report is, relative to the file this text goes into."""
    meta = result["meta"]
    summary = [e for e in result["summary"] if "skipped" not in e]
    by = {(e["workload"], e["variant"], e["tool"]): e for e in summary}
    peers = [p for p in SUMMARY_PEERS if any(e["tool"] == p for e in summary)]
    tables: dict = {"pps_target": [], "wall_s": []}
    for (w, v, tool), mine in by.items():
        if tool != "scanner":
            continue
        metric = "pps_target" if w in RATE_WORKLOADS and mine.get("pps_target") else "wall_s"
        agree = mine.get("agree_nmap") or mine.get("service_agree_nmap")
        row = [w, v, _headline(mine, metric), fmt_spread(mine.get("coverage"), "{:.1%}"),
               fmt_spread(mine.get("agree_lab"), "{:.1%}"), fmt_spread(agree, "{:.1%}")]
        for p in peers:
            theirs = by.get((w, v, p))
            a, b = median(mine, metric), theirs and median(theirs, metric)
            cov = theirs and median(theirs, "coverage")
            found = "" if cov is None else f", {cov:.1%} found"
            row.append(f"{a / b:.2f}x ({_value(metric, b)}{found})" if a is not None and b else "")
        tables[metric].append(row)
    head = ["workload", "variant", "scanner", "coverage", "states = lab", "states = nmap"] + [f"÷ {p}" for p in peers]
    runs = meta["repeat"]
    notes = [n for n in result.get("notes", []) if not n.startswith(("nmap:", "masscan:", "zmap:"))]
    text = [f"From [{link}]({link}): `{_without_notes(meta['command'])}`, {meta['started']}, {meta['host']} "
            f"({meta['cpus']} CPUs, kernel {meta['kernel']}), scanner {meta['scanner_version']} "
            f"({meta.get('git') or 'no git'}), {runs} run{'s' if runs != 1 else ''} of each workload and tool, "
            f"{meta['duration_s'] / 60:.1f} min in all.", "",
            "scanner: its median" + (" (min–max over the runs)" if runs > 1 else "") + ". `÷ peer`: scanner's "
            "median divided by the peer's from the same run (the peer's median in brackets, and its coverage). Coverage: "
            "the lab's open (address, port) cells that the tool found open. States = lab: cells whose "
            "state is the lab's own (the ground truth); states = nmap: the share of nmap's cells (for "
            "-sV: service names) that scanner reports the same.", ""]
    if tables["pps_target"]:
        text += ["Probes per second at the target (higher is better: `÷ peer` above 1 means scanner sent faster):",
                 "", markdown_table(head, tables["pps_target"]), ""]
    if tables["wall_s"]:
        text += ["Wall time, launch to exit (lower is better: `÷ peer` below 1 means scanner finished sooner):",
                 "", markdown_table(head, tables["wall_s"]), ""]
    if any("pps_target" in r and "arrived_rst" not in r for r in result.get("rows", [])):
        notes.append("This report predates probes/s at the target leaving TCP RSTs out: where hosts answer "
                     "(dense), scanner's and zmap's figures include their kernel's RSTs to the SYN-ACKs "
                     "(one per answer), masscan's (its own source address) do not.")
    text += [f"- {n}" for n in notes]
    return "\n".join(text).rstrip() + "\n"


def update_readme(path: Path, block: str) -> None:
    """Replaces what stands between SUMMARY_BEGIN and SUMMARY_END in the file with block."""
    text = path.read_text()
    a, b = text.find(SUMMARY_BEGIN), text.find(SUMMARY_END)
    if a < 0 or b < a:
        raise ValueError(f"{path} has no '{SUMMARY_BEGIN}' ... '{SUMMARY_END}' block")
    path.write_text(text[:a + len(SUMMARY_BEGIN)] + "\n" + block + text[b:])


# -- the report -------------------------------------------------------------------------------

def render_markdown(result: dict, plots: list[str]) -> str:
    meta = result["meta"]
    parts = [f"# scanner bench report ({meta['started']})", "",
             f"`{meta['command']}` on {meta['host']} (kernel {meta['kernel']}, {meta['cpus']} CPUs), "
             f"scanner {meta['scanner_version']} ({meta.get('git') or 'no git'}), {meta['repeat']} run(s) each, "
             f"{meta['duration_s']:.0f} s in all.", ""]
    parts += [f"- {n}" for n in result.get("notes", [])] + [""]
    parts += ["## Results", "", "Medians over the runs, with (min–max) where they differ.", "",
              markdown_table(*summary_table(result["summary"])), ""]
    if result["ratios"]:
        parts += ["## scanner against each peer (same run)", "",
                  "scanner's median divided by the peer's.", "", markdown_table(*ratio_table(result["ratios"])), ""]
    for p in plots:
        parts += [f"![{PLOTS[p]}]({p})", ""]
    parts += ["## Workloads", ""]
    for name, w in result["workloads"].items():
        parts += [f"- **{name}** ({w['title']}): {w['doc']}"]
    parts += ["", "## Command lines", "", markdown_table(["workload / variant", "tool", "argv"],
                                                         [list(c) for c in commands(result["summary"])]), ""]
    return "\n".join(parts)


def render_html(result: dict, plots: list[str], directory: Path) -> str:
    meta = result["meta"]
    imgs = "".join(
        f"<figure><img alt='{html.escape(PLOTS[p])}' src='data:image/png;base64,"
        f"{base64.b64encode((directory / p).read_bytes()).decode()}'><figcaption>{html.escape(PLOTS[p])}"
        f"</figcaption></figure>" for p in plots)
    wl = "".join(f"<li><b>{html.escape(n)}</b> ({html.escape(w['title'])}): {html.escape(w['doc'])}</li>"
                 for n, w in result["workloads"].items())
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.get("notes", []))
    ratios = (f"<h2>scanner against each peer (same run)</h2><p>scanner's median divided by the peer's.</p>"
              f"{html_table(*ratio_table(result['ratios']))}" if result["ratios"] else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>scanner bench {html.escape(meta['started'])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}table{{border-collapse:collapse;font-size:13px;
margin-bottom:1.5em}}td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}td:nth-child(-n+3),th{{text-align:left}}
img{{max-width:100%}}figure{{display:inline-block;margin:0 1em 1em 0}}code{{font-size:12px}}</style></head>
<body><h1>scanner bench report</h1>
<p><code>{html.escape(meta['command'])}</code>: {html.escape(meta['started'])} on {html.escape(meta['host'])}
(kernel {html.escape(meta['kernel'])}, {meta['cpus']} CPUs), scanner {html.escape(meta['scanner_version'])},
{meta['repeat']} run(s) each, {meta['duration_s']:.0f} s in all.</p><ul>{notes}</ul>
<h2>Results</h2><p>Medians over the runs, with (min–max) where they differ.</p>
{html_table(*summary_table(result['summary']))}{ratios}<h2>Plots</h2>{imgs or '<p>no plots</p>'}
<h2>Workloads</h2><ul>{wl}</ul><h2>Command lines</h2>
{html_table(['workload / variant', 'tool', 'argv'], [list(c) for c in commands(result['summary'])])}
</body></html>
"""


def write_report(result: dict, directory: Path, data: bool = True) -> dict:
    """Writes report.json, report.md, summary.md (the headline table), the plots and report.html
    into directory (report.json only with data: --render leaves a report's data as it was);
    returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    plots = make_plots(result["summary"], result["workloads"], directory)
    paths = {"json": directory / "report.json", "markdown": directory / "report.md",
             "html": directory / "report.html", "summary": directory / "summary.md"}
    if data:
        paths["json"].write_text(json.dumps(result, indent=1, default=str))
    paths["markdown"].write_text(render_markdown(result, plots))
    paths["summary"].write_text(summary_markdown(result, "report.md"))
    paths["html"].write_text(render_html(result, plots, directory))
    return {**{k: str(v) for k, v in paths.items()}, "plots": [str(directory / p) for p in plots]}
