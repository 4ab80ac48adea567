"""prefork's table of gunicorn's settings (prefork/gunicorn_names.py) against gunicorn
itself, and gunicorn's inputs read through the real CLI compared with what gunicorn 27
resolves from the same input (its own config parser is the oracle)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from prefork import config, gunicorn_names
from prefork.config_checks import ZERO_IS_UNLIMITED
from tests.server import ROOT

gconfig = pytest.importorskip("gunicorn.config")
pytestmark = pytest.mark.timeout(60)

SETTINGS = gconfig.Config().settings
HANDLED_BY_THE_CLI = {"config"}  # -c: the file itself


def classes(name: str) -> list[str]:
    found = []
    if gunicorn_names.RENAMED.get(name, name) in config.FIELDS:
        found.append("mapped")
    if name in gunicorn_names.HOOKS:
        found.append("hook")
    if name in gunicorn_names.IDLE_HOOKS:
        found.append("idle hook")
    if name in gunicorn_names.NO_EFFECT:
        found.append("no effect")
    if name in gunicorn_names.AT_DEFAULT:
        found.append("at default")
    if name in HANDLED_BY_THE_CLI:
        found.append("cli")
    return found


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_gunicorn_setting_has_exactly_one_answer(name: str) -> None:
    assert len(classes(name)) == 1, (name, classes(name))


@pytest.mark.parametrize("name", sorted(gunicorn_names.AT_DEFAULT))
def test_gunicorn_s_own_default_is_accepted(name: str) -> None:
    if name in SETTINGS:
        assert gunicorn_names.at_default(name, SETTINGS[name].default)


@pytest.mark.parametrize("name", sorted(n for n, s in SETTINGS.items() if s.cli))
def test_every_gunicorn_flag_is_known_with_its_setting(name: str) -> None:
    setting = SETTINGS[name]
    for flag in setting.cli:
        assert gunicorn_names.FLAGS[flag][0] == name
        takes_value = setting.action not in ("store_true", "store_const")
        assert gunicorn_names.FLAGS[flag][1] == takes_value, flag


# -- inputs, resolved by both ---------------------------------------------------------------
APP = "tests.apps.basic:app"
COMPARED = ("workers", "threads", "timeout", "bind", "forwarded_allow_ips", "keepalive",
            "max_requests", "limit_request_line", "limit_request_fields",
            "limit_request_field_size", "pythonpath")
GUNICORN_SCRIPT = """
import json, sys
from gunicorn.app.wsgiapp import WSGIApplication
args, names = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.argv = ["gunicorn", *args]
cfg = WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]").cfg
print(json.dumps({k: cfg.settings[k].get() for k in names}, default=str))
"""


def environment(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFORK_", "GUNICORN_")) and k not in (
               "WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS", "SCRIPT_NAME")}
    env["PYTHONPATH"] = str(ROOT)
    return {**env, **extra}


def prefork_resolved(args: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    run = subprocess.run([sys.executable, "-m", "prefork", *args, "--print-config"],
                         capture_output=True, text=True, env=environment(env), cwd=cwd,
                         timeout=30)
    assert run.returncode == 0, run.stderr
    return tomllib.loads(run.stdout)


def gunicorn_resolved(args: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    run = subprocess.run([sys.executable, "-c", GUNICORN_SCRIPT, json.dumps(args),
                          json.dumps(COMPARED)], capture_output=True, text=True,
                         env=environment(env), cwd=cwd, timeout=30)
    assert run.returncode == 0, run.stderr
    return dict(json.loads(run.stdout))


def same(name: str, ours: Any, theirs: Any) -> bool:
    """prefork's value means what gunicorn's does."""
    if name in ZERO_IS_UNLIMITED and theirs == 0:
        return bool(ours == ZERO_IS_UNLIMITED[name])
    if name == "bind":  # as gunicorn's own parser reads each address
        from gunicorn.util import parse_address
        return [parse_address(b) for b in ours] == [parse_address(b) for b in theirs]
    if name == "forwarded_allow_ips" and isinstance(theirs, str):
        theirs = [v.strip() for v in theirs.split(",")]
    if name == "pythonpath":
        return list(ours) == ([p.strip() for p in theirs.split(",")] if theirs else [])
    return bool(ours == theirs)


# name: (argv after the app, environment, files in the working directory, the settings
# the input sets: compared; the others keep each server's own default, which differ).
CASES: dict[str, tuple[list[str], dict[str, str], dict[str, str], tuple[str, ...]]] = {
    "GUNICORN_CMD_ARGS": ([], {"GUNICORN_CMD_ARGS": "--workers 3 --timeout 12 -b :9001"}, {},
                          ("workers", "timeout", "bind")),
    "GUNICORN_CMD_ARGS under the command line": (
        ["--workers", "5"], {"GUNICORN_CMD_ARGS": "--workers 3 --threads 4"}, {},
        ("workers", "threads")),
    "./gunicorn.conf.py read by default": (
        [], {}, {"gunicorn.conf.py": "workers = 4\nthreads = 3\nbind = '127.0.0.1:9002'\n"},
        ("workers", "threads", "bind")),
    "GUNICORN_CMD_ARGS over ./gunicorn.conf.py": (
        [], {"GUNICORN_CMD_ARGS": "--threads 6"}, {"gunicorn.conf.py": "threads = 3\n"},
        ("threads",)),
    "-c FILE without .py is Python": (
        ["-c", "settings.conf"], {}, {"settings.conf": "workers = 2\nkeepalive = 7\n"},
        ("workers", "keepalive")),
    "-c python:MODULE": (["-c", "python:gconf_mod"], {},
                         {"gconf_mod.py": "workers = 6\nmax_requests = 100\n"},
                         ("workers", "max_requests")),
    "WEB_CONCURRENCY": ([], {"WEB_CONCURRENCY": "7"}, {}, ("workers",)),
    "WEB_CONCURRENCY under the file": ([], {"WEB_CONCURRENCY": "7"},
                                       {"gunicorn.conf.py": "workers = 2\n"}, ("workers",)),
    "FORWARDED_ALLOW_IPS": ([], {"FORWARDED_ALLOW_IPS": "10.0.0.1, 10.0.0.2"}, {},
                            ("forwarded_allow_ips",)),
    "--timeout 0": (["--timeout", "0"], {}, {}, ("timeout",)),
    "-b HOST": (["-b", "0.0.0.0"], {}, {}, ("bind",)),
    "-b :PORT": (["-b", ":8080"], {}, {}, ("bind",)),
    "-b localhost": (["-b", "localhost"], {}, {}, ("bind",)),
    "comma-separated --forwarded-allow-ips": (
        ["--forwarded-allow-ips", "10.1.1.1,10.1.1.2"], {}, {}, ("forwarded_allow_ips",)),
    "--limit-request-line 0 and friends": (
        ["--limit-request-line", "0", "--limit-request-field_size", "0",
         "--limit-request-fields", "0"], {}, {},
        ("limit_request_line", "limit_request_field_size", "limit_request_fields")),
    "--pythonpath a,b": (["--pythonpath", "/srv/a,/srv/b"], {}, {}, ("pythonpath",)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_input_gunicorn_reads_resolves_as_gunicorn_resolves_it(case: str,
                                                                   tmp_path: Path) -> None:
    args, env, files, names = CASES[case]
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    if "gconf_mod.py" in files:
        env = {**env, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    ours = prefork_resolved([APP, *args], env, tmp_path)
    theirs = gunicorn_resolved([APP, *args], env, tmp_path)
    assert {n: theirs[n] for n in names} != {n: SETTINGS[n].default for n in names}, \
        "the input sets what is compared"
    assert {n: (ours[n], theirs[n]) for n in names if not same(n, ours[n], theirs[n])} == {}


def test_an_example_config_of_gunicorn_s_own_starts_its_settings_resolved(
        tmp_path: Path) -> None:
    """gunicorn's examples/example_config.py (tests/gunicorn_configs/), whose values are
    gunicorn's defaults and None for the optional ones: accepted whole."""
    (tmp_path / "example_config.py").write_text(
        (ROOT / "tests" / "gunicorn_configs" / "example_config.py").read_text())
    ours = prefork_resolved(["-c", "example_config.py"], {}, tmp_path)
    assert ours["bind"] == ["127.0.0.1:8000"] and ours["workers"] == 1
    assert ours["threads"] == 1  # worker_class = 'sync': one request at a time per worker
    assert ours["env"] == ["DJANGO_SECRET_KEY=something", "SPAM=eggs"]
    assert ours["pidfile"] == "" and ours["user"] == "" and ours["umask"] == ""


def test_the_gunicorn_error_log_line_is_gunicorn_s_own() -> None:
    from gunicorn import glogging

    from prefork import log

    generic = glogging.CONFIG_DEFAULTS["formatters"]["generic"]
    assert (generic["format"],
                                                           generic["datefmt"]) == (log.GUNICORN_FORMAT, log.GUNICORN_DATEFMT)


def test_a_gunicorn_python_config_writes_gunicorn_s_error_line(tmp_path: Path) -> None:
    (tmp_path / "gunicorn.conf.py").write_text("workers = 1\n")
    assert prefork_resolved([APP], {}, tmp_path)["error_log_format"] == "gunicorn"
    (tmp_path / "gunicorn.conf.py").unlink()
    assert prefork_resolved([APP], {}, tmp_path)["error_log_format"] == "prefork"
