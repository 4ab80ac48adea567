"""One request on a connection, from its complete head to its last byte: the request
counted and the keep-alive verdict (`_begin`), the app run or a static file sent, an
exception answered (`_failed`: 500, or the client's 4xx, or nothing once a head went
out), the clocks stopped, the access log and metrics written and post_request run
(`_finish`, `account`), the body read on demand for the app (`fill`, `recv_wait`) and
what the app left of it drained so that the next request starts where it should
(`_ready_for_next`).

`RequestCycle` is a part of `connection.Connection` (its base class, with no fields of
its own: its methods work on a Connection's), split out as the concept it is: what
happens between the head and the next request. Run by the pool thread that owns the
connection. The native engine's twin of serve_one (prefork/_native_conn.c) hands every
case it does not serve itself to serve_one here, and calls the methods marked
@native_calls by name.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from prefork.accesslog import Entry, escape
from prefork.connstate import END_CLEAN
from prefork.errors import ClientGone, HTTPError, InternalServerError, RequestTimeout
from prefork.hooks import RequestView, ResponseView, run_hook
from prefork.http.request import Request
from prefork.http.response import CONTINUE, error_body, error_response
from prefork.output import POLLIN, wait_for
from prefork.proxy import apply_forwarded
from prefork.seam import native_calls
from prefork.values import StaticMount
from prefork.wsgi import Exchange

if TYPE_CHECKING:
    from prefork.connstate import Ending, ServerContext
    from prefork.engine import ClientSocket, SocketIO
    from prefork.http.parser import RequestParser
    from prefork.output import Output

# A connection's lines keep the logger name they have always had.
log = logging.getLogger("prefork.connection")

RECV_BYTES = 64 * 1024
MAX_DRAIN_BYTES = 1 << 20  # unread body we discard to keep a connection; more: close


class RequestCycle:
    # No fields of its own (a Connection's are its __slots__); hidden from the type
    # checker, which reads the annotations below as the fields these methods use.
    if not TYPE_CHECKING:
        __slots__ = ()
    ctx: ServerContext
    sock: ClientSocket
    io: SocketIO
    fd: int
    out: Output
    parser: RequestParser
    base: dict[str, Any]
    remote_addr: str
    remote_port: str
    trusted: bool
    served: int
    request: Request | None
    continue_sent: bool
    drained: bool
    end: Ending

    @native_calls
    def serve_one(self, req: Request) -> bool:
        """Run the app for one request; True if the connection may carry another."""
        ctx = self.ctx
        exchange = self._begin(req)
        timed = ctx.timed
        started = time.monotonic() if timed else 0.0
        environ: dict[str, Any] | None = None
        status = 0  # set when the server, not the app, chose the status
        try:
            if ctx.pre_request is not None:
                run_hook(ctx.pre_request, "pre_request", ctx.hook_worker, RequestView(req))
            mount = ctx.static.match(req.target) if ctx.static is not None else None
            if mount is not None:
                self.serve_static(req, mount, exchange)
            else:
                environ = ctx.engine.build_environ(req, self.base, self.remote_addr,
                                                   self.remote_port)
                if ctx.trust is not None:
                    apply_forwarded(environ, ctx.trust, self.trusted)
                exchange.run(ctx.app, environ)
        except Exception as exc:
            status = self._failed(req, exchange, exc)
            return False
        finally:
            self._finish(req, exchange, environ, status, started)
        return exchange.keep_alive and self._ready_for_next(req)

    def _begin(self, req: Request) -> Exchange:
        """Count the request, decide whether it may keep the connection, start the clocks."""
        ctx = self.ctx
        self.served += 1
        keep_alive = (
            req.keep_alive
            and ctx.keepalive_s > 0
            and not ctx.stopping
            and (ctx.max_keepalive_requests == 0 or self.served < ctx.max_keepalive_requests)
        )
        self.request = req
        self.continue_sent = False
        if not req.body.complete:
            req.body.fill = self.fill  # the app may read what has not arrived yet
        exchange = ctx.engine.exchange(self.out, req, keep_alive, ctx.request_timeout_s > 0)
        ctx.begin_request(req, exchange)
        return exchange

    @native_calls
    def _failed(self, req: Request, exchange: Exchange, exc: Exception) -> int:
        """A request ended by an exception: answer it if no head went out yet; returns the
        status the server chose (0: the app's stands)."""
        if isinstance(exc, ClientGone):
            self.out.discard()
            self.end = END_CLEAN
            return exchange.code or 499  # nginx's "client closed request"
        if isinstance(exc, HTTPError):  # raised by the body reader: the client's fault
            log.info("request %s %s refused: %s %s", req.method, escape(req.uri), exc.status,
                     exc.detail)
            error: HTTPError = exc
            if self.ctx.metrics is not None:
                self.ctx.metrics.reject(exc.status)
        else:
            log.error("error in app handling %s %s", req.method, escape(req.uri),
                      exc_info=exc)
            error = InternalServerError()
        if exchange.head_sent:
            return 0
        self.out.send_quietly(error_response(error))
        exchange.sent = len(error_body(error))
        return error.status

    def _finish(self, req: Request, exchange: Exchange, environ: dict[str, Any] | None,
                status: int, started: float) -> None:
        """After every request, whatever happened: stop the clocks, log, post_request."""
        ctx = self.ctx
        req.body.fill = None
        self.request = None
        ctx.end_request()
        if ctx.timed:
            self.account(req, exchange, status, started)
        if ctx.post_request is not None:
            run_hook(ctx.post_request, "post_request", ctx.hook_worker, RequestView(req),
                     environ, ResponseView(exchange))

    @native_calls
    def _ready_for_next(self, req: Request) -> bool:
        """The response kept the connection: read past what the app left of the body
        (up to MAX_DRAIN_BYTES), so that the next request starts where it should."""
        if req.body.complete:
            return True
        if req.expect_continue and not self.continue_sent:
            return False  # the client is still waiting for 100 before sending its body
        req.body.fill = self.fill
        self.request = req
        try:
            return req.body.drain(MAX_DRAIN_BYTES)
        except (HTTPError, ClientGone):
            return False
        finally:
            req.body.fill = None
            self.request = None

    @native_calls
    def account(self, req: Request, exchange: Exchange, status: int, started: float) -> None:
        """The access-log line and the metrics of one finished request."""
        ctx = self.ctx
        duration = time.monotonic() - started
        code = status or exchange.code
        if ctx.metrics is not None:
            ctx.metrics.observe(req.method, code, duration, req.body.received, exchange.sent)
        if ctx.access_log is not None:
            ctx.access_log.write(Entry(
                remote=self.remote_addr, method=req.method,
                target=req.target.decode("latin-1"), protocol="HTTP/" + req.version,
                status=code, body_bytes=exchange.sent, duration_s=duration,
                request_headers=req.headers,
                response_headers=exchange.headers if not status else [],
                worker=ctx.worker_number,
            ))

    @native_calls
    def fill(self) -> None:
        """Body source for the app (wsgi.input): receive more bytes and feed the parser."""
        req = self.request
        assert req is not None
        parser = self.parser
        if parser.error is not None:
            raise parser.error  # the body was already found malformed
        if parser.stopped:
            raise ClientGone("no more bytes will be parsed on this connection")
        if req.expect_continue and not self.continue_sent:
            self.continue_sent = True  # RFC 9110 §10.1.1: only once the app wants the body
            self.out.send(CONTINUE)
            self.out.wait_flushed()
        self.drained = False  # read before parking: this read may leave bytes unannounced
        data = self.recv_wait(self.ctx.body_timeout_s)
        if not data:
            raise ClientGone("client closed the connection during the request body")
        self.ctx.progress()
        self.parser.feed(data)
        if not req.body.complete and self.parser.error is not None:
            raise self.parser.error

    def recv_wait(self, timeout_s: float) -> bytes:
        sock = self.io
        try:
            return sock.recv(RECV_BYTES)
        except BlockingIOError:
            pass
        except OSError as exc:
            raise ClientGone(str(exc)) from None
        if not wait_for(self.fd, POLLIN, timeout_s):
            raise RequestTimeout("request body not received in time")
        try:
            return sock.recv(RECV_BYTES)
        except BlockingIOError:
            return self.recv_wait(timeout_s)
        except OSError as exc:
            raise ClientGone(str(exc)) from None

    def serve_static(self, req: Request, mount: StaticMount, exchange: Exchange) -> None:
        """A file from a static mount, instead of the app."""
        assert self.ctx.static is not None
        reply = self.ctx.static.respond(req, mount, close=not exchange.keep_alive)
        exchange.code, exchange.head_sent = reply.status, True
        self.out.send(reply.head)
        if reply.fd >= 0:
            try:
                exchange.sent = self.out.sendfile_fd(reply.fd, reply.offset, reply.count)
            finally:
                os.close(reply.fd)
