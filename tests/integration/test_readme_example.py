"""The README's Python API example runs as written in the lab that `scanner lab` builds."""
from __future__ import annotations

import re
import sys

import pytest

from conftest import REPO_ROOT, make_lab, scanner_env


def readme_example() -> str:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- example: api -->\n```python\n(.*?)```", text, re.S)
    assert m, "the README has no API example"
    return m.group(1)


@pytest.mark.lab
def test_readme_api_example_runs_in_the_lab(tmp_path):
    from scanner.lab import LabSpec
    program = tmp_path / "example.py"
    program.write_text(readme_example())
    # The lab of `scanner lab`: 198.18.0.0/24, one host in 16 up, 22/80/443 open, 23 closed.
    spec = LabSpec(prefix="198.18.0.0/24", open_tcp=(22, 80, 443), drop_tcp=(8080,),
                   reject_tcp={8443: "admin-prohibited"}, live_every=16)
    with make_lab(spec) as lab:
        proc = lab.run([sys.executable, str(program)], capture_output=True, text=True, env=scanner_env(),
                       timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = proc.stdout
    assert "16 hosts up" in out
    opened = re.findall(r"^(198\.18\.0\.\d+) (22|80|443) syn-ack$", out, re.M)
    assert len(opened) == 16 * 3
    assert re.search(r"'open': 48\b.*16 hosts", out)
    assert re.search(r"^resumed: 48 open ports in all$", out, re.M), out
