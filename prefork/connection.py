"""One client connection: receive → parse → app → write → park or close.

A connection is owned by exactly one thread at a time, and ownership moves by hand-off:

  worker loop thread   receive(): reads whatever arrived (never blocks) and feeds the
                       parser. While a head is incomplete the connection stays in the
                       worker's selector and holds no pool thread.
  pool thread          serve(): answers every complete request in order (pipelining),
                       reading the body on demand for the app, then parks the connection
                       back in the selector (keep-alive), hands it to the loop to linger,
                       or closes it.

Sockets stay in blocking mode as far as Python knows; every read and write here passes
MSG_DONTWAIT and waits with poll() when it must, so each wait has its own deadline
(body_timeout, send_timeout) without a settimeout() system call per request.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from prefork.errors import HTTPError, InternalServerError, RequestTimeout
from prefork.http.parser import RequestParser
from prefork.http.request import Request
from prefork.http.response import CONTINUE, error_response
from prefork.wsgi import Exchange, WSGIApp, build_environ

log = logging.getLogger(__name__)

RECV_BYTES = 64 * 1024
MAX_DRAIN_BYTES = 1 << 20  # unread body we discard to keep a connection; more: close
LINGER_S = 2.0  # after an error reply, read and drop the client's bytes this long (no RST)

# Connection states (who owns it): PARKED/LINGER → loop thread; ACTIVE → a pool thread.
PARKED, ACTIVE, LINGER, CLOSED = range(4)
# What the loop thread should do after receive().
WAIT, DISPATCH, CLOSE = range(3)

_POLLIN = select.POLLIN | select.POLLPRI
_POLLOUT = select.POLLOUT
_DONTWAIT = socket.MSG_DONTWAIT


class ClientGone(Exception):
    """The client closed or reset the connection; nothing more can be sent."""


@dataclass(slots=True)
class ServerContext:
    """What a connection needs from its worker: settings and hand-off callbacks.

    Built once per worker; read by every pool thread (the callbacks are thread-safe).
    """

    app: WSGIApp
    keepalive_s: float
    header_timeout_s: float
    body_timeout_s: float
    send_timeout_s: float
    max_keepalive_requests: int
    parser_limits: dict[str, int]
    park: Callable[[Connection], None]
    discard: Callable[[Connection], None]
    count_request: Callable[[], None]
    stopping: bool = False  # set by the worker's loop thread on a graceful stop


def _wait(fd: int, events: int, timeout_s: float) -> bool:
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(timeout_s * 1000))


class Connection:
    __slots__ = (
        "base",
        "continue_sent",
        "ctx",
        "deadline",
        "fd",
        "parser",
        "remote_addr",
        "remote_port",
        "request",
        "served",
        "sock",
        "state",
    )

    def __init__(
        self,
        sock: socket.socket,
        remote: tuple[str, str],
        base: dict[str, Any],
        ctx: ServerContext,
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.remote_addr, self.remote_port = remote
        self.base = base
        self.ctx = ctx
        self.parser = RequestParser(**ctx.parser_limits)
        self.state = PARKED
        self.deadline = 0.0
        self.served = 0
        self.request: Request | None = None
        self.continue_sent = False

    def __repr__(self) -> str:
        return f"<Connection fd={self.fd} {self.remote_addr}:{self.remote_port}>"

    # -- loop thread ---------------------------------------------------------------------
    def receive(self) -> int:
        """Read what has arrived without blocking; say whether a pool thread is needed."""
        try:
            data = self.sock.recv(RECV_BYTES, _DONTWAIT)
        except BlockingIOError:
            return WAIT
        except OSError:
            return CLOSE
        if not data:
            return CLOSE
        parser = self.parser
        was_idle = parser.idle
        parser.feed(data)
        if parser.ready or parser.error is not None or parser.stopped:
            return DISPATCH
        if was_idle:  # a new head has begun: it must complete within header_timeout
            self.deadline = time.monotonic() + self.ctx.header_timeout_s
        return WAIT

    def expire(self) -> None:
        """The loop's deadline passed while parked: 408 if a head was under way, then close."""
        if self.state == PARKED and not self.parser.idle:
            with contextlib.suppress(OSError):
                self.sock.send(error_response(RequestTimeout("request head not received in time")),
                               _DONTWAIT)
        self.close()

    def linger_read(self) -> bool:
        """Drop bytes a refused client still sends; False once it has closed."""
        try:
            data = self.sock.recv(RECV_BYTES, _DONTWAIT)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return bool(data)

    # -- pool thread ---------------------------------------------------------------------
    def serve(self) -> None:
        """Answer every complete request, then park, linger or close the connection."""
        parser = self.parser
        ctx = self.ctx
        while True:
            if parser.ready:
                req = parser.ready.popleft()
                if not self.serve_one(req):
                    self.finish(clean=parser.idle and not parser.ready and parser.error is None
                                and req.body.complete)
                    return
                continue
            if parser.error is not None:
                self.send_quietly(error_response(parser.error))
                self.finish(clean=False)
                return
            if parser.stopped or ctx.stopping:
                self.finish(clean=parser.idle)
                return
            # Wait in the selector for more bytes: an idle keep-alive connection, or the rest
            # of a head that has begun (then the head deadline still applies).
            now = time.monotonic()
            if parser.idle:
                self.deadline = now + ctx.keepalive_s
            elif self.deadline <= now:
                self.deadline = now + ctx.header_timeout_s
            self.state = PARKED
            ctx.park(self)
            return

    def serve_one(self, req: Request) -> bool:
        """Run the app for one request; True if the connection may carry another."""
        ctx = self.ctx
        self.served += 1
        ctx.count_request()
        keep_alive = (
            req.keep_alive
            and ctx.keepalive_s > 0
            and not ctx.stopping
            and (ctx.max_keepalive_requests == 0 or self.served < ctx.max_keepalive_requests)
        )
        self.request = req
        self.continue_sent = False
        req.body.fill = self.fill
        exchange = Exchange(self, req, keep_alive)
        try:
            environ = build_environ(req, self.base, self.remote_addr, self.remote_port)
            exchange.run(ctx.app, environ)
        except ClientGone:
            return False
        except HTTPError as exc:  # raised by the body reader: the client's fault
            log.info("request %s %r refused: %s %s", req.method, req.target, exc.status,
                     exc.detail)
            if not exchange.head_sent:
                self.send_quietly(error_response(exc))
            return False
        except Exception:
            log.exception("error in app handling %s %r", req.method, req.target)
            if not exchange.head_sent:
                self.send_quietly(error_response(InternalServerError()))
            return False
        finally:
            self.request = None
        if not exchange.keep_alive:
            return False
        if not req.body.complete:
            if req.expect_continue and not self.continue_sent:
                return False  # the client is still waiting for 100 before sending its body
            try:
                if not req.body.drain(MAX_DRAIN_BYTES):
                    return False
            except (HTTPError, ClientGone):
                return False
        return True

    def fill(self) -> None:
        """Body source for the app (wsgi.input): receive more bytes and feed the parser."""
        req = self.request
        assert req is not None
        if req.expect_continue and not self.continue_sent:
            self.continue_sent = True  # RFC 9110 §10.1.1: only once the app wants the body
            self.send(CONTINUE)
        data = self.recv_wait(self.ctx.body_timeout_s)
        if not data:
            raise ClientGone("client closed the connection during the request body")
        self.parser.feed(data)
        if not req.body.complete and self.parser.error is not None:
            raise self.parser.error

    def recv_wait(self, timeout_s: float) -> bytes:
        sock = self.sock
        try:
            return sock.recv(RECV_BYTES, _DONTWAIT)
        except BlockingIOError:
            pass
        except OSError as exc:
            raise ClientGone(str(exc)) from None
        if not _wait(self.fd, _POLLIN, timeout_s):
            raise RequestTimeout("request body not received in time")
        try:
            return sock.recv(RECV_BYTES, _DONTWAIT)
        except OSError as exc:
            raise ClientGone(str(exc)) from None

    # Output, for wsgi.Exchange
    def send(self, data: bytes) -> None:
        sock = self.sock
        try:
            sent = sock.send(data, _DONTWAIT)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise ClientGone(str(exc)) from None
        if sent == len(data):
            return
        view = memoryview(data)[sent:]
        deadline = time.monotonic() + self.ctx.send_timeout_s
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not _wait(self.fd, _POLLOUT, remaining):
                raise ClientGone("client did not accept the response in time")
            try:
                sent = sock.send(view, _DONTWAIT)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise ClientGone(str(exc)) from None
            view = view[sent:]

    def sendfile(self, file: IO[bytes], offset: int, count: int) -> int:
        in_fd = file.fileno()
        total = 0
        self.sock.setblocking(False)
        try:
            deadline = time.monotonic() + self.ctx.send_timeout_s
            while total < count:
                try:
                    sent = os.sendfile(self.fd, in_fd, offset + total, count - total)
                except BlockingIOError:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not _wait(self.fd, _POLLOUT, remaining):
                        raise ClientGone("client did not accept the file in time") from None
                    continue
                except OSError as exc:
                    raise ClientGone(str(exc)) from None
                if sent == 0:
                    break  # the file shrank
                total += sent
                deadline = time.monotonic() + self.ctx.send_timeout_s
        finally:
            self.sock.setblocking(True)
        return total

    def send_quietly(self, data: bytes) -> None:
        with contextlib.suppress(ClientGone):
            self.send(data)

    def finish(self, clean: bool) -> None:
        """End the connection after a response. A clean end closes at once; otherwise
        the client may still be sending (a refused body, pipelined requests), so we stop
        writing and let the loop read and drop its bytes for a moment: closing with unread
        data would send a RST that can destroy the response before the client reads it."""
        if clean:
            self.close()
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self.state = LINGER
        self.deadline = time.monotonic() + LINGER_S
        self.ctx.park(self)

    def close(self) -> None:
        if self.state == CLOSED:
            return
        self.state = CLOSED
        self.ctx.discard(self)
        try:
            self.sock.close()
        except OSError as exc:  # pragma: no cover - close() of a socket rarely fails
            if exc.errno != errno.EBADF:
                raise
