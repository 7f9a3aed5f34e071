"""The benchmark reports in the web GUI, in a browser: `scanner web --reports DIR` on 127.0.0.1
(no scan is run), Debian's chromium driven by Playwright: the list of reports, one report's
results table, ratio table and plots (loaded, not broken images). The screenshot goes to the
test's temporary directory, or to $SCANNER_WEB_SCREENSHOTS if set."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

from pathlib import Path

from conftest import REPO_ROOT, scanner_argv, scanner_env

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
COMMITTED = REPO_ROOT / "bench" / "reports" / "2026-12-02"


def test_browser_lists_and_shows_a_bench_report(tmp_path):
    assert shutil.which(CHROMIUM), "apt-get install chromium (scripts/test-packages.txt)"
    from playwright.sync_api import expect, sync_playwright
    shutil.copytree(COMMITTED, tmp_path / "reports" / "full")
    data = json.loads((COMMITTED / "report.json").read_text())
    rows = len([e for e in data["summary"] if "skipped" not in e])
    server = subprocess.Popen(scanner_argv("web", "--listen", "127.0.0.1:0", "--db", tmp_path / "scans.db",
                                           "--reports", tmp_path / "reports"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=scanner_env())
    errors: list = []
    try:
        line = server.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+/\?token=\S+)", line)
        assert url, line + server.stderr.read()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(url[1])
                page.click("nav a[data-nav=bench]")
                listed = page.locator("#bench-reports tbody tr")
                expect(listed).to_have_count(1)
                expect(listed.first).to_contain_text(data["meta"]["started"])
                listed.first.click()
                expect(page.locator("#bench-results tbody tr")).to_have_count(rows)
                expect(page.locator("#bench-command")).to_have_text(data["meta"]["command"])
                expect(page.locator("#bench-results th").nth(9)).to_have_text("CPU µs/probe", use_inner_text=True)   # as shown
                expect(page.locator("#bench-ratios tbody tr")).to_have_count(len(data["ratios"]))
                imgs = page.locator("#bench-plots img")
                expect(imgs).to_have_count(3)
                page.wait_for_function("[...document.querySelectorAll('#bench-plots img')]"
                                       ".every((i) => i.complete && i.naturalWidth > 100)")
                shots = Path(os.environ.get("SCANNER_WEB_SCREENSHOTS") or tmp_path)
                shots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shots / "web-bench-report.png"))
            finally:
                browser.close()
    finally:
        server.terminate()
        server.wait(10)
        server.stdout.close()
        server.stderr.close()
    assert errors == []
