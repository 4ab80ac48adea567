"""A gunicorn user's habits, through a real prefork-serve: their command line, their
gunicorn.conf.py with server hooks, their access-log format, --check-config as a deploy
gate, --reload, privileges, and typos."""

from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server import ROOT, Server, wait_for

pytestmark = pytest.mark.timeout(60)
GUNICORN_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(L)s'


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFORK_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "prefork", *args], capture_output=True,
                          text=True, timeout=30, env=env, cwd=str(cwd),
                          stdin=subprocess.DEVNULL)


def test_a_gunicorn_command_line_starts_unchanged(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    with Server("-b", "127.0.0.1:0", "-w", "2", "--threads", "3", "-t", "30",
                "--graceful-timeout", "10", "--keep-alive", "5", "--log-level", "debug",
                "--access-logfile", "-", "--access-logformat", GUNICORN_FORMAT,
                "--max-requests", "1000", "--max-requests-jitter", "50", "--preload",
                "--chdir", str(tmp_path / "proj"), "-e", "FROM_CLI=yes",
                "--forwarded-allow-ips", "127.0.0.1", "--limit-request-line", "4094",
                "--limit-request-fields", "50", "--limit-request-field-size", "4000",
                "-p", str(tmp_path / "g.pid"), "-k", "gthread", "--app", "tests.apps.basic:app",
                bind=None, workers=2) as srv:
        status, _, _body = srv.get("/environ", headers={"User-Agent": "curl/8",
                                                        "Referer": "http://r/"})
        assert status == 200
        assert int((tmp_path / "g.pid").read_text()) == srv.pid
        line = wait_for(lambda: re.search(r'127\.0\.0\.1 - - \[[^]]+\] "GET /environ HTTP/1\.1" '
                                          r'200 \d+ "http://r/" "curl/8" \d+\.\d{6}', srv.log()),
                        timeout=5, what="a gunicorn-format access line")
        assert line
        assert "-k gthread: prefork's workers are processes" in srv.log()


def test_env_and_chdir_reach_the_app(tmp_path: Path) -> None:
    app_dir = tmp_path / "proj"
    app_dir.mkdir()
    (app_dir / "where.py").write_text(
        "import os\n"
        "def application(environ, start_response):\n"
        "    body = (os.getcwd() + '|' + os.environ.get('GREETING', '-')).encode()\n"
        "    start_response('200 OK', [('Content-Length', str(len(body)))])\n"
        "    return [body]\n")
    with Server("where:application", "--chdir", str(app_dir), "-e", "GREETING=hi",
                workers=1) as srv:
        assert srv.get("/")[2] == f"{app_dir}|hi".encode()


def test_gunicorn_conf_py_with_hooks(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(f"""
import os
MARKS = {str(marks)!r}

def mark(text):
    with open(MARKS, "a") as fh:
        fh.write(text + "\\n")

wsgi_app = "tests.apps.basic:app"
workers = 2
threads = 2
accesslog = "-"
access_log_format = {GUNICORN_FORMAT!r}
worker_class = "gthread"
keepalive = 3
raw_env = ["HOOKED=1"]

def on_starting(server):
    mark("on_starting %d" % server.pid)

def when_ready(server):
    import socket
    sock = server.LISTENERS[0]
    sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)  # what health probes read
    mark("when_ready %s %s %s" % (server.cfg.workers, server.cfg.threads,
                                  server.address[0][0]))

def pre_fork(server, worker):
    mark("pre_fork %d" % worker.number)

def post_fork(server, worker):
    mark("post_fork %d age %d alive %s conns %d" % (worker.pid, worker.age, worker.alive,
                                                     worker.cfg.worker_connections))

def post_worker_init(worker):
    mark("post_worker_init %d" % worker.pid)

def pre_request(worker, req):
    mark("pre_request %s %s %r %s" % (req.method, req.path, req.version,
                                      dict(req.headers).get("X-TEST")))

def post_request(worker, req, environ, resp):
    mark("post_request %s %s %d" % (req.path, resp.status, resp.status_code))

def nworkers_changed(server, new_value, old_value):
    mark("nworkers_changed %d %d" % (old_value, new_value))

def on_reload(server):
    mark("on_reload")

def child_exit(server, worker):
    mark("child_exit %d" % worker.pid)

def worker_exit(server, worker):
    mark("worker_exit %d" % worker.pid)

def on_exit(server):
    mark("on_exit")
""")

    def marked(prefix: str) -> list[str]:
        lines = marks.read_text().splitlines() if marks.exists() else []
        return [line for line in lines if line.startswith(prefix)]

    with Server("-c", str(conf), bind="127.0.0.1:0", workers=2, threads=2) as srv:
        assert srv.get("/hello?x=1", headers={"X-Test": "yes"})[0] == 200
        wait_for(lambda: marked("post_request /hello 200 OK 200"), timeout=5,
                 what="post_request")
        assert marked("pre_request GET /hello (1, 1) yes")
        assert marked("on_starting") and marked("when_ready 2 2 127.0.0.1")
        # when_ready as gunicorn calls it: listening, before the first worker is forked
        assert marks.read_text().index("when_ready") < marks.read_text().index("pre_fork")
        assert len(marked("pre_fork")) == 2 and len(marked("post_fork")) == 2
        assert sorted(line.split(" age ")[1].split()[0] for line in marked("post_fork")) == [
            "1", "2"]
        assert all(" alive True conns " in line for line in marked("post_fork"))
        assert len(marked("post_worker_init")) == 2
        srv.signal(signal.SIGTTIN)
        wait_for(lambda: marked("nworkers_changed 2 3"), timeout=5, what="nworkers_changed")
        srv.signal(signal.SIGHUP)
        wait_for(lambda: marked("on_reload"), timeout=5, what="on_reload")
        wait_for(lambda: marked("child_exit"), timeout=20, what="old workers' child_exit")
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(20) == 0
        assert marked("worker_exit") and marked("on_exit")
        assert re.search(r'"GET /hello\?x=1 HTTP/1\.1" 200 ', srv.log()), "gunicorn log format"


def test_a_hook_that_raises_is_logged_and_the_server_goes_on(tmp_path: Path) -> None:
    conf = tmp_path / "conf.py"
    conf.write_text("def pre_request(worker, req):\n    raise RuntimeError('hook boom')\n"
                    "def post_fork(server, worker):\n    raise RuntimeError('fork boom')\n")
    with Server("tests.apps.basic:app", "-c", str(conf), workers=1) as srv:
        assert srv.get("/hello")[0] == 200
        log = wait_for(lambda: "server hook pre_request raised" in srv.log() and srv.log(),
                       timeout=5, what="the hook's error in the log")
        assert "hook boom" in log and "server hook post_fork raised" in log


def test_on_starting_that_raises_aborts_start_up(tmp_path: Path) -> None:
    conf = tmp_path / "conf.py"
    conf.write_text("def on_starting(server):\n    raise RuntimeError('not today')\n")
    result = run_cli("tests.apps.basic:app", "-c", str(conf), "-b", "127.0.0.1:0")
    assert result.returncode == 2
    assert "on_starting raised" in result.stderr and "not today" in result.stderr


def test_hooks_module_setting(tmp_path: Path) -> None:
    (tmp_path / "myhooks.py").write_text(
        "import os\n"
        "def post_worker_init(worker):\n"
        "    open(os.environ['HOOK_MARK'], 'w').write(str(worker.pid))\n")
    mark = tmp_path / "mark"
    with Server("tests.apps.basic:app", "--hooks", "myhooks", "--pythonpath", str(tmp_path),
                workers=1, env={"HOOK_MARK": str(mark)}) as srv:
        wait_for(mark.exists, timeout=5, what="the hooks module's post_worker_init")
        assert int(mark.read_text()) in srv.worker_pids()


def test_check_config_imports_the_app() -> None:
    bad = run_cli("--check-config", "nosuchmod:app")
    assert bad.returncode == 1, bad
    assert "cannot import module 'nosuchmod'" in bad.stderr
    good = run_cli("--check-config", "tests.apps.basic:app")
    assert good.returncode == 0, good.stderr
    assert 'app = "tests.apps.basic:app"' in good.stdout
    printed = run_cli("--print-config", "nosuchmod:app")  # prints only; imports nothing
    assert printed.returncode == 0 and "access_log = false" in printed.stdout


@pytest.mark.parametrize(("flag", "advice"), [
    (["-k", "gevent"], "one worker type"),
    (["--worker-class=eventlet"], "one worker type"),
    (["--certfile", "c.pem"], "TLS at the reverse proxy"),
    (["-D"], "systemd"),
    (["--statsd-host", "x:1"], "/metrics"),
])
def test_gunicorn_flags_prefork_lacks_are_refused_with_advice(flag: list[str],
                                                              advice: str) -> None:
    result = run_cli(*flag, "tests.apps.basic:app", "--check-config")
    assert result.returncode == 2, result
    assert "is not supported" in result.stderr and advice in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("toml", "hint"), [
    ("worker = 3", "did you mean 'workers'?"),
    ('accesslog = "-"', "gunicorn calls it 'accesslog'; prefork calls it 'access_log'"),
    ('certfile = "c.pem"', "TLS at the reverse proxy"),
    ("gracefull_timeout = 3", "did you mean 'graceful_timeout'?"),
])
def test_typos_get_a_suggestion(tmp_path: Path, toml: str, hint: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml + "\n")
    result = run_cli("-c", str(cfg), "--print-config")
    assert result.returncode == 2
    assert hint in result.stderr
    assert "known settings" not in result.stderr and len(result.stderr) < 400


def test_reload_restarts_workers_when_the_app_changes(tmp_path: Path) -> None:
    app = tmp_path / "reloadme.py"
    app.write_text("def application(e, sr):\n    sr('200 OK', [('Content-Length', '2')])\n"
                   "    return [b'v1']\n")
    with Server("reloadme:application", "--reload", "--pythonpath", str(tmp_path),
                workers=1) as srv:
        assert srv.get("/")[2] == b"v1"
        assert "development feature" in srv.log()
        before = app.stat().st_mtime
        app.write_text("def application(e, sr):\n    sr('200 OK', [('Content-Length', '2')])\n"
                       "    return [b'v2']\n")
        os.utime(app, (before + 2, before + 2))  # a distinct mtime on coarse file systems
        wait_for(lambda: srv.get("/")[2] == b"v2", timeout=15, interval=0.2,
                 what="the new code to be served")
        assert "reload: " in srv.log() and "reloadme.py changed" in srv.log()


def others_can_read(path: Path) -> bool:
    """Can a user other than the owner reach and read `path` (the app's code)?"""
    import stat

    return all(p.stat().st_mode & stat.S_IXOTH for p in path.parents) and \
        bool(path.stat().st_mode & stat.S_IROTH)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_user_and_group_are_dropped_after_bind() -> None:
    if not others_can_read(ROOT / "tests" / "apps" / "basic.py"):
        pytest.skip(f"user nobody cannot read the checkout at {ROOT}")
    nobody = pwd.getpwnam("nobody")
    with Server("tests.apps.basic:app", "--user", "nobody", "--group", str(nobody.pw_gid),
                "--umask", "027", workers=1) as srv:
        assert srv.get("/hello")[0] == 200
        import psutil

        for pid in (srv.pid, *srv.worker_pids()):
            uids = psutil.Process(pid).uids()
            assert uids.real == uids.effective == nobody.pw_uid


def test_small_things_a_switcher_notices(tmp_path: Path) -> None:
    with Server("tests.apps.basic:app", "--access-logfile", "-", "--access-logformat",
                "%(r)s %(s)s %(b)s", "--admin-bind", "127.0.0.1:0", workers=1) as srv:
        status, _, body = srv.get("/raise")
        assert status == 500 and body == b"500 Internal Server Error\n"
        log = wait_for(lambda: "GET /raise HTTP/1.1 500" in srv.log() and srv.log(),
                       timeout=5, what="the access line")
        assert f"GET /raise HTTP/1.1 500 {len(body)}" in log, "%b counts the error page"
        assert "error in app handling GET /raise" in log, "the path is text, not bytes"
        admin = re.search(r"admin listener at http://(\S+) ", log)
        assert admin
        piped = subprocess.run(
            f"{sys.executable} -m prefork status --admin-bind {admin.group(1)} | head -1",
            shell=True, capture_output=True, text=True, timeout=30,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=str(ROOT))
        assert piped.stdout.startswith("prefork ") and "Traceback" not in piped.stderr
    printed = run_cli("--print-config", "--access-logfile", "false")
    assert "access_log = false" in printed.stdout
    assert "prefork-serve status" in run_cli("--help").stdout


def test_a_worker_killed_after_graceful_timeout_is_reported_once(tmp_path: Path) -> None:
    with Server("tests.apps.faults:app", "--graceful-timeout", "1", workers=1) as srv:
        sock = __import__("socket").create_connection((srv.host, srv.port), timeout=10)
        sock.sendall(b"GET /hang?mark=%s/h HTTP/1.1\r\nHost: x\r\n\r\n" % str(tmp_path).encode())
        wait_for(lambda: (tmp_path / "h").exists(), timeout=5, what="the hang to run")
        srv.signal(signal.SIGTERM)
        srv.wait_exit(15)
        sock.close()
        assert srv.log().count("did not finish in time; killing it") == 1
        assert "killing it (1 request(s) in progress cut)" in srv.log()


@pytest.mark.parametrize(("args", "message"), [
    (["--workerz", "2"], "did you mean --workers?"),
    (["--keep-alve", "2"], "did you mean --keep-alive?"),
    (["--dogstatsd-tags", "env:prod"], "is not supported"),
    (["--log-syslog"], "is not supported"),
    (["--paste", "x.ini"], "MODULE:NAME"),
    (["--reuse-port"], "is not supported"),
])
def test_every_gunicorn_flag_and_typo_gets_one_line(args: list[str], message: str) -> None:
    result = run_cli(*args, "tests.apps.basic:app", "--check-config")
    assert result.returncode == 2, result
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("args", [
    ["-R"], ["--enable-stdio-inheritance"], ["-n", "myapp"], ["--worker-tmp-dir", "/dev/shm"],
    ["--no-sendfile"], ["--initgroups"], ["--reload-engine", "poll"],
    ["--log-syslog-facility", "user"], ["--ssl-version", "TLS"], ["-k", "sync"],
    ["--dirty-threads", "1"],
])
def test_gunicorn_flags_without_effect_or_at_default_are_accepted(args: list[str]) -> None:
    result = run_cli(*args, "tests.apps.basic:app", "--print-config")
    assert result.returncode == 0, result.stderr
    assert "usage:" not in result.stderr


def test_v_prints_the_version() -> None:
    result = run_cli("-v")
    assert result.returncode == 0 and result.stdout.startswith("prefork ")


def test_logconfig_dict_written_for_gunicorn_shapes_prefork_s_lines(tmp_path: Path) -> None:
    """A gunicorn config's logconfig_dict (the shape of gunicorn's documented example:
    handlers on 'gunicorn.error' and 'gunicorn.access'): prefork's error lines and access
    lines go through those loggers, formatted by the dict's formatters."""
    errors, access = tmp_path / "error.log", tmp_path / "access.log"
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(f"""
logconfig_dict = {{
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {{
        "plain": {{"format": "ERR|%(levelname)s|%(message)s"}},
        "access": {{"format": "ACC|%(message)s"}},
    }},
    "handlers": {{
        "error_file": {{"class": "logging.FileHandler", "formatter": "plain",
                       "filename": {str(errors)!r}}},
        "access_file": {{"class": "logging.FileHandler", "formatter": "access",
                        "filename": {str(access)!r}}},
    }},
    "loggers": {{
        "gunicorn.error": {{"level": "INFO", "handlers": ["error_file"], "propagate": False}},
        "gunicorn.access": {{"level": "INFO", "handlers": ["access_file"],
                            "propagate": False}},
    }},
}}
""")
    argv = [sys.executable, "-m", "prefork", "-c", str(conf), "tests.apps.basic:app",
            "--bind", "127.0.0.1:0", "--workers", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        port = int(wait_for(lambda: errors.exists() and re.search(
            r"ERR\|INFO\|listening at http://127\.0\.0\.1:(\d+)", errors.read_text()),
            timeout=20, what="the listening line in the dict's error file").group(1))
        wait_for(lambda: "is ready" in errors.read_text(), timeout=20, what="a ready worker")
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/hello?via=dict")
        assert conn.getresponse().read() == b"Hello, world!"
        conn.close()
        wait_for(lambda: access.exists() and "ACC|" in access.read_text(), timeout=10,
                 what="the access line in the dict's access file")
        assert '"GET /hello?via=dict HTTP/1.1" 200' in access.read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def test_script_name_in_the_environment_mounts_the_app_as_gunicorn_does() -> None:
    """gunicorn takes SCRIPT_NAME from its environment: the app is mounted under it
    (SCRIPT_NAME set, PATH_INFO the rest), as its wsgi.py does."""
    import json

    with Server("tests.apps.basic:app", env={"SCRIPT_NAME": "/app"}) as srv:
        status, _, body = srv.get("/app/environ")
        seen = json.loads(body)
    assert status == 200
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("/app", "/environ")
