"""Both parsers over the same bytes: prefork's (llhttp plus our checks, plus the WSGI
layer's) and h11's (pure Python, independent of llhttp).

`compare(data)` returns None when they agree — the same requests with the same method,
target, version, fields and body, and both stopping (or not) at the same point — or a
`Difference` naming what differs. `explain(diff)` says which documented, reasoned
difference it is (docs/CONFORMANCE.md, "Where prefork and h11 differ"), or None: an
unexplained difference is a bug in one of them, to be fixed here or documented there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import h11

from prefork.errors import HTTPError
from prefork.http.parser import ParserLimits, RequestParser
from prefork.wsgi import base_environ, build_environ

LIMITS = {"limit_request_line": 8190, "limit_request_fields": 100,
          "limit_request_field_size": 8190, "head_limit": 8190 + 100 * 8192 + 4,
          "max_body": 1 << 20, "framing_limit": 8192}
BASE = base_environ("localhost", "80", "", False)
# llhttp's method table (the methods prefork can frame); any other token is a 501 here.
LLHTTP_METHODS = frozenset(
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND "
    b"PROPPATCH SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE "
    b"M-SEARCH NOTIFY SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE "
    b"QUERY".split())


@dataclass
class Parsed:
    method: bytes
    target: bytes
    version: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass
class Outcome:
    requests: list[Parsed] = field(default_factory=list)
    error: str | None = None  # why it stopped, if it refused something
    status: int = 0
    closing: bool = False  # it stopped because the connection closes after this response


@dataclass
class Difference:
    data: bytes
    ours: Outcome
    theirs: Outcome
    what: str  # "accepted" (one refused what the other took) or a field that differs


def prefork(data: bytes) -> Outcome:
    parser = RequestParser(ParserLimits(**LIMITS))
    parser.feed(data)
    out = Outcome()
    for req in parser.ready:
        if not req.body.complete:
            break
        parsed = Parsed(req.method.encode(), req.target, req.version.encode(),
                        [(n.lower(), v) for n, v in req.headers], req.body.read())
        try:
            build_environ(req, BASE, "127.0.0.1", "1")
        except HTTPError as exc:
            out.error, out.status = exc.detail, exc.status
            return out
        out.requests.append(parsed)
        if not req.keep_alive:
            return out
    if parser.error is not None:
        out.error, out.status = parser.error.detail, parser.error.status
    return out


def theirs(data: bytes) -> Outcome:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 21)
    conn.receive_data(data)
    out = Outcome()
    current: Parsed | None = None
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return out
            if isinstance(event, h11.Request):
                current = Parsed(event.method, event.target, event.http_version,
                                 [(n.lower(), v) for n, v in event.headers.raw_items()],
                                 b"")
            elif isinstance(event, h11.Data) and current is not None:
                current.body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage) and current is not None:
                out.requests.append(current)
                current = None
                conn.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
                conn.send(h11.EndOfMessage())
                if conn.our_state is not h11.DONE:
                    # h11 closes after this one (it keeps no HTTP/1.0 connection alive).
                    out.closing = True
                    return out
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return out
    except h11.RemoteProtocolError as exc:
        out.error, out.status = str(exc), exc.error_status_hint
    except h11.LocalProtocolError:  # h11 would close: the client asked to
        pass
    return out


def _norm(item: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    """h11 lower-cases the values of the fields it interprets itself; so compare those."""
    name, value = item
    return (name, value.lower()) if name in (b"transfer-encoding", b"connection",
                                             b"expect") else item


def same(a: Parsed, b: Parsed) -> str | None:
    """The first field in which two requests differ, or None."""
    if a.method != b.method:
        return "method"
    if a.target != b.target:
        return "target"
    # RFC 9110 §6.2: prefork serves HTTP/1.x (x > 1) as 1.1; h11 reports what was sent.
    version_b = b"1.1" if b.version.startswith(b"1.") and b.version > b"1.1" else b.version
    if a.version != version_b:
        return "version"
    if a.headers != b.headers and [_norm(h) for h in a.headers] != [_norm(h) for h in b.headers]:
        return "headers"
    if a.body != b.body:
        return "body"
    return None


def compare(data: bytes) -> Difference | None:
    ours, other = prefork(data), theirs(data)
    for a, b in zip(ours.requests, other.requests, strict=False):
        what = same(a, b)
        if what:
            return Difference(data, ours, other, what)
    if other.closing and len(ours.requests) >= len(other.requests):
        return None  # the same requests, as far as h11 goes (it closes where prefork goes on)
    if len(ours.requests) != len(other.requests) or \
            (ours.error is None) != (other.error is None):
        # One stopped on an error where the other went on (or took a request more).
        if ours.error is None and other.error is None:
            return None  # both simply ran out of bytes at different points of a request
        return Difference(data, ours, other, "accepted")
    return None


def explain(diff: Difference) -> str | None:
    """Which documented difference this is (a key of DIFFERENCES), or None."""
    ours, other = diff.ours, diff.theirs
    n = len(ours.requests)
    if diff.what != "accepted":
        return None
    if ours.error is not None and (other.error is None or len(other.requests) > n):
        # prefork refused where h11 accepted (or was still reading).
        why = ours.error
        req = other.requests[n] if len(other.requests) > n else None
        pipelined_guess = ours.status == 400 and why == "malformed request line"
        if req is not None and (ours.status == 501 or pipelined_guess):
            if req.method not in LLHTTP_METHODS:
                return "unknown-method"
            if req.method == b"CONNECT":
                return "connect"
        for key, words in REFUSAL_WORDS.items():
            if any(w in why for w in words):
                return key
        if other.error is None and len(other.requests) == n:
            # h11 has not accepted this request either: it is still waiting for the end
            # of a line or of the head. Both took the same requests; prefork refuses sooner.
            return "refused-sooner"
        return None
    if other.error is not None and len(ours.requests) >= len(other.requests):
        # h11 refused what prefork accepted: only where the RFC lets a server accept it.
        first_line = diff.data.lstrip(b"\r\n").split(b"\r\n", 1)[0]
        stray = re.match(r"""illegal request line: bytearray\(b['"]\\[rn]""", other.error) \
            or other.error.startswith("no request line")  # an empty line where one was due
        if stray:
            return "leading-empty-line"  # stray CR/LF before a request line
        if other.error.startswith("illegal request line") and b"  " in first_line:
            return "request-line-whitespace"
        for key, words in H11_REFUSAL_WORDS.items():
            if any(w in other.error for w in words):
                return key
        return None
    if ours.error is not None and other.error is not None:
        return "both-refuse"  # both refuse, at the same request: statuses may differ
    return None


# prefork refuses, h11 accepts: recognised by the words of prefork's refusal.
REFUSAL_WORDS: dict[str, tuple[str, ...]] = {
    "host-validation": ("invalid Host field", "invalid authority"),
    "singleton-repeated": ("repeated ",),
    "trailer-field": ("not allowed in a trailer",),
    "target-form": ("asterisk-form", "not origin-form or absolute-form", "absolute-form",
                    "userinfo", " in url"),
    "fragment": ("fragment",),
    "method-not-token": ("not a token",),
    "chunk-extension-bws": ("chunk extensions",),
    "obs-fold-and-strict-syntax": ("Invalid header", "Missing expected", "Expected CRLF",
                                   "Invalid character", "Unexpected whitespace",
                                   "Expected LF", "Invalid header field char",
                                   "Span callback error", "Invalid header value char",
                                   "Missing expected CR", "Invalid method",
                                   "Unexpected space", "Data after `Connection: close`",
                                   "Invalid word encountered", "Expected HTTP/"),
    "limits": ("longer than", "more than", "too large", "exceeds", "overflow",
               "too much chunk framing"),
    "transfer-encoding": ("Transfer-Encoding",),
    "version": ("HTTP version", "is not supported", "not an HTTP version", "PRI"),
    "content-length": ("Content-Length", "Invalid character in Content-Length",
                       "Duplicate Content-Length"),
}
# h11 refuses, prefork accepts.
H11_REFUSAL_WORDS: dict[str, tuple[str, ...]] = {
    "chunk-size-bws": ("illegal chunk header",),
}
