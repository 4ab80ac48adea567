"""The locust smoke run CI makes: the documented command, against the real server."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server import ROOT

# Looked up, not imported: importing locust monkey-patches socket, select and threading
# with gevent's for the whole test process (select.epoll disappears, for one).
if importlib.util.find_spec("locust") is None:
    pytest.skip("locust is not installed (pip install -e '.[test]')", allow_module_level=True)


@pytest.mark.timeout(180)
def test_locust_smoke_run_has_no_failures(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "loadtests/run.py", "--users", "12", "--spawn-rate", "12",
         "--duration", "12s", "--smoke", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "prefork" / "summary.json").read_text())
    assert summary["total"]["requests"] > 100
    assert summary["total"]["failures"] == 0
    names = {e["name"] for e in summary["endpoints"]}
    assert {"/page/[n]", "/api/items", "/slow"} <= names
    assert summary["peak_rss_mib"] > 0
    assert (out / "prefork" / "report.html").exists()
    assert (out / "prefork" / "summary.md").read_text().startswith("# prefork")
