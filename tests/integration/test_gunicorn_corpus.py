"""Real gunicorn config files from public projects (tests/gunicorn_configs/, each naming
its source), started through a real prefork-serve: each is accepted as it is, serves a
request with its hooks running, stops cleanly, and nothing is logged at ERROR.

The files are reduced to the settings and hook shapes they use (their comments left out;
a path they write to is put under the test's folder as `{tmp}`). The test's own address
and app are given on the command line, which gunicorn and prefork both put over the file;
so are the worker and thread counts of the test server and its error log."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from tests.server import ROOT, Server

pytestmark = pytest.mark.timeout(60)

CONFIGS = sorted((ROOT / "tests" / "gunicorn_configs").glob("*.py"))
# What a file's hooks log, where they log something of their own.
HOOK_LINES = {
    "example_config": "Worker spawned (pid:",
    "digital_ambulance": "Server is ready. Spawning workers",
    "django_web_admin": "Worker spawned (post-fork)",
    "nsc_recommendations": "RESPONSE - GET (/hello): 200 OK",
    "haidm": "GET /hello?x=1 200 OK",
}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_a_real_gunicorn_config_starts_serves_and_stops(path: Path, tmp_path: Path) -> None:
    text = path.read_text().replace("{{tmp}}", str(tmp_path)).replace("{tmp}", str(tmp_path))
    assert text.splitlines()[0].startswith("# Source: ")
    for dirname in re.findall(re.escape(str(tmp_path)) + r"(/[^'\"]*)/", text):
        (tmp_path / dirname.lstrip("/")).mkdir(parents=True, exist_ok=True)
    conf = tmp_path / path.name
    conf.write_text(text)
    (tmp_path / "prom").mkdir()
    errorlog = tmp_path / "server-error.log"
    with Server("-c", str(conf), "tests.apps.basic:app", errorlog=str(errorlog),
                env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}) as srv:
        status, _, body = srv.get("/hello?x=1")
        assert (status, body) == (200, b"Hello, world!")
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(30) == 0
        log = srv.log()
        out = srv.out_path.read_text(errors="replace")
    assert "[ERROR]" not in log and "Traceback" not in log + out, log[-2000:] + out[-2000:]
    assert "raised; going on" not in log
    if path.stem in HOOK_LINES:
        assert HOOK_LINES[path.stem] in log + out


def test_a_config_for_an_async_worker_is_refused_in_one_line(tmp_path: Path) -> None:
    """gevent and daemon mode (mmvitamush/MyGitHub, gunicorn_c.py): refused, saying why."""
    conf = tmp_path / "gunicorn_c.py"
    conf.write_text("bind = '127.0.0.1:8000'\nworkers = 5\nbacklog = 2048\n"
                    "worker_class = 'gevent'\ndebug = True\ndaemon = True\n"
                    "pidfile = 'gunicorn.pid'\nlogfile = 'gunicorn.log'\n")
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "prefork", "-c", str(conf), "--print-config"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=30,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 2
    errors = [line for line in run.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "worker_class" in errors[0] and "gevent" in errors[0]
