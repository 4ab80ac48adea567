"""A parsed request: its head, and a reader over its (de-chunked) body.

Bytes in, objects out: nothing here touches a socket. The body reader asks a `fill`
callable for more bytes when its buffer runs dry; the connection supplies that callable,
which receives from the socket and feeds the parser, which appends to this buffer.

A `Request` is created by the parser (in whichever thread feeds it) and then owned by
the single pool thread that serves it; it is never shared between threads at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prefork.errors import PayloadTooLarge

Fill = Callable[[], None]


class Body:
    """The request body as the app reads it (PEP 3333 `wsgi.input`).

    Never reads past the end of this request's body: framing is decided by the parser
    (Content-Length or chunked), so bytes of a pipelined next request are never returned.
    """

    __slots__ = ("_buf", "_pos", "complete", "fill", "limit", "received")

    def __init__(self, limit: int = 0) -> None:
        # What has arrived and is unread from _pos on: the piece itself while it is the
        # only one (nothing copied: a body that arrives in one piece and is read whole is
        # the bytes llhttp gave), a bytearray once a second piece joins it.
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self.complete = False
        self.received = 0
        self.limit = limit  # 0: no limit
        self.fill: Fill | None = None

    # -- called by the parser --------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self.received += len(data)
        if self.limit and self.received > self.limit:
            raise PayloadTooLarge(f"request body exceeds {self.limit} bytes")
        buf = self._buf
        if not buf:  # the only piece unread: kept as it came
            self._buf = bytes(data)  # the same object when it is bytes
            self._pos = 0
            return
        if self._pos or not isinstance(buf, bytearray):  # what is unread, then this piece
            with memoryview(buf) as view:
                buf = bytearray(view[self._pos:])
            self._buf = buf
            self._pos = 0
        buf += data

    def finish(self) -> None:
        self.complete = True

    # -- called by the app (wsgi.input) ----------------------------------------------------
    def _more(self) -> bool:
        """Pull more bytes; False when the body has ended."""
        if self.complete:
            return False
        if self.fill is None:
            raise RuntimeError("body is incomplete and no source is attached")
        self.fill()
        return True

    def _available(self) -> int:
        return len(self._buf) - self._pos

    def _take(self, n: int) -> bytes:
        buf = self._buf
        start = self._pos
        end = min(len(buf), start + n)
        if start == 0 and end == len(buf):  # all of it (the common case): no copy, or one
            self._buf = b""
            return bytes(buf)  # a piece kept as it came is returned itself
        with memoryview(buf) as view:  # a part: one copy too (a slice would be two)
            data = bytes(view[start:end])
        if end == len(buf):
            self._buf = b""
            self._pos = 0
        else:
            self._pos = end
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._more():
                pass
            return self._take(self._available())
        while self._available() < size and self._more():
            pass
        return self._take(size)

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None else size
        scanned = 0
        while True:
            nl = self._buf.find(b"\n", self._pos + scanned)
            if nl >= 0:
                n = nl - self._pos + 1
                return self._take(n if limit < 0 else min(n, limit))
            scanned = self._available()
            if 0 <= limit <= scanned:
                return self._take(limit)
            if not self._more():
                return self._take(scanned)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def drain(self, max_bytes: int) -> bool:
        """Discard the rest of the body; False if more than max_bytes would be needed."""
        discarded = self._available()
        self._buf = b""
        self._pos = 0
        while not self.complete:
            if discarded > max_bytes:
                return False
            self._more()
            discarded += self._available()
            self._buf = b""
            self._pos = 0
        return True


class Request:
    """One request head as parsed, plus its body reader.

    `headers` keeps the raw (name, value) byte pairs in arrival order; names keep their case.
    """

    __slots__ = (
        "authority",
        "body",
        "chunked",
        "content_length",
        "expect_continue",
        "headers",
        "keep_alive",
        "method",
        "path_query",
        "target",
        "upgrade",
        "version",
    )

    def __init__(self, max_body: int = 0, headers: list[tuple[bytes, bytes]] | None = None,
                 content_length: int | None = None, expect_continue: bool = False) -> None:
        self.method = ""
        self.target = b""
        self.version = "1.1"
        self.headers: list[tuple[bytes, bytes]] = [] if headers is None else headers
        self.keep_alive = True
        self.content_length = content_length
        self.chunked = False
        self.expect_continue = expect_continue
        self.upgrade = False
        # absolute-form only (RFC 9112 §3.2.2): the target's authority, which replaces
        # Host, and its path and query (origin-form targets are their own path and query).
        self.authority: bytes | None = None
        self.path_query = b""
        self.body = Body(max_body)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target!r} HTTP/{self.version}>"

    # What server hooks written for gunicorn read of its request object.
    @property
    def uri(self) -> str:
        return self.target.decode("latin-1")

    @property
    def path(self) -> str:
        return self.uri.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.uri.partition("?")[2]
