"""Access-log formats: presets, atoms, escaping, JSON."""

from __future__ import annotations

import json
import re

import pytest

from prefork import config
from prefork.accesslog import Entry, compile_format, is_off
from prefork.errors import ConfigError


def entry(**kw: object) -> Entry:
    base = dict(remote="10.1.2.3", method="GET", target="/a/b?x=1", protocol="HTTP/1.1",
                status=200, body_bytes=1234, duration_s=0.0123,
                request_headers=[(b"User-Agent", b"curl/8"), (b"Referer", b"http://r/")],
                response_headers=[("Content-Type", "text/plain")], worker=2)
    base.update(kw)
    return Entry(**base)  # type: ignore[arg-type]


def test_common_and_combined() -> None:
    line = compile_format("common")(entry())
    assert re.fullmatch(r'10\.1\.2\.3 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                        r'"GET /a/b\?x=1 HTTP/1\.1" 200 1234', line), line
    combined = compile_format("combined")(entry())
    assert combined.endswith('"http://r/" "curl/8"')


def test_atoms() -> None:
    fmt = "%m %U %q %H %s %b %B %D %T %w %{Content-Type}o %{X-Missing}i %%"
    assert compile_format(fmt)(entry(body_bytes=0)) == \
        "GET /a/b ?x=1 HTTP/1.1 200 - 0 12300 0 2 text/plain - %"


def test_values_are_escaped_so_lines_cannot_be_forged() -> None:
    evil = entry(request_headers=[(b"User-Agent", b'x" 200 9 "\\\x1b[31m')],
                 target='/"quoted"')
    line = compile_format("combined")(evil)
    assert '\\"quoted\\"' in line
    assert 'x\\" 200 9 \\"\\\\\\x1b[31m' in line
    assert "\x1b" not in line and "\n" not in line


def test_json_lines_are_valid_json() -> None:
    line = compile_format("json")(entry(request_headers=[(b"User-Agent", b'a"b\\c\xff')]))
    obj = json.loads(line)
    assert obj["status"] == 200 and obj["path"] == "/a/b" and obj["query"] == "x=1"
    assert obj["user_agent"] == 'a"b\\c\xff' and obj["duration_us"] == 12300
    assert "\n" not in line


def test_unknown_atom_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="%Z"):
        compile_format("%h %Z")
    with pytest.raises(ConfigError, match="access_log_format"):
        config.resolve({"access_log_format": "%Q"})


def test_access_log_off_spellings(tmp_path: object) -> None:
    assert is_off("") and is_off("false") and is_off("off") and not is_off("-")
    path = f"{tmp_path}/c.toml"
    with open(path, "w") as fh:
        fh.write("[logging]\naccess_log = false\n")
    assert config.resolve(path=path).access_log == ""


@pytest.mark.parametrize(("sent", "authorization"), [
    (0, b"Basic " + __import__("base64").b64encode(b"alice:secret")),
    (13, b"Bearer abc"),
    (5, b"Basic !!notbase64"),
    (0, b""),
])
def test_gunicorn_atoms_b_and_u_are_gunicorn_s(sent: int, authorization: bytes) -> None:
    """%(b)s and %(u)s as gunicorn 27's own logger computes them (its atoms())."""
    glogging = pytest.importorskip("gunicorn.glogging")
    import datetime
    import types

    from gunicorn.config import Config

    headers = [(b"Host", b"a")] + ([(b"Authorization", authorization)] if authorization else [])
    ours = compile_format("%(b)s %(u)s")(entry(body_bytes=sent, request_headers=headers))
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": "/", "SERVER_PROTOCOL": "HTTP/1.1",
               **({"HTTP_AUTHORIZATION": authorization.decode()} if authorization else {})}
    resp = types.SimpleNamespace(status="200 OK", sent=sent, headers=[])
    req = types.SimpleNamespace(headers=[])
    atoms = glogging.Logger(Config()).atoms(resp, req, environ, datetime.timedelta(0))
    assert ours == f"{atoms['b']} {atoms['u']}"


def test_gunicorn_environ_atoms_of_the_request_are_gunicorn_s() -> None:
    """%({KEY}e)s for the keys the server makes from the request, as gunicorn 27's logger
    gives them from the environ (an app's own keys are "-" in prefork)."""
    glogging = pytest.importorskip("gunicorn.glogging")
    import datetime
    import types

    from gunicorn.config import Config

    keys = ["http_x_real_ip", "remote_addr", "request_method", "path_info", "query_string",
            "raw_uri", "server_protocol"]
    fmt = " ".join(f"%({{{k}}}e)s" for k in keys)
    ours = compile_format(fmt)(entry(remote="10.0.0.9", method="POST", target="/a/b?x=1&y=2",
                                     protocol="HTTP/1.1",
                                     request_headers=[(b"X-Real-IP", b"192.0.2.7")]))
    environ = {"REQUEST_METHOD": "POST", "RAW_URI": "/a/b?x=1&y=2", "PATH_INFO": "/a/b",
               "QUERY_STRING": "x=1&y=2", "SERVER_PROTOCOL": "HTTP/1.1",
               "REMOTE_ADDR": "10.0.0.9", "HTTP_X_REAL_IP": "192.0.2.7"}
    resp = types.SimpleNamespace(status="200 OK", sent=0, headers=[])
    atoms = glogging.Logger(Config()).atoms(resp, types.SimpleNamespace(headers=[]), environ,
                                            datetime.timedelta(0))
    assert ours == " ".join(atoms[f"{{{k}}}e"] for k in keys)
