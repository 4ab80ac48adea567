"""The access log: one line per request, in a format compiled once per worker.

Formats use Apache's atoms (mod_log_config), or a preset:

  common    %h %l %u %t "%r" %s %b
  combined  %h %l %u %t "%r" %s %b "%{Referer}i" "%{User-Agent}i"
  json      one JSON object per line (properly escaped)

Atoms: %h remote address, %l and %u "-", %t time [day/Mon/year:H:M:S zone], %r request
line, %m method, %U path, %q query (with its "?"), %H protocol, %s status, %b body bytes
("-" for none), %B body bytes, %D duration in µs, %T duration in s, %P pid, %w worker
number, %{Name}i a request header, %{Name}o a response header, %% a percent sign.
Text values are escaped (quotes, backslashes and control characters) so a client cannot
forge a log line.

gunicorn's syntax is accepted too, so a gunicorn access_log_format works unchanged:
%(h)s %(l)s %(u)s %(t)s %(r)s %(m)s %(U)s %(q)s (no "?") %(H)s %(s)s %(b)s %(B)s
%(f)s referer, %(a)s user agent, %(T)s s, %(M)s ms, %(D)s µs, %(L)s s with decimals,
%(p)s <pid>, %({name}i)s, %({name}o)s. An unknown atom in either syntax is refused at
start-up.

Built in each worker after fork; `AccessLog.write` is called by pool threads, each line
with a single os.write() to a file opened O_APPEND (or to stdout), so lines from
concurrent threads never interleave. With access_log off, no AccessLog exists and the
request path pays one `is None` check.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from prefork.errors import ConfigError

PRESETS = {
    "common": '%h %l %u %t "%r" %s %b',
    "combined": '%h %l %u %t "%r" %s %b "%{Referer}i" "%{User-Agent}i"',
}
_ATOM = re.compile(r"%(?:\{([^}]+)\})?([a-zA-Z%])")
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\xff"\\]')


@dataclass(slots=True)
class Entry:
    """What the log knows of one finished request."""

    remote: str
    method: str
    target: str
    protocol: str
    status: int
    body_bytes: int
    duration_s: float
    request_headers: list[tuple[bytes, bytes]]
    response_headers: list[tuple[str, str]]
    worker: int

    def request_header(self, name: str) -> str:
        wanted = name.lower().encode("latin-1")
        for key, value in self.request_headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return ""

    def response_header(self, name: str) -> str:
        wanted = name.lower()
        for key, value in self.response_headers:
            if key.lower() == wanted:
                return value
        return ""


def escape(text: str) -> str:
    if not _UNSAFE.search(text):
        return text
    return _UNSAFE.sub(lambda m: "\\" + m.group() if m.group() in '"\\'
                       else f"\\x{ord(m.group()):02x}", text)


def _clf_time(_: Entry) -> str:
    return time.strftime("[%d/%b/%Y:%H:%M:%S %z]")


Atom = Callable[[Entry], str]
_SIMPLE: dict[str, Atom] = {
    "h": lambda e: e.remote or "-",
    "l": lambda e: "-",
    "u": lambda e: "-",
    "t": _clf_time,
    "r": lambda e: escape(f"{e.method} {e.target} {e.protocol}"),
    "m": lambda e: e.method,
    "U": lambda e: escape(e.target.split("?", 1)[0]),
    "q": lambda e: escape("?" + e.target.split("?", 1)[1]) if "?" in e.target else "",
    "H": lambda e: e.protocol,
    "s": lambda e: str(e.status),
    "b": lambda e: str(e.body_bytes) if e.body_bytes else "-",
    "B": lambda e: str(e.body_bytes),
    "D": lambda e: str(int(e.duration_s * 1_000_000)),
    "T": lambda e: str(int(e.duration_s)),
    "P": lambda e: str(os.getpid()),
    "w": lambda e: str(e.worker),
    "%": lambda e: "%",
}


# gunicorn's atoms that differ from Apache's (or that Apache lacks).
_GUNICORN: dict[str, Atom] = {
    **_SIMPLE,
    "q": lambda e: escape(e.target.split("?", 1)[1]) if "?" in e.target else "",
    "f": lambda e: escape(e.request_header("Referer")) or "-",
    "a": lambda e: escape(e.request_header("User-Agent")) or "-",
    "M": lambda e: str(int(e.duration_s * 1000)),
    "L": lambda e: f"{e.duration_s:.6f}",
    "p": lambda e: f"<{os.getpid()}>",
    "b": lambda e: str(e.body_bytes),  # gunicorn's: "0" for an empty body, not "-"
    "u": lambda e: basic_auth_user(e.request_header("Authorization")) or "-",
}
_GUNICORN_ATOM = re.compile(r"%\(([^)]*)\)s")


def basic_auth_user(authorization: str) -> str:
    """The user name of a Basic Authorization header (gunicorn's %(u)s); "" otherwise."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "basic" or not token:
        return ""
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8", "replace")
    except (ValueError, binascii.Error):
        return ""
    return escape(decoded.partition(":")[0])


def _gunicorn_parts(fmt: str) -> list[str | Atom]:
    parts: list[str | Atom] = []
    pos = 0
    for m in _GUNICORN_ATOM.finditer(fmt):
        if m.start() > pos:
            parts.append(fmt[pos:m.start()])
        key = m.group(1)
        header = re.fullmatch(r"\{([^}]+)\}([ioe])", key)
        if header and header.group(2) == "e":
            parts.append(_environ_atom(header.group(1)))
        elif header:
            parts.append(_header_atom(header.group(1), request=header.group(2) == "i"))
        elif key in _GUNICORN and key not in ("%", "P", "w"):
            parts.append(_GUNICORN[key])
        else:
            raise ConfigError("access_log_format", fmt,
                              f"unknown gunicorn atom {m.group()!r}; known: %(h)s %(l)s "
                              "%(u)s %(t)s %(r)s %(m)s %(U)s %(q)s %(H)s %(s)s %(b)s %(B)s "
                              "%(f)s %(a)s %(T)s %(M)s %(D)s %(L)s %(p)s %({header}i)s "
                              "%({header}o)s %({KEY}e)s")
        pos = m.end()
    if pos < len(fmt):
        parts.append(fmt[pos:])
    return parts


def _environ_atom(key: str) -> Atom:
    """gunicorn's %({KEY}e)s: a key of the request's WSGI environ, for the keys the server
    makes from the request (HTTP_* headers, REMOTE_ADDR, REQUEST_METHOD, PATH_INFO,
    QUERY_STRING, RAW_URI, SERVER_PROTOCOL); a key the app or a middleware adds is "-"."""
    key = key.upper()
    if key.startswith("HTTP_"):
        return _header_atom(key[5:].replace("_", "-"), request=True)
    fixed: dict[str, Atom] = {
        "REMOTE_ADDR": lambda e: e.remote,
        "REQUEST_METHOD": lambda e: escape(e.method),
        "PATH_INFO": lambda e: escape(e.target.split("?", 1)[0]),
        "QUERY_STRING": lambda e: escape(e.target.partition("?")[2]),
        "RAW_URI": lambda e: escape(e.target),
        "SERVER_PROTOCOL": lambda e: e.protocol,
    }
    return fixed.get(key, lambda e: "-")


def _header_atom(name: str, request: bool) -> Atom:
    def atom(e: Entry) -> str:
        return escape(e.request_header(name) if request else e.response_header(name)) or "-"

    return atom


def compile_format(fmt: str) -> Callable[[Entry], str]:
    """Turn a format (or preset name) into a function Entry -> line (without newline)."""
    if fmt == "json":
        return _json_line
    fmt = PRESETS.get(fmt, fmt)
    parts: list[str | Atom] = []
    pos = 0
    if _GUNICORN_ATOM.search(fmt):
        parts = _gunicorn_parts(fmt)
        fmt = ""  # no Apache atoms to look for
    for m in _ATOM.finditer(fmt):
        if m.start() > pos:
            parts.append(fmt[pos:m.start()])
        arg, code = m.group(1), m.group(2)
        if arg is not None and code in "io":
            parts.append(_header_atom(arg, request=code == "i"))
        elif arg is None and code in _SIMPLE:
            parts.append(_SIMPLE[code])
        else:
            raise ConfigError("access_log_format", fmt,
                              f"unknown atom {m.group()!r}; use common, combined, json or "
                              "atoms such as %h %t %r %s %b %D %{Header}i")
        pos = m.end()
    if fmt and pos < len(fmt):
        parts.append(fmt[pos:])

    def render(entry: Entry) -> str:
        return "".join(p if isinstance(p, str) else p(entry) for p in parts)

    return render


def _json_line(e: Entry) -> str:
    path, _, query = e.target.partition("?")
    return json.dumps({
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "remote_addr": e.remote,
        "method": e.method, "path": path, "query": query, "protocol": e.protocol,
        "status": e.status, "bytes": e.body_bytes,
        "duration_us": int(e.duration_s * 1_000_000),
        "referer": e.request_header("Referer"), "user_agent": e.request_header("User-Agent"),
        "worker": e.worker, "pid": os.getpid(),
    }, ensure_ascii=True)


class AccessLog:
    """The access log: one line per request to `target` (a file, "-" for stdout, or off),
    and to `logger` (gunicorn.access, when a logging configuration gave it handlers)."""

    def __init__(self, target: str, fmt: str, logger: logging.Logger | None = None) -> None:
        self.target = target
        self.render = compile_format(fmt)
        self.logger = logger
        self.fd = -1
        self.open()

    def open(self) -> None:
        if is_off(self.target):
            self.fd = -1
        elif self.target == "-":
            self.fd = 1
        else:
            self.fd = os.open(self.target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def reopen(self) -> None:
        """After log rotation (SIGUSR1): point at a fresh file of the same name."""
        if self.target != "-" and not is_off(self.target):
            old = self.fd
            self.open()
            os.close(old)

    def write(self, entry: Entry) -> None:
        text = self.render(entry)
        if self.logger is not None:
            self.logger.info(text)
        if self.fd >= 0:
            with contextlib.suppress(OSError):  # a full disk must not fail the request
                os.write(self.fd, (text + "\n").encode("utf-8", "backslashreplace"))


def is_off(target: str) -> bool:
    return target.strip().lower() in ("", "false", "off", "no", "none")
