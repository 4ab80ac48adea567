"""The request parser: llhttp (through httptools) plus the checks llhttp does not make.

Bytes in, `Request` objects out. `RequestParser.feed()` takes whatever bytes arrived and
appends each request to `ready` as soon as its head is complete; body bytes go to that
request's `Body`. Pipelined requests simply queue up in `ready`, in order.

feed() never raises. The first framing or syntax error is stored in `error` (an HTTPError
carrying its status) and the parser accepts no more bytes: whatever follows a bad request
is never parsed as another request. Requests completed before the error stay in `ready`
and are answered first; the error is answered last, once, and the connection closed.

Checks added on top of llhttp's strict mode (RFC 9112 / RFC 9110):
  * only HTTP/1.0 and HTTP/1.1 (505 otherwise; 400 for a request line with no version)
  * Transfer-Encoding must be exactly one final `chunked` (400; 501 for other codings
    before a final chunked),
    and is refused in HTTP/1.0 (RFC 9112 §6.1)
  * HTTP/1.1 requires exactly one Host (RFC 9112 §3.2)
  * no fragment in the request target (RFC 9112 §3.2)
  * limits: request line (414), header count and field size (431), total head bytes (431),
    body size (413, at the head when Content-Length says so), chunk framing without data
  * trailer fields are parsed and dropped, never merged into the head
  * an Upgrade request carrying a body is refused: we never switch protocols, and llhttp
    would not frame that body; CONNECT is refused (501): we are not a proxy
  * request-target forms (RFC 9112 §3.2): asterisk-form only for OPTIONS; absolute-form
    parsed, its authority validated and kept (it replaces Host)
  * Host must be a valid uri-host [":" port] (RFC 9112 §3.2)
  * a method llhttp does not know is 501 if it is a token, 400 if not (RFC 9110 §9.1)
  * HTTP/1.x with x > 1 is served as HTTP/1.1 (RFC 9110 §6.2)
  * no framing, routing, authentication or content field in a trailer (RFC 9110 §6.5.1)

The checks made field by field as llhttp reads a head (the target's length, the number
and size of fields, a second Transfer-Encoding, forbidden trailer fields) and the notes of
the framing fields are `fields.HeadFields`'; this module judges the complete head. The
native engine gives the parser the compiled twin of HeadFields, which also judges the
common head itself (`origin_head`) and ends it (`on_headers_complete`, called by llhttp
instead of this module's: it makes the Request in C); any other head is judged and
ended here.

Touched by one thread at a time: the pool thread that owns the connection.
"""

from __future__ import annotations

import contextlib
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

import httptools

from prefork.errors import (
    BadRequest,
    HeaderFieldsTooLarge,
    HTTPError,
    NotImplementedByServer,
    PayloadTooLarge,
    VersionNotSupported,
)
from prefork.http.fields import HeadFields
from prefork.http.request import Request
from prefork.seam import native_calls

# Framing bytes each chunk may carry beyond the body-wide allowance: "ffffffff\r\n" and
# the CRLF after the data take 12; the rest leaves room for a short extension.
CHUNK_FRAMING_ALLOWANCE = 32
# A byte as an int: `b"#" in target` first tries the needle as an int and builds (then
# drops) a TypeError on every call in CPython 3.11; an int needle is ten times cheaper.
_HASH = ord("#")
_SLASH = ord("/")
# RFC 9110 §9.1 / §5.6.2: a method is a token.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9112 §3.2, RFC 3986 §3.2.2-3.2.3: Host = uri-host [ ":" port ], where uri-host is an
# IP-literal in brackets, an IPv4 address or a reg-name (unreserved, pct-encoded,
# sub-delims). Deliberately stricter in one point: no comma, which no host name has and
# which would betray a list of hosts (two Host fields joined by something on the way).
_HOST = re.compile(
    rb"(?:\[(?:[0-9A-Fa-f:.]+|v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+;=:]+)\]"
    rb"|(?:[A-Za-z0-9\-._~!$&'()*+;=]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?"
)
_GOOD_HOSTS: set[bytes] = set()  # Host values already validated (bounded: client-chosen)
_GOOD_HOSTS_MAX = 256
# How many leading bytes of a request are kept to judge a method llhttp does not know.
_LEAD_BYTES = 64
# What llhttp raises for a piece it refuses (HttpParserUpgrade is not an HttpParserError).
FEED_ERRORS = (httptools.HttpParserUpgrade, httptools.HttpParserError)


def valid_host(value: bytes) -> bool:
    """True if `value` is a valid Host field value (RFC 9112 §3.2); empty is valid."""
    if value in _GOOD_HOSTS:
        return True
    if _HOST.fullmatch(value) is None:
        return False
    if len(_GOOD_HOSTS) < _GOOD_HOSTS_MAX:
        _GOOD_HOSTS.add(value)
    return True


class _Completions:
    """llhttp's callbacks for a look-ahead parse: only requests completed are counted."""

    def __init__(self) -> None:
        self.count = 0

    def on_message_complete(self) -> None:
        self.count += 1


def _completed(data: bytes | memoryview) -> int:
    """How many requests llhttp completes in `data`, read from a request's start (it stops
    at the first bytes it refuses)."""
    counter = _Completions()
    fresh = httptools.HttpRequestParser(counter)
    fresh.set_dangerous_leniencies(**LENIENCIES)
    with contextlib.suppress(*FEED_ERRORS):
        fresh.feed_data(data)
    return counter.count


def refused_request_start(data: bytes | memoryview, req: Request | None, in_head: bool,
                          before: int) -> int | None:
    """Where, in a piece llhttp refused for its method, the refused request begins: after
    the last request completed in the piece (found by parsing the piece's prefixes again,
    a binary search: the request's own bytes, however the stream was cut into pieces).
    None where the piece began inside a head or a chunked body (no request starts at a
    known offset in it)."""
    if in_head or (req is not None and (req.chunked or req.content_length is None)):
        return None
    start = 0 if req is None else max(0, (req.content_length or 0) - before)
    view = memoryview(data)[start:]
    total = _completed(view)
    low, high = 0, len(view)  # the shortest prefix that completes `total` requests
    while low < high:
        mid = (low + high) // 2
        if _completed(view[:mid]) >= total:
            high = mid
        else:
            low = mid + 1
    return start + low


def method_error(lead: bytes) -> HTTPError | None:
    """llhttp refused a method: judge it by the request's first bytes. A method that is a
    token is merely unknown (501); one that is not is a malformed request line (400).
    None while the first bytes do not yet show where the method ends."""
    lead = lead.lstrip(b"\r\n")
    m = _TOKEN.match(lead)
    end = m.end() if m else 0
    if end == len(lead):
        return None if end < _LEAD_BYTES else NotImplementedByServer("unknown method")
    if lead[end:end + 1] == b" " and end:
        return NotImplementedByServer(f"unknown method {lead[:end].decode('ascii')!r}")
    return BadRequest("the method is not a token (RFC 9110 §9.1)")


def other_version(version: str) -> str:
    """The version served for a request line's other than HTTP/1.1 and 1.0, or its error."""
    if version[0] == "1":
        # RFC 9110 §6.2: a higher minor version of HTTP/1 is served as the highest minor
        # version we support.
        return "1.1"
    if version == "0.9":
        raise BadRequest("request line has no HTTP version")
    if version[0] == "0":
        raise BadRequest(f"HTTP/{version} is not an HTTP version")
    raise VersionNotSupported(f"HTTP/{version} is not supported")


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """What one connection's parser accepts (from the settings of the same names)."""

    limit_request_line: int = 8190  # bytes in the request line (414 past it)
    limit_request_fields: int = 100  # header fields in a head (431 past it)
    limit_request_field_size: int = 8190  # bytes in one field line (431 past it)
    head_limit: int = 1 << 20  # bytes in a whole head
    max_body: int = 0  # bytes in a body; 0: no limit
    framing_limit: int = 8192  # chunk framing bytes (sizes, extensions) per feed slice


DEFAULT_LIMITS = ParserLimits()


class Fields(Protocol):
    """What the parser reads of a head's notes (fields.HeadFields and its compiled twin)."""

    in_head: bool
    url: list[bytes]
    headers: list[tuple[bytes, bytes]]
    hosts: int
    host: bytes | None
    te: bytes | None
    connection: bytes | None
    content_length: int | None
    expect_continue: bool

    def on_message_begin(self) -> None: ...

    def on_url(self, url: bytes, /) -> None: ...

    def on_header(self, name: bytes, value: bytes, /) -> None: ...


# The compiled twin's judgement of a common head: (version, method, target, keep_alive),
# or None for the parser to judge it (prefork._native.HeadFields.origin_head).
OriginHead = Callable[[str, bytes], "tuple[str, str, bytes, bool] | None"]


# How an engine makes a connection's Fields: (line_limit, max_fields, field_size).
FieldsFactory = Callable[[int, int, int], Fields]


class EndsHead(Protocol):
    """Fields that also end a head and a request (prefork._native.HeadFields): llhttp
    calls their on_headers_complete, which ends a common head itself and hands any other
    to `parser`'s (the reference), their on_message_complete, and their on_body."""

    parser: RequestParser | None

    def on_headers_complete(self) -> None: ...

    def on_message_complete(self) -> None: ...


# What llhttp's strict mode refuses and a request may carry. RFC 9112 §7.1.1 allows BWS
# before a chunk extension's ";" ("5 ;ext"): spaces and tabs after the size and nothing
# else there ("5 1" or "5 x" are still refused). And the version is judged here
# (other_version: HTTP/1.2 is served as 1.1, HTTP/2.0 is a 505), not by llhttp.
LENIENCIES = {"lenient_spaces_after_chunk_size": True, "lenient_version": True}


class _Callbacks:
    """What llhttp (httptools) calls back: the head's start, target and fields go to the
    Fields, the rest to the parser. httptools looks each up once, when it is made."""

    __slots__ = ("on_body", "on_chunk_header", "on_header", "on_headers_complete",
                 "on_message_begin", "on_message_complete", "on_url")

    def __init__(self, parser: RequestParser, fields: Fields) -> None:
        self.on_message_begin = fields.on_message_begin
        self.on_url = fields.on_url
        self.on_header = fields.on_header
        self.on_headers_complete = getattr(fields, "on_headers_complete",
                                           parser.on_headers_complete)
        self.on_chunk_header = parser.on_chunk_header
        self.on_body = getattr(fields, "on_body", parser.on_body)
        self.on_message_complete = getattr(fields, "on_message_complete",
                                           parser.on_message_complete)


class RequestParser:
    __slots__ = (
        "_chunks",
        "_fields",
        "_framing_limit",
        "_head_bytes",
        "_head_limit",
        "_lead",
        "_max_body",
        "_origin_head",
        "_parser",
        "_req",
        "_sniffing",
        "error",
        "ready",
        "stopped",
    )

    def __init__(self, limits: ParserLimits = DEFAULT_LIMITS,
                 fields: FieldsFactory = HeadFields) -> None:
        self._fields = fields(limits.limit_request_line, limits.limit_request_fields,
                              limits.limit_request_field_size)
        # The native engine's fields judge a common head in C; the reference's do not.
        self._origin_head: OriginHead | None = getattr(self._fields, "origin_head", None)
        if hasattr(self._fields, "on_headers_complete"):
            cast(EndsHead, self._fields).parser = self
        self._head_limit = limits.head_limit
        self._max_body = limits.max_body
        self._framing_limit = limits.framing_limit
        self.ready: deque[Request] = deque()
        self.error: HTTPError | None = None
        self.stopped = False  # no more bytes will be parsed (error, upgrade, close)
        self._req: Request | None = None  # from the end of its head to the end of its body
        self._head_bytes = 0
        self._chunks = 0
        # The first bytes of the request under way, until its target begins: if llhttp
        # refuses the method, they tell an unknown method from a malformed one.
        self._lead = b""
        self._sniffing = False  # a refused method: reading on to see where it ends
        self._parser = httptools.HttpRequestParser(_Callbacks(self, self._fields))
        self._parser.set_dangerous_leniencies(**LENIENCIES)

    @native_calls
    def close(self) -> None:
        """No more bytes: break the cycles with llhttp's parser (it holds our callbacks)
        and with fields that end heads (they hold this parser), so that all are freed at
        once, not later by the cyclic garbage collector."""
        self.stopped = True
        if hasattr(self, "_parser"):
            del self._parser
        if hasattr(self._fields, "on_headers_complete"):
            cast(EndsHead, self._fields).parser = None

    @property
    def idle(self) -> bool:
        """True between requests: no partial request has been received."""
        return self._req is None and not self._fields.in_head

    @native_calls
    def feed(self, data: bytes | memoryview) -> None:
        limit = self._framing_limit
        if len(data) > limit:
            # In slices, so that chunk framing is counted within one slice of the limit.
            view = memoryview(data)
            for start in range(0, len(view), limit):
                self._feed(view[start:start + limit])
        else:
            self._feed(data)

    @native_calls
    def _feed(self, data: bytes | memoryview) -> None:
        if self.stopped:
            return
        if self._sniffing:
            self._sniff_method(bytes(data))
            return
        req = self._req
        in_head = self._fields.in_head
        before = req.body.received if req is not None else 0
        try:
            self._parser.feed_data(data)
        except FEED_ERRORS as exc:
            self._refused(exc, data, req, in_head, before)
            return
        if self._fields.in_head or (req is not None and req.chunked and not in_head
                                    and req is self._req):
            self._fed(data, req, before)

    @native_calls
    def _refused(self, exc: Exception, data: bytes | memoryview, req: Request | None,
                 in_head: bool, before: int = 0) -> None:
        """llhttp refused a piece that began with `req` under way (or none; its body had
        `before` bytes), in a head or not (the native engine's feed calls this too)."""
        if isinstance(exc, httptools.HttpParserUpgrade):
            # llhttp stops at the end of an Upgrade/CONNECT request; we never switch, so
            # what follows is not ours to parse. The request itself says keep_alive = False.
            self.stopped = True
        elif isinstance(exc, httptools.HttpParserInvalidMethodError):
            start = refused_request_start(data, req, in_head, before)
            if start is not None:  # judged on the refused request's own bytes
                self._lead = b""
                self._sniffing = True
                self._sniff_method(bytes(data[start:]))
                return
            self._refused_method(data, began_here=req is None and not in_head
                                 and (self._req is not None or self._fields.in_head))
        else:
            self._fail(exc)

    @native_calls
    def _fed(self, data: bytes | memoryview, req: Request | None, before: int) -> None:
        """A piece fed that ended inside a head, or inside a chunked body (`req`'s, which
        had received `before` body bytes): counted against the limits of what is not
        data (the native engine's feed calls this too)."""
        if self._fields.in_head:
            if not self._fields.url and len(self._lead) < _LEAD_BYTES:
                # The piece ended inside the method: keep its bytes in case llhttp
                # refuses the method in a later piece (then they tell 400 from 501).
                self._lead += data[:_LEAD_BYTES]
            self._head_bytes += len(data)
            if self._head_bytes > self._head_limit:
                self._fail(HeaderFieldsTooLarge("request head too large"))
        elif req is not None:
            # Chunk-size lines, extensions and trailers are not body: llhttp skips them
            # without limit, so a client could stream them forever while the app waits
            # for data. Count them: each chunk may carry a little framing, and the whole
            # body `framing_limit` bytes more (for extensions and trailers). The slice in
            # which a head ends, or a body, is not counted: the limit holds within two
            # slices of `framing_limit` bytes.
            self._head_bytes += len(data) - (req.body.received - before)
            if self._head_bytes > self._framing_limit + CHUNK_FRAMING_ALLOWANCE * self._chunks:
                self._fail(BadRequest("too much chunk framing (extensions, trailers)"))

    def _refused_method(self, data: bytes | memoryview, began_here: bool) -> None:
        """llhttp knows no method of these first letters; whether that is 501 or 400
        depends on where the method ends: read on until that shows."""
        if began_here and not self.ready:
            self._lead = b""  # the request began in this piece: `data` holds it
        elif not self._lead:
            # A pipelined request after one completed in this same piece: its first
            # bytes follow the end of the last head here (if that request had no
            # body). Judged on what is here, without waiting for more.
            tail = bytes(data).rsplit(b"\r\n\r\n", 1)[-1][:_LEAD_BYTES]
            self._fail(method_error(tail) or BadRequest("malformed request line"))
            return
        self._sniffing = True
        self._sniff_method(bytes(data))

    def _fail(self, exc: Exception) -> None:
        self.stopped = True
        cause = exc.__context__
        if isinstance(cause, HTTPError):
            err: HTTPError = cause
        elif isinstance(exc, HTTPError):
            err = exc
        elif (self._req is None and not self._fields.in_head and self.ready
              and not self.ready[-1].keep_alive):
            # llhttp refuses bytes after a `Connection: close` request: that request is
            # answered and the connection closed, so the extra bytes are simply dropped.
            return
        else:
            err = BadRequest(str(exc) or "malformed request")
        self.error = err
        if self._req is not None and not self._fields.in_head:
            # The error lies inside a body whose head was already handed out: that request
            # must not be followed by another; its body reader raises `err`.
            self._req.keep_alive = False

    def _sniff_method(self, data: bytes) -> None:
        """llhttp refused the method; read on until its end shows, then refuse it."""
        self._lead += data[:_LEAD_BYTES]
        err = method_error(self._lead)
        if err is not None:
            self._sniffing = False
            self._fail(err)

    # -- httptools callbacks ---------------------------------------------------------------
    @native_calls
    def on_headers_complete(self) -> None:
        fields = self._fields
        fields.in_head = False
        req = self._req = Request(self._max_body, fields.headers, fields.content_length,
                                  fields.expect_continue)
        self._lead = b""
        parser = self._parser
        head = None
        if self._origin_head is not None:  # the native engine: a common head is judged in C
            head = self._origin_head(parser.get_http_version(), parser.get_method())
        if head is not None:  # what the branch below would have found
            req.version, req.method, req.target, req.keep_alive = head
            if req.version == "1.0":
                req.expect_continue = False  # RFC 9110 §10.1.1, as in _check_fields
        else:
            version = parser.get_http_version()
            req.version = version if version == "1.1" or version == "1.0" else \
                other_version(version)
            method = req.method = parser.get_method().decode("ascii")
            url = fields.url
            target = url[0] if len(url) == 1 else b"".join(url)
            if _HASH in target:
                raise BadRequest("request target contains a fragment")
            req.target = target
            if not target or target[0] != _SLASH or method == "CONNECT":
                self._check_target_form(req, method, target)
            self._check_fields(req, fields)
        if parser.should_upgrade():
            if req.chunked or req.content_length:
                raise BadRequest("Upgrade with a body is not supported")
            req.upgrade = True
            req.keep_alive = False
        if not req.chunked and not req.content_length:
            req.body.complete = True
        elif self._max_body and (req.content_length or 0) > self._max_body:
            # Refused before the app runs and before the body is read (no 100 Continue).
            raise PayloadTooLarge(f"Content-Length exceeds {self._max_body} bytes")
        self._head_bytes = 0
        self._chunks = 0
        self.ready.append(req)

    @staticmethod
    def _check_target_form(req: Request, method: str, target: bytes) -> None:
        """The request-target forms other than origin-form (RFC 9112 §3.2)."""
        if method == "CONNECT":
            # §3.2.3 authority-form is for CONNECT, which asks for a tunnel: a proxy's
            # business. RFC 9110 §9.3.6 lets an origin server refuse it.
            raise NotImplementedByServer("CONNECT is not supported: this is not a proxy")
        if target == b"*":
            if method != "OPTIONS":  # §3.2.4: asterisk-form is only for OPTIONS
                raise BadRequest("the asterisk-form target is only for OPTIONS")
            return
        # §3.2.2 absolute-form: a server MUST accept it; its authority replaces Host.
        scheme, sep, rest = target.partition(b"://")
        if not sep or scheme.lower() not in (b"http", b"https"):
            raise BadRequest("the request target is not origin-form or absolute-form")
        try:
            url = httptools.parse_url(target)
        except httptools.HttpParserInvalidURLError:
            raise BadRequest("malformed absolute-form request target") from None
        authority = rest.split(b"/", 1)[0].split(b"?", 1)[0]
        if url.userinfo or b"@" in authority:
            # RFC 9110 §4.2.4: userinfo in an http(s) URI is to be treated as an error.
            raise BadRequest("userinfo in the request target")
        if not url.host or not valid_host(authority):
            raise BadRequest("invalid authority in the request target")
        req.authority = authority
        path = url.path or b"/"
        req.path_query = path + b"?" + url.query if url.query is not None else path

    def _check_fields(self, req: Request, fields: Fields) -> None:
        """What the fields noted by on_header mean for framing, now the version is known."""
        if req.version == "1.1":
            if fields.hosts != 1:
                raise BadRequest("HTTP/1.1 requires exactly one Host field")
            keep_alive = True
        else:
            if fields.hosts > 1:
                raise BadRequest("more than one Host field")
            keep_alive = False
            # RFC 9110 §10.1.1: a 100-continue expectation in HTTP/1.0 MUST be ignored.
            req.expect_continue = False
        host = fields.host
        if host is not None and host not in _GOOD_HOSTS and not valid_host(host):
            raise BadRequest("invalid Host field (RFC 9112 §3.2)")
        if fields.te is not None:
            self._check_transfer_encoding(req, fields.te)
        connection = fields.connection
        if connection is not None:
            tokens = [t.strip() for t in connection.lower().split(b",")]
            if b"close" in tokens:
                keep_alive = False
            elif b"keep-alive" in tokens:
                keep_alive = True
        req.keep_alive = keep_alive

    @staticmethod
    def _check_transfer_encoding(req: Request, value: bytes) -> None:
        """RFC 9112 §6.1 and §6.3: only a single, final `chunked` frames a request here."""
        if req.version == "1.0":
            raise BadRequest("Transfer-Encoding is not allowed in HTTP/1.0")
        codings = [c.strip() for c in value.decode("latin-1").lower().split(",")]
        if codings == ["chunked"]:
            req.chunked = True
            return
        if codings[-1] != "chunked" or codings.count("chunked") > 1 or "" in codings:
            raise BadRequest("Transfer-Encoding must end in a single 'chunked'")
        raise NotImplementedByServer("transfer codings other than chunked are not supported")

    def on_chunk_header(self) -> None:
        self._chunks += 1

    @native_calls
    def on_body(self, data: bytes) -> None:
        req = self._req
        assert req is not None
        req.body.feed(data)

    @native_calls
    def on_message_complete(self) -> None:
        req = self._req
        assert req is not None
        req.body.complete = True
        self._req = None
        self._head_bytes = 0
