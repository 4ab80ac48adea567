"""Which request path serves: the compiled core's or the Python reference (http_engine).

Both engines run the same connection code; they differ in the calls that cross into the
kernel on every request, and in the per-field code of the parser's callbacks and of the
WSGI adapter (the native engine's is in C: prefork.native). The Python engine uses the
socket and epoll objects (each call releases the GIL); the native engine uses
prefork._native (_native.c), whose non-blocking recv, send, epoll_ctl, accept and close
keep it, so that pool threads hand the GIL to each other only where one waits
(epoll_wait). engine_choice.choose picks one (the master, to log it; each worker, for
itself, and builds the Python engine with the references: Connection's own methods);
this module imports nothing of the connection code, so every module may import it.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from prefork.http.fields import HeadFields
from prefork.http.parser import FieldsFactory
from prefork.wsgi import BuildEnviron, Exchange, build_environ

if TYPE_CHECKING:
    from prefork.connection import Connection
    from prefork.connstate import ServerContext


class SocketIO(Protocol):
    """What a connection reads and writes through (socket.socket has these)."""

    def recv(self, bufsize: int, /) -> bytes: ...

    def send(self, data: bytes | memoryview, /) -> int: ...

    def close(self) -> None: ...


class EpollIO(Protocol):
    """How the worker arms a connection (select.epoll has these)."""

    def register(self, fd: int, eventmask: int, /) -> None: ...

    def modify(self, fd: int, eventmask: int, /) -> None: ...


class ClientSocket(SocketIO, Protocol):
    """An accepted connection's socket: a socket.socket (the Python engine's), or the
    native engine's prefork._native.Sock, which owns its descriptor (no socket object)."""

    @property
    def family(self) -> int: ...

    def fileno(self) -> int: ...

    def shutdown(self, how: int, /) -> None: ...

    def gettimeout(self) -> float | None: ...

    def setblocking(self, flag: bool, /) -> None: ...


# A connection just accepted and its peer's (address, port), "" and "" over AF_UNIX.
Accepted = tuple[ClientSocket, tuple[str, str]]


def accept_python(listen: socket.socket) -> Accepted | None:
    """socket.accept(); None when no connection waits (another thread or worker took it)."""
    try:
        sock, addr = listen.accept()
    except BlockingIOError:
        return None
    return sock, ((str(addr[0]), str(addr[1])) if isinstance(addr, tuple) else ("", ""))


def close_python(sock: ClientSocket) -> None:
    sock.close()


class WorkerCalls(Protocol):
    """A worker's calls for each request, made in one place (the native engine's:
    prefork._native.WorkerCalls; the Python engine's worker makes them itself)."""

    def follow(self, worker: Any, listeners: dict[int, Any], /) -> None: ...  # Worker._follow

    def accept(self, worker: Any, listener: Any, /) -> None: ...  # Worker._accept

    def serve(self, conn: Any, /) -> None: ...  # Worker._serve

    def begin(self, req: Any, exchange: Any, /) -> None: ...  # Worker._begin_request

    def end(self) -> None: ...  # RequestWatch.end

    def progress(self) -> None: ...  # RequestWatch.progress


def _nothing_to_bind(worker: type) -> None:
    """The Python engine's bind_worker: its worker makes its own calls."""


@dataclass(frozen=True, slots=True)
class Engine:
    name: Literal["native", "python"]
    why: str  # said once in the log at start-up
    # The native engine's types (prefork._native.Sock, .EpollCtl), from a descriptor.
    sock_type: Callable[[int], SocketIO] | None = None
    epoll_type: Callable[[int], EpollIO] | None = None
    # The per-field code: the response head's loops (in the Exchange type), the environ,
    # llhttp's callbacks for a head; the native engine's are prefork.native's (C twins).
    exchange: type[Exchange] = Exchange
    build_environ: BuildEnviron = build_environ
    head_fields: FieldsFactory = HeadFields  # llhttp's callbacks for a head's fields
    # A connection's serve_one(conn, req) and on_ready(conn): Connection's own methods
    # (the reference, given by engine_choice) or prefork/_native_conn.c's twins. Always
    # given (keyword-only): this module is below the connection code and cannot name it.
    serve_one: Callable[[Any, Any], bool] = field(kw_only=True)
    on_ready: Callable[[Any], Any] = field(kw_only=True)
    # The worker's calls for each request (WorkerCalls(epfd, on_ready, arm, close,
    # inflight, served, info, max_requests, counted)); None: the worker's own methods.
    worker_calls: Callable[..., WorkerCalls] | None = None
    # A new connection from a listener (None: none waits), and a connection's socket
    # closed: the socket module's calls (each releases the GIL), or the native engine's
    # (they keep it, and its accept makes no socket object).
    accept: Callable[[socket.socket], Accepted | None] = accept_python
    close_socket: Callable[[ClientSocket], None] = close_python
    # The dict each request's environ is copied from, made from a listener's base: the
    # native engine's has room for a request's keys (its copies do not grow per request).
    environ_base: Callable[[dict[str, Any]], dict[str, Any]] = dict
    # A new connection's objects, Connection(sock, remote, base, ctx, now), and its end,
    # Connection.close: the class's own, or the native engine's C twins
    # (_native_adopt.c: no Python runs for them per connection). Always given.
    new_connection: Callable[[ClientSocket, tuple[str, str], dict[str, Any], ServerContext,
                              float], Connection] = field(kw_only=True)
    close_connection: Callable[[Connection], None] = field(kw_only=True)
    # auto found no compiled core: the Python path, not what was hoped for (a warning).
    fallback: bool = False
    # Given Worker._accept by each worker as it starts (the native engine's C twin of it
    # stands in only while the worker's _accept is that function): so that the engine's
    # module need not import the worker's, which imports it.
    bind_worker: Callable[[type], None] = _nothing_to_bind

    def socket_io(self, sock: ClientSocket) -> SocketIO:
        """What a connection reads and writes through: its socket, or the native engine's
        Sock on its descriptor (the Sock accept made is that already)."""
        if self.sock_type is None or not isinstance(sock, socket.socket):
            return sock
        return self.sock_type(sock.fileno())

    def epoll_io(self, ep: select.epoll) -> EpollIO:
        return ep if self.epoll_type is None else self.epoll_type(ep.fileno())

