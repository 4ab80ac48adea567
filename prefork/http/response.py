"""Response framing: status lines, header validation, the Date cache, chunked encoding.

Bytes out, no sockets. The connection decides *what* to send; this module decides how the
bytes look, and refuses header names or values that could split a response (RFC 9110 §5.5:
no CR, LF or NUL in a field value; names are tokens).

Shared by all pool threads of a worker: everything here is immutable or replaced whole
(the Date cache is a tuple swapped atomically), so no locks are needed.
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from http import HTTPStatus

from prefork.errors import HTTPError

SERVER = b"prefork"
# Hop-by-hop fields (RFC 9110 §7.6.1) are the server's business, not the app's: PEP 3333
# forbids an app from setting them. `Connection: close` is the one we honour (by closing).
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

_date_cache: tuple[int, bytes] = (0, b"")


def date_header() -> bytes:
    """`Date: ...\\r\\n` for the current second, formatted once per second (RFC 9110 §6.6.1)."""
    global _date_cache
    now = int(time.time())
    cached = _date_cache
    if cached[0] == now:
        return cached[1]
    line = b"Date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
    _date_cache = (now, line)
    return line


def status_allows_body(code: int) -> bool:
    """RFC 9110 §6.4.1: 1xx, 204 and 304 responses never have content."""
    return not (code < 200 or code == 204 or code == 304)


_STATUS_CODES: dict[str, int] = {}  # status lines already validated -> their code
_NAMES: dict[str, str] = {}  # header names already validated -> lower case
_CACHE_MAX = 512  # both are keyed by what apps send: bound them


def status_code(status: object) -> int:
    """check_status(), remembered: an app sends the same few status lines over and over."""
    code = _STATUS_CODES.get(status) if type(status) is str else None
    if code is None:
        code = check_status(status)
        if len(_STATUS_CODES) < _CACHE_MAX:
            _STATUS_CODES[status] = code  # type: ignore[index]
    return code


def header_name(name: object, value: object) -> str:
    """check_header(), with the name's checks remembered (values are checked each time)."""
    if type(name) is str and type(value) is str:
        lname = _NAMES.get(name)
        if lname is not None and not _BAD_VALUE.search(value):
            return lname
    lname = check_header(name, value)
    if len(_NAMES) < _CACHE_MAX:
        _NAMES[name] = lname  # type: ignore[index]
    return lname


def response_fields(headers: list[tuple[str, str]], /) -> tuple[int | None, bool, bool]:
    """An app's header list checked, field by field: (its Content-Length or None, whether
    it has a Connection field, whether that says close). The native engine's is
    prefork._native.response_fields, which must agree with this one."""
    length = None
    has_connection = close = False
    for item in headers:
        if not isinstance(item, tuple) or len(item) != 2:
            raise TypeError(f"each header must be a (name, value) tuple, got {item!r}")
        name, value = item
        # header_name()'s cached case inline (a call per field is a tenth of this loop)
        lname = _NAMES.get(name) if type(name) is str and type(value) is str else None
        if lname is None or _BAD_VALUE.search(value):
            lname = header_name(name, value)
        if lname == "content-length":
            if not value.strip().isdigit():
                raise ValueError(f"invalid Content-Length {value!r}")
            length = int(value)
        elif lname == "connection":
            has_connection = True
            if "close" in value.lower():
                close = True
    return length, has_connection, close


def check_status(status: object) -> int:
    """Validate a WSGI status string ("200 OK"); returns the numeric code."""
    if not isinstance(status, str):
        raise TypeError(f"status must be a str, not {type(status).__name__}")
    if len(status) < 4 or status[3] != " " or not status[:3].isdigit() or status[0] == "0":
        raise ValueError(f"status must look like '200 OK', got {status!r}")
    if _BAD_VALUE.search(status):
        raise ValueError(f"status contains a control character: {status!r}")
    return int(status[:3])


def check_header(name: object, value: object) -> str:
    """Validate one app header; returns its lower-cased name."""
    if not isinstance(name, str) or not isinstance(value, str):
        raise TypeError(f"header name and value must be str: {name!r}: {value!r}")
    if not _TOKEN.match(name):
        raise ValueError(f"invalid header name {name!r}")
    if _BAD_VALUE.search(value):
        raise ValueError(f"header {name!r} has a control character (CR, LF or NUL) in its value")
    lname = name.lower()
    if lname in HOP_BY_HOP and lname != "connection":
        raise ValueError(f"hop-by-hop header {name!r} may not be set by a WSGI app (PEP 3333)")
    return lname


def encode_head(status: str, headers: list[tuple[str, str]], extra: bytes, /) -> bytes:
    """Serialise a response head. `extra` holds the server's own fields (framing, Date...).
    The native engine's is prefork._native.encode_head, which must agree with this one."""
    parts = ["HTTP/1.1 ", status, "\r\n"]
    for name, value in headers:
        parts += (name, ": ", value, "\r\n")
    return "".join(parts).encode("latin-1") + extra + b"\r\n"


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 §7.1)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


_REASONS = {status.value: status.phrase for status in HTTPStatus}


def server_head(code: int, fields: list[tuple[str, str]], *, length: int | None,
                close: bool, reason: str | None = None, server: bytes = SERVER) -> bytes:
    """The head of a response the server writes itself (a refusal, a static file, the
    admin listener): each field checked as an app's would be, then Server, Date (from the
    cache), Content-Length (None: none, as for 304) and Connection: close if asked."""
    for name, value in fields:
        check_header(name, value)
    extra = b"".join((
        b"Server: " + server + b"\r\n",
        date_header(),
        b"" if length is None else b"Content-Length: %d\r\n" % length,
        b"Connection: close\r\n" if close else b"",
    ))
    return encode_head(f"{code} {reason or _REASONS.get(code, 'Unknown')}", fields, extra)


def error_body(err: HTTPError) -> bytes:
    """The plain-text page of an error response: the status, and the detail if it adds one."""
    text = f"{err.status} {err.reason}" + (f": {err.detail}" if err.detail != err.reason else "")
    return (text + "\n").encode("latin-1", "replace")


def error_response(err: HTTPError) -> bytes:
    """A complete plain-text response for a request we refuse; the connection closes."""
    body = error_body(err)
    return server_head(err.status, [("Content-Type", "text/plain; charset=utf-8")],
                       length=len(body), close=True, reason=err.reason) + body
