"""The PEP 3333 adapter: builds the environ, runs the app, frames what it returns.

One `Exchange` is one request/response pair, created and used by a single pool thread.
It decides the response framing (Content-Length, chunked, or close-delimited), keeps the
promise of a declared Content-Length (a short body closes the connection, a long one is
cut and closes it), and hands bytes to an `Output` supplied by the connection, so this
module never touches a socket itself.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, Protocol
from urllib.parse import unquote_to_bytes

from prefork import __version__
from prefork.errors import BadRequest, ClientGone, GatewayTimeout
from prefork.http.request import Request
from prefork.http.response import (
    LAST_CHUNK,
    SERVER,
    chunk,
    date_header,
    encode_head,
    error_response,
    response_fields,
    status_allows_body,
    status_code,
)
from prefork.loader import ExcInfo, WSGIApp
from prefork.seam import native_calls

_SERVER_FIELDS = b"Server: " + SERVER + b"\r\n"
# What an app may give as body bytes. A tuple, not `bytes | bytearray`: that expression
# builds a new UnionType on every evaluation, twice per request.
_BYTES = (bytes, bytearray)


class Output(Protocol):
    """Where an Exchange sends bytes; implemented by the connection."""

    def send(self, data: bytes) -> None: ...

    def sendfile(self, file: IO[bytes], offset: int, count: int) -> int: ...

    def abort(self, data: bytes) -> None: ...


class FileWrapper:
    """`wsgi.file_wrapper`: iterable over a file; a real file is sent with os.sendfile."""

    def __init__(self, filelike: IO[bytes], blksize: int = 64 * 1024) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while True:
            data = read(self.blksize)
            if not data:
                return
            yield data

    def regular_file(self) -> tuple[int, int] | None:
        """(offset, bytes left) when the file can go out through sendfile, else None."""
        try:
            fd = self.filelike.fileno()
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            offset = self.filelike.tell()
        except (AttributeError, OSError, ValueError):
            return None
        return offset, max(0, st.st_size - offset)


# -- environ -------------------------------------------------------------------------------

_PERCENT = ord("%")  # an int needle: `b"%" in path` raises and drops a TypeError inside
_ENV_KEYS: dict[bytes, str] = {}  # header name -> environ key ("" means: drop it)


def _environ_key(name: bytes) -> str:
    key = _ENV_KEYS.get(name)
    if key is None:
        text = name.decode("latin-1")
        if "_" in text:
            # "X_Forwarded_For" would become HTTP_X_FORWARDED_FOR, the same key as the dashed
            # name a proxy vouches for. Drop such names (nginx does by default too).
            key = ""
        else:
            upper = text.upper().replace("-", "_")
            key = upper if upper in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + upper
        if len(_ENV_KEYS) < 4096:  # names are client-chosen: bound the cache
            _ENV_KEYS[name] = key
    return key


# Request fields whose definitions in RFC 9110 are not lists: a repeated one is a 400, not a
# comma-joined value the app would misread. (Host and Content-Length are refused by the
# parser already; Cookie is joined with "; " as RFC 6265 §5.4 intends.)
SINGLETON_KEYS = frozenset({
    "CONTENT_TYPE", "HTTP_AUTHORIZATION", "HTTP_PROXY_AUTHORIZATION", "HTTP_DATE",
    "HTTP_FROM", "HTTP_IF_MODIFIED_SINCE", "HTTP_IF_UNMODIFIED_SINCE", "HTTP_IF_RANGE",
    "HTTP_MAX_FORWARDS", "HTTP_RANGE", "HTTP_REFERER", "HTTP_USER_AGENT",
    "HTTP_CONTENT_LOCATION", "HTTP_CONTENT_RANGE", "HTTP_HOST", "CONTENT_LENGTH",
})


def base_environ(
    server_name: str, server_port: str, root_path: str, multiprocess: bool
) -> dict[str, Any]:
    """The environ keys that are the same for every request on one listener."""
    return {
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "SCRIPT_NAME": root_path,
        "SERVER_SOFTWARE": f"prefork/{__version__}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        "wsgi.input_terminated": True,
    }


# build_environ's signature, for the engine's choice of it: (req, base, addr, port).
BuildEnviron = Callable[[Request, dict[str, Any], str, str], dict[str, Any]]


def build_environ(
    req: Request, base: dict[str, Any], remote_addr: str, remote_port: str
) -> dict[str, Any]:
    """A request's environ. The native engine's is prefork._native.build_environ (bound
    by prefork.native), which must agree with this one."""
    environ = base.copy()
    target = req.target
    uri = target.decode("latin-1")
    authority = req.authority
    if authority is not None:
        # absolute-form (RFC 9112 §3.2.2): the target's authority replaces Host.
        path, _sep, query = req.path_query.partition(b"?")
        req.headers = [(n, v) for n, v in req.headers if n.lower() != b"host"]
        req.headers.append((b"Host", authority))
    elif target == b"*":
        path, query = b"*", b""
    else:
        path, _sep, query = target.partition(b"?")
    query_text = query.decode("latin-1")
    path_info = (unquote_to_bytes(path) if _PERCENT in path else path).decode("latin-1")
    root = environ["SCRIPT_NAME"]
    if root and (path_info == root or path_info.startswith(root + "/")):
        path_info = path_info[len(root):]
    environ["REQUEST_METHOD"] = req.method
    environ["PATH_INFO"] = path_info
    environ["QUERY_STRING"] = query_text
    environ["RAW_URI"] = environ["REQUEST_URI"] = uri
    environ["SERVER_PROTOCOL"] = "HTTP/1.1" if req.version == "1.1" else "HTTP/1.0"
    environ["REMOTE_ADDR"] = remote_addr
    environ["REMOTE_PORT"] = remote_port
    environ["wsgi.input"] = req.body
    for name, value in req.headers:
        key = _ENV_KEYS.get(name) or _environ_key(name)
        if not key:
            continue
        text = value.decode("latin-1")
        if key in environ:
            # RFC 9110 §5.3: repeated fields combine with commas; Cookie with "; ". A field
            # that is not a list (a singleton) may not be repeated: 400.
            if key in SINGLETON_KEYS:
                raise BadRequest(f"repeated {name.decode('latin-1')} field (RFC 9110 §5.3)")
            text = environ[key] + ("; " if key == "HTTP_COOKIE" else ", ") + text
        environ[key] = text
    return environ



# -- the response --------------------------------------------------------------------------


class Exchange:
    """Runs the app for one request and frames its response onto an Output.

    The reference: prefork.native.NativeExchange keeps these fields in a C type under the
    same names and takes this class's methods, all but start_response and run, whose C
    twins decide the common cases and call these for the rest (the same results, by
    test). A field added here must be added there too."""

    # The per-field loops, the Python engine's; NativeExchange has the compiled core's.
    fields = staticmethod(response_fields)
    encode = staticmethod(encode_head)

    __slots__ = (
        "chunked",
        "code",
        "guard",
        "head_only",
        "head_sent",
        "headers",
        "keep_alive",
        "length",
        "out",
        "sent",
        "status",
        "version10",
    )

    def __init__(self, out: Output, req: Request, keep_alive: bool,
                 guarded: bool = False) -> None:
        self.out = out
        self.head_only = req.method == "HEAD"
        self.version10 = req.version == "1.0"
        self.keep_alive = keep_alive
        self.status: str | None = None
        self.code = 0
        self.headers: list[tuple[str, str]] = []
        self.head_sent = False
        self.length: int | None = None  # Content-Length as declared by the app
        self.sent = 0  # body bytes sent
        self.chunked = False
        # With request_timeout on: whoever takes this lock first owns the response head,
        # this thread (the app's response) or the watchdog (a 504).
        self.guard = threading.Lock() if guarded else None

    def time_out(self) -> bool:
        """Called by the worker's main thread when request_timeout has passed: answer 504
        and end the connection, unless the app's response has begun (then False)."""
        if self.guard is None or not self.guard.acquire(blocking=False):
            return False
        self.code = 504
        self.keep_alive = False
        self.out.abort(error_response(GatewayTimeout("the request took too long")))
        return True

    # PEP 3333 start_response
    @native_calls
    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: ExcInfo | None = None,
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # break the traceback reference cycle (PEP 3333)
        elif self.status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        code = status_code(status)
        if not isinstance(headers, list):
            raise TypeError("response headers must be a list of (name, value) tuples")
        length, has_connection, close = self.fields(headers)
        if close:
            self.keep_alive = False
        self.status = status
        self.code = code
        # Connection is ours to send (it says what we do); the app's only says "close".
        self.headers = [h for h in headers if h[0].lower() != "connection"] \
            if has_connection else headers.copy()
        if length is not None and (code < 200 or code == 204):
            # RFC 9110 §8.6: no Content-Length in a 1xx or 204 response, whatever the app says.
            self.headers = [h for h in self.headers if h[0].lower() != "content-length"]
            length = None
        self.length = length
        return self.write

    def _head(self, known_length: int | None) -> bytes:
        if self.status is None:
            raise AssertionError("the app sent body bytes before calling start_response")
        if self.guard is not None and not self.guard.acquire(blocking=False):
            raise ClientGone("request_timeout: the client was answered 504")
        extra = [_SERVER_FIELDS, date_header()]
        if self.length is None and status_allows_body(self.code):
            if known_length is not None:
                extra.append(b"Content-Length: %d\r\n" % known_length)
            elif self.head_only:
                pass  # the length is unknown; no body follows anyway
            elif not self.version10:
                self.chunked = True
                extra.append(b"Transfer-Encoding: chunked\r\n")
            else:
                self.keep_alive = False  # HTTP/1.0 body delimited by closing
        if not self.keep_alive:
            extra.append(b"Connection: close\r\n")
        elif self.version10:
            extra.append(b"Connection: keep-alive\r\n")
        self.head_sent = True
        return self.encode(self.status, self.headers, b"".join(extra))

    def _frame(self, data: bytes) -> bytes:
        """Apply Content-Length bookkeeping or chunked framing to body bytes."""
        if self.head_only or not status_allows_body(self.code):
            return b""
        if self.length is not None:
            room = self.length - self.sent
            if len(data) > room:
                data = data[:room]  # never send more than was declared; close after
                self.keep_alive = False
            self.sent += len(data)
            return data
        self.sent += len(data)
        return chunk(data) if self.chunked else data

    # PEP 3333 write() callable, also used for each item of the iterable
    @native_calls
    def write(self, data: bytes) -> None:
        if not isinstance(data, _BYTES):
            raise TypeError(f"the app must give bytes, not {type(data).__name__}")
        if not data:
            return
        if self.head_sent:
            body = self._frame(data)
            if body:
                self.out.send(body)
        else:
            head = self._head(None)
            self.out.send(head + self._frame(data))

    def finish(self, last: bytes | None = None) -> None:
        """End the response; `last`, if given, is the whole body (its length is then known)."""
        if not self.head_sent:
            body = last or b""
            head = self._head(len(body) if self.length is None else None)
            self.out.send(head + self._frame(body) if body else head)
        else:
            if last:
                self.write(last)
            if self.chunked:
                self.out.send(LAST_CHUNK)
        if self.length is not None and self.sent < self.length and not self.head_only \
                and status_allows_body(self.code):
            self.keep_alive = False  # short body: only closing tells the client

    def send_file(self, wrapper: FileWrapper) -> bool:
        """Send a FileWrapper with sendfile; False if it is not a regular file."""
        where = wrapper.regular_file()
        if where is None or self.head_sent:
            return False
        offset, size = where
        count = size if self.length is None else min(size, self.length)
        head = self._head(size if self.length is None else None)
        self.out.send(head)
        if self.head_only or not status_allows_body(self.code) or count == 0:
            return True
        sent = self.out.sendfile(wrapper.filelike, offset, count)
        self.sent += sent
        if self.length is not None and self.sent < self.length:
            self.keep_alive = False
        return True

    def run(self, app: WSGIApp, environ: dict[str, Any]) -> None:
        """Call the app and send its response (prefork.native's does it in C)."""
        self.respond(app(environ, self.start_response))

    @native_calls
    def respond(self, result: Iterable[bytes]) -> None:
        """Send what the app returned, then close it (PEP 3333)."""
        try:
            if type(result) is list and len(result) == 1 and not self.head_sent:
                data = result[0]
                if not isinstance(data, _BYTES):
                    raise TypeError(f"the app must give bytes, not {type(data).__name__}")
                self.finish(bytes(data))
                return
            if isinstance(result, FileWrapper) and self.send_file(result):
                return
            for data in result:
                self.write(data)
            self.finish()
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
