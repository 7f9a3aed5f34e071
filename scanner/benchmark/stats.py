"""Medians with min and max over repetitions, and ratios of scanner against each peer."""
from __future__ import annotations

import statistics
from typing import Optional

METRICS = ("wall_s", "pps_target", "pps_sent", "coverage", "false_pos", "cpu_s", "cpu_us_per_probe",
           "capture_drops", "agree_lab", "agree_nmap", "service_agree_nmap", "first_probe_s", "pps_10_90",
           "send_cpu_us_per_packet", "others_cpu_share")
# metric -> which way is better, for the ratio table's wording
RATIO_METRICS = {"wall_s": "lower", "pps_target": "higher", "cpu_us_per_probe": "lower",
                 "send_cpu_us_per_packet": "lower"}


def spread(values: list) -> Optional[dict]:
    """{"median", "min", "max", "n"} of the values that are not None (None when there are none)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def summarize(rows: list[dict]) -> list[dict]:
    """One entry per (workload, variant, tool) in first-seen order: each metric's spread."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["workload"], r["variant"], r["tool"]), []).append(r)
    out = []
    for (w, v, tool), rs in groups.items():
        entry = {"workload": w, "variant": v, "tool": tool, "x": rs[0].get("x"), "probes": rs[0].get("probes"),
                 "runs": len([r for r in rs if "skipped" not in r])}
        if "skipped" in rs[0]:
            entry["skipped"] = rs[0]["skipped"]
        else:
            entry["argv"] = rs[0].get("argv")
            notes = [r["note"] for r in rs if r.get("note")]
            if notes:
                entry["notes"] = notes
            for m in METRICS:
                entry[m] = spread([r.get(m) for r in rs])
        out.append(entry)
    return out


def median(entry: dict, metric: str) -> Optional[float]:
    s = entry.get(metric)
    return None if s is None else s["median"]


def ratios(summary: list[dict], tool: str = "scanner") -> list[dict]:
    """For each (workload, variant) and each peer that ran it: tool's median / the peer's median,
    per metric of RATIO_METRICS (both from the same run)."""
    by = {(e["workload"], e["variant"], e["tool"]): e for e in summary if "skipped" not in e}
    out = []
    for (w, v, t), mine in by.items():
        if t != tool:
            continue
        for (w2, v2, peer), theirs in by.items():
            if (w2, v2) != (w, v) or peer == tool:
                continue
            row = {"workload": w, "variant": v, "peer": peer}
            for m in RATIO_METRICS:
                a, b = median(mine, m), median(theirs, m)
                row[m] = a / b if a is not None and b else None
            out.append(row)
    return out
