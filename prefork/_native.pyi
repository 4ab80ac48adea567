# Types of the compiled core (prefork/_native.c, _native_wsgi.c).
from collections.abc import Callable
from typing import Any

MAX_RECV: int

class Sock:
    def __init__(self, fd: int) -> None: ...
    def recv(self, bufsize: int, /) -> bytes: ...
    def send(self, data: bytes | bytearray | memoryview, /) -> int: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...

class EpollCtl:
    def __init__(self, epfd: int) -> None: ...
    def register(self, fd: int, eventmask: int, /) -> None: ...
    def modify(self, fd: int, eventmask: int, /) -> None: ...

# _native_wsgi.c: the WSGI adapter's per-field loops (bound by prefork/native.py).

def response_fields(names: dict[str, str], check: Callable[[object, object], str],
                    headers: list[tuple[str, str]], /) -> tuple[int | None, bool, bool]: ...
def encode_head(reference: Callable[[str, list[tuple[str, str]], bytes], bytes], status: str,
                headers: list[tuple[str, str]], extra: bytes, /) -> bytes: ...

# _native_exchange.c: an exchange's state, start_response and run (NativeExchange in
# native.py adds the reference's other methods).
class Exchange:
    out: Any
    status: str | None
    headers: list[tuple[str, str]]
    length: int | None
    guard: Any
    code: int
    sent: int
    head_only: bool
    version10: bool
    keep_alive: bool
    head_sent: bool
    chunked: bool
    def __init__(self, out: Any, req: Any, keep_alive: bool, guarded: bool = False) -> None: ...
    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]: ...
    def run(self, app: Callable[..., Any], environ: dict[str, Any], /) -> None: ...
def bind_exchange(status_codes: dict[str, int], start_response: Callable[..., Any],
                  names: dict[str, str], check: Callable[[object, object], str],
                  server_fields: bytes, allocate_lock: Callable[[], Any], /) -> None: ...
def http_date(seconds: int, /) -> bytes: ...

# _native_http.c: llhttp's callbacks for a request head (bound by prefork/native.py).
class HeadFields:
    line_limit: int
    max_fields: int
    field_size: int
    in_head: bool
    expect_continue: bool
    hosts: int
    url_len: int
    url: list[bytes]
    headers: list[tuple[bytes, bytes]]
    host: bytes | None
    te: bytes | None
    connection: bytes | None
    content_length: int | None
    parser: Any  # the RequestParser whose heads end here (on_headers_complete)
    def __init__(self, forbidden: frozenset[bytes], good_hosts: set[bytes],
                 bad_request: type[Exception],
                 too_large: type[Exception], uri_too_long: type[Exception],
                 line_limit: int, max_fields: int, field_size: int) -> None: ...
    def on_message_begin(self) -> None: ...
    def on_url(self, url: bytes, /) -> None: ...
    def on_header(self, name: bytes, value: bytes, /) -> None: ...
    def origin_head(self, version: str, method: bytes, /
                    ) -> tuple[str, str, bytes, bool] | None: ...
    def on_headers_complete(self) -> None: ...
def bind_parser(parser: type, request: type, body: type,
                on_headers_complete: Callable[[Any], None], /) -> None: ...
def build_environ(reference: Callable[[Any, dict[str, Any], str, str], dict[str, Any]],
                  keys: dict[bytes, str], singletons: frozenset[str],
                  key_of: Callable[[bytes], str], req: Any, base: dict[str, Any],
                  remote_addr: str, remote_port: str, /) -> dict[str, Any]: ...

# _native_conn.c: Connection.serve_one's twin (bound by prefork/native.py).
def serve_one(conn: Any, req: Any, /) -> bool: ...
def on_ready(conn: Any, /) -> Any: ...
def bind_loop(on_ready: Callable[[Any], Any], settle: Callable[[Any], Any], parser: type,
              output: type, names: tuple[object, ...], recv_bytes: int, /) -> None: ...
def bind_connection(connection: type, context: type, engine: type, request: type, body: type,
                    serve_one: Callable[[Any, Any], bool],
                    apply_forwarded: Callable[..., None], /) -> None: ...
