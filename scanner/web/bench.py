"""The benchmark reports (`scanner bench`) the web GUI lists and shows.

Reports are found under a few directories: by default bench/reports (of the current directory and
of this checkout) and every directory `scanner bench --report` wrote (scanner.benchmark.cli's
remembered list); `scanner web --reports DIR` names others instead. A report is addressed by an
id derived from its path, never by a path from the request: only reports found there are served,
and only the plots the report format names."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Optional

MAX_DEPTH = 3           # report directories this far below a root are found
MAX_REPORTS = 500


def default_roots() -> list[Path]:
    from ..benchmark.cli import remembered_file
    roots = [Path("bench/reports"), Path(__file__).resolve().parents[2] / "bench" / "reports"]
    try:
        roots += [Path(line) for line in remembered_file().read_text().splitlines() if line.strip()]
    except OSError:
        pass
    return roots


def report_id(path: Path) -> str:
    return hashlib.sha256(str(path).encode()).hexdigest()[:16]


def _files(root: Path) -> Iterable[Path]:
    """report.json / target.json files at most MAX_DEPTH directories below root."""
    if not root.is_dir():
        return
    base = len(root.parts)
    for d, dirs, files in os.walk(root):
        depth = len(Path(d).parts) - base
        if depth >= MAX_DEPTH:
            dirs[:] = []
        dirs.sort()
        for name in ("report.json", "target.json"):
            if name in files:
                yield Path(d) / name


class Reports:
    def __init__(self, roots: Optional[list] = None):
        self.roots = [Path(r) for r in roots] if roots is not None else None

    def dirs(self) -> list[Path]:
        seen: dict = {}
        for r in (self.roots if self.roots is not None else default_roots()):
            try:
                seen.setdefault(r.resolve(), None)
            except OSError:
                pass
        return list(seen)

    def _found(self) -> dict:
        """{id: report.json path} of every report under the roots."""
        out: dict = {}
        for root in self.dirs():
            for f in _files(root):
                if len(out) >= MAX_REPORTS:
                    return out
                out.setdefault(report_id(f.resolve()), f.resolve())
        return out

    def listing(self) -> dict:
        items = []
        for rid, f in self._found().items():
            try:
                data = json.loads(f.read_text())
                meta = data.get("meta", {})
            except (OSError, ValueError, AttributeError):
                continue
            items.append({"id": rid, "path": str(f.parent), "kind": "target" if f.name == "target.json" else "lab",
                          "started": meta.get("started", ""), "command": meta.get("command", ""),
                          "repeat": meta.get("repeat"), "duration_s": meta.get("duration_s"),
                          "quick": meta.get("quick", False), "workloads": list(data.get("workloads", {})),
                          "runs": len(data.get("rows", []))})
        items.sort(key=lambda i: i["started"], reverse=True)
        return {"dirs": [str(d) for d in self.dirs()], "reports": items}

    def path(self, rid: str) -> Path:
        f = self._found().get(rid)
        if f is None:
            raise LookupError(f"no benchmark report with id '{rid}'")
        return f

    def show(self, rid: str) -> dict:
        from ..benchmark.report import PLOTS, ratio_table, summary_table
        from ..benchmark.stats import ratios
        f = self.path(rid)
        try:
            data = json.loads(f.read_text())
            summary = data["summary"]
            head, body = summary_table(summary)
            rhead, rbody = ratio_table(ratios(summary))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise LookupError(f"benchmark report {f} cannot be read: {e}") from None
        plots = [{"name": n, "title": t, "url": f"/api/bench/{rid}/plots/{n}"}
                 for n, t in PLOTS.items() if (f.parent / n).is_file()]
        return {"id": rid, "path": str(f.parent), "meta": data.get("meta", {}), "notes": data.get("notes", []),
                "workloads": data.get("workloads", {}), "table": {"head": head, "body": body},
                "ratios": {"head": rhead, "body": rbody}, "plots": plots}

    def plot(self, rid: str, name: str) -> Path:
        from ..benchmark.report import PLOTS
        if name not in PLOTS:
            raise LookupError(f"no plot named '{name}'")
        p = self.path(rid).parent / name
        if not p.is_file():
            raise LookupError(f"this report has no {name}")
        return p
