"""One client connection: its states, and everything that happens to it between the
moment the worker accepts it and the moment it is closed.

The worker hands a connection events and gets back what to do next (`Next`): arm it in
the epoll for reading, arm it for writing, or close it. The worker keeps only the claim
(which thread owns the connection now), its lock and the epoll calls; every state, every
deadline and every transition is decided here:

    on_ready()       the event it waits for has come (a new connection: its first bytes)
    on_deadline(t)   the worker's sweep found it due (due(t) said so)

    state      waits for                  on_ready()                   on_deadline()
    PARKED     bytes (head or next one)   read, parse; serve what is   408 if a head was
                                          complete (ACTIVE)            begun; close
    WRITING    the socket to drain        write the queue; then serve  close: the client
                                          what waits, or settle        stopped reading
    LINGER     the client's EOF           drop what it sends           close
    ACTIVE     (not armed: a pool thread is serving it)
    CLOSED     (gone from the worker's table)

A connection is owned by one thread at a time: the pool thread the epoll woke for it,
or the worker's main thread when it expires it. The epoll watches it edge-triggered
(`Watch`): registered once, never re-armed. So the worker lets it go only when nothing
can be waiting unannounced: its last read came back short (`drained`) with no word of
the peer's end left for recv to report (`hangup`), and no event came for it while a
thread owned it (`woken`); else the owner serves it again. Serving reads the body
on demand for the app; output the client does not take at once waits in this
connection's queue and is written as the socket drains (EPOLLOUT), holding no thread.
After the last response, settle() parks it for the next request, lingers (after a
refusal, so that closing does not reset the connection under the client's feet) or
closes it.

Sockets are non-blocking; waits use poll() with their own deadlines (body_timeout,
send_timeout), so no settimeout() system call is needed per request.

This is the reference. The native engine wakes a parked connection through a compiled
twin of on_ready, serve, settle and serve_one (prefork/_native_conn.c, by the engine's
on_ready and serve_one), which reads and writes these same fields and hands every case it
does not decide itself to the methods here; tests/unit/test_native_conn.py holds them
alike.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import socket
import sys
import termios
import time
from typing import Any

from prefork.accesslog import Entry
from prefork.connstate import (
    ACTIVE,
    CLOSE,
    CLOSED,
    END_CLEAN,
    END_LINGER,
    KEEP,
    LINGER,
    PARKED,
    PROXY_EXPECTED,
    PROXY_NONE,
    PROXY_REFUSED,
    READ,
    WRITE,
    WRITING,
    Next,
    ServerContext,
    Watch,
)
from prefork.engine import ClientSocket
from prefork.errors import (
    BadRequest,
    ClientGone,
    HTTPError,
    RequestTimeout,
)
from prefork.http import proxyproto
from prefork.http.parser import RequestParser
from prefork.http.request import Request
from prefork.http.response import error_response
from prefork.output import Output
from prefork.request_cycle import RECV_BYTES, RequestCycle
from prefork.seam import native_calls

log = logging.getLogger(__name__)

# A draining worker closes an idle keep-alive connection once it has been quiet this long.
# One that was busy a moment ago is likely to carry another request at once (a proxy's
# upstream pool reuses its hot connections within milliseconds): closing it would cross
# that request on the wire, and nginx retries such a request only once (on the next
# cached connection, which the drain closes too: a 502). Given the grace, the request
# comes and is answered with "Connection: close"; connections quiet longer are cold and
# close at once.
DRAIN_GRACE_S = 1.0


class Connection(RequestCycle):
    __slots__ = (
        "base",
        "claimed",
        "continue_sent",
        "ctx",
        "deadline",
        "drained",
        "dropped",
        "end",
        "fd",
        "hangup",
        "io",
        "linger_end",
        "out",
        "parser",
        "pre",
        "proxy_state",
        "remote_addr",
        "remote_port",
        "request",
        "served",
        "sock",
        "state",
        "trusted",
        "watch",
        "woken",
    )

    def __init__(
        self,
        sock: ClientSocket,
        remote: tuple[str, str],
        base: dict[str, Any],
        ctx: ServerContext,
        now: float | None = None,
    ) -> None:
        """A connection just accepted: PARKED, its head due within header_timeout."""
        if sock.gettimeout() != 0.0:  # the native engine's accept made it non-blocking
            sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.io = ctx.engine.socket_io(sock)  # recv and send, by the engine's calls
        self.remote_addr, self.remote_port = remote
        self.base = base
        self.ctx = ctx
        self.parser = RequestParser(ctx.parser_limits, ctx.engine.head_fields)
        # Decided once per connection, not per header (a proxy does not change mid-way).
        is_unix = sock.family == socket.AF_UNIX
        self.trusted = ctx.trust is not None and ctx.trust.peer(self.remote_addr, is_unix)
        self.proxy_state = PROXY_NONE
        if ctx.proxy_mode != "off":
            allowed = ctx.proxy_trust is not None and ctx.proxy_trust.peer(self.remote_addr,
                                                                           is_unix)
            self.proxy_state = PROXY_EXPECTED if allowed else PROXY_REFUSED
        self.pre = b""
        self.state = PARKED
        self.deadline = (time.monotonic() if now is None else now) + ctx.header_timeout_s
        self.served = 0
        self.request: Request | None = None
        self.continue_sent = False
        self.end = KEEP
        # The worker's, under its lock: a thread owns the connection now; an event came
        # for it while one did (its owner serves it again). Its owner's: what the epoll
        # watches it for (from its first park on); whether its last read came back short
        # (so any byte that comes later brings an edge), unless an event told of the
        # peer's end (HANGUP: its claimer's, under the lock).
        self.claimed = False
        self.woken = False
        self.watch = Watch.NOTHING
        self.drained = True
        self.hangup = False
        # LINGER: when it is closed whatever the client still sends; the bytes dropped.
        self.linger_end = 0.0
        self.dropped = 0
        self.out = Output(sock, self.io, ctx.send_timeout_s, ctx.progress)

    def __repr__(self) -> str:
        return f"<Connection fd={self.fd} {self.remote_addr}:{self.remote_port}>"

    # -- events, from the worker -------------------------------------------------------------
    @native_calls
    def on_ready(self) -> Next:
        """The event this connection was armed for has come (or it was just accepted)."""
        state = self.state
        if state is PARKED:
            return self._read()
        if state is WRITING:
            return self._write()
        if state is LINGER:
            return READ if self._linger_read() else CLOSE
        return CLOSE if state is CLOSED else READ  # ACTIVE is never armed

    def due(self, now: float) -> bool:
        """Armed and past its deadline (read without the claim: the sweep's first look)."""
        return self.deadline <= now and self.state is not ACTIVE and self.state is not CLOSED

    def on_deadline(self, now: float) -> Next:
        """The sweep claimed it as due: expire it, unless it moved on meanwhile."""
        state = self.state
        if self.deadline > now or state is ACTIVE:  # served and parked since the look
            return WRITE if state is WRITING else READ
        if state is PARKED and not self.parser.idle:
            if self.ctx.metrics is not None:
                self.ctx.metrics.reject(408)
            with contextlib.suppress(OSError):
                self.sock.send(error_response(RequestTimeout("request head not received in time")))
        return CLOSE  # an idle keep-alive, a slow head, lingering, or a client not reading

    # -- PARKED: bytes have arrived ------------------------------------------------------------
    def _read(self) -> Next:
        """Read what has arrived without blocking; serve what is complete."""
        try:
            data = self.io.recv(RECV_BYTES)
        except BlockingIOError:
            self.drained, self.hangup = True, False  # (a hang-up's recv says so: stale)
            return READ
        except OSError:
            return CLOSE
        if not data:
            return CLOSE
        self.drained = len(data) < RECV_BYTES and not self.hangup
        if self.proxy_state is not PROXY_NONE:
            try:
                data = self._take_proxy_header(data)
            except BadRequest as exc:
                log.info("closing %r: %s", self, exc.detail)
                return CLOSE
            if not data:
                return READ
        parser = self.parser
        was_idle = parser.idle
        parser.feed(data)
        if parser.ready or parser.error is not None or parser.stopped:
            self.state = ACTIVE
            return self.serve()
        if was_idle:  # a new head has begun: it must complete within header_timeout
            self.deadline = time.monotonic() + self.ctx.header_timeout_s
        return READ

    def _take_proxy_header(self, data: bytes) -> bytes:
        """Remove the PROXY protocol header from the first bytes; b"" while incomplete.
        Raises BadRequest (the connection is closed) if it is malformed or not allowed."""
        if self.proxy_state is PROXY_REFUSED:
            raise BadRequest("peer not in proxy_allow_ips")
        self.pre += data
        result = proxyproto.parse(self.pre, self.ctx.proxy_mode)
        if result is None:
            return b""
        consumed, client = result
        if client is not None:
            self.remote_addr, self.remote_port = client
        rest, self.pre, self.proxy_state = self.pre[consumed:], b"", PROXY_NONE
        return rest

    # -- WRITING and LINGER ------------------------------------------------------------------
    def _write(self) -> Next:
        """The socket drained: write more of the queue; then serve what waited behind it."""
        self.drained = False  # the event may have been for bytes: read before parking
        try:
            done = self.out.flush()
        except ClientGone:
            return CLOSE
        if not done:
            self.deadline = time.monotonic() + self.ctx.send_timeout_s
            return WRITE
        parser = self.parser
        if self.end is KEEP and (parser.ready or parser.error is not None or parser.stopped):
            self.state = ACTIVE  # pipelined requests were waiting behind the output
            return self.serve()
        return self.settle()

    def _linger_read(self) -> bool:
        """Drop bytes the client still sends after our side was shut; False once it has
        closed, or lingering has lasted or dropped enough (lingering_time, _bytes)."""
        try:
            data = self.io.recv(RECV_BYTES)
        except BlockingIOError:
            self.drained, self.hangup = True, False
            return True
        except OSError:
            return False
        if not data:
            return False
        self.drained = len(data) < RECV_BYTES and not self.hangup
        ctx = self.ctx
        self.dropped += len(data)
        if self.dropped > ctx.lingering_bytes:
            return False
        self.deadline = min(time.monotonic() + ctx.lingering_timeout_s, self.linger_end)
        return True

    # -- ACTIVE: serving -----------------------------------------------------------------------
    def serve(self) -> Next:
        """Answer every complete request; leave unsent output to EPOLLOUT; then settle."""
        parser = self.parser
        serve_one = self.ctx.engine.serve_one  # native: _native_conn.c
        while self.end is KEEP:
            if parser.ready:
                req = parser.ready.popleft()
                if not serve_one(self, req):
                    self.ending(req)
            elif parser.error is not None:
                self._refuse(parser.error)
            elif parser.stopped:
                self.end = END_CLEAN if parser.idle else END_LINGER
            else:
                # Wait for the next request, even when the worker is draining: the last
                # response promised keep-alive, so closing now could lose a request the
                # client is sending. The next one is answered with "Connection: close".
                break
            if self.out.queue:
                # The client is slow to read: whichever pool thread EPOLLOUT wakes writes
                # the rest and comes back here if more requests are waiting. This thread
                # is free now.
                self.state = WRITING
                self.deadline = time.monotonic() + self.ctx.send_timeout_s
                return WRITE
        return self.settle()

    @native_calls
    def ending(self, req: Request) -> None:
        """`req` was the connection's last request: close it outright only if the client
        said it sends no more and every byte it sent was read; otherwise it may be writing
        already (the next request, pipelined or crossing our close on the wire, or the
        rest of a body), and closing with unread bytes would make the kernel reset the
        connection and drop the response bytes not yet sent (RFC 9112 §9.6): linger.
        (The native engine's serve loop calls this too.)"""
        if self.end is not KEEP:
            return  # _failed decided (the client is gone)
        parser = self.parser
        clean = (not req.keep_alive and parser.idle and not parser.ready
                 and parser.error is None and req.body.complete)
        self.end = END_CLEAN if clean else END_LINGER

    @native_calls
    def _refuse(self, error: HTTPError) -> None:
        """The parser found the request malformed: its 4xx, then linger and close."""
        ctx = self.ctx
        self.out.send_quietly(error_response(error))
        self.end = END_LINGER
        if ctx.metrics is not None:
            ctx.metrics.reject(error.status)
        if ctx.access_log is not None:
            ctx.access_log.write(Entry(self.remote_addr, "-", "-", "-", error.status, 0, 0.0,
                                       [], [], ctx.worker_number))

    @native_calls
    def settle(self) -> Next:
        """All output is written: park for the next request, linger, or close. (While the
        worker drains, an idle one parks too: the drain closes it after DRAIN_GRACE_S.)"""
        end = self.end
        if end is END_CLEAN:
            return CLOSE
        if end is END_LINGER:
            return self.linger()
        now = time.monotonic()
        if self.parser.idle:
            self.deadline = now + self.ctx.keepalive_s
        elif self.deadline <= now:  # part of the next head is here already
            self.deadline = now + self.ctx.header_timeout_s
        self.state = PARKED
        return READ

    def quiet(self) -> bool:
        """Lingering, and its client has taken every byte we sent and our FIN (none left
        unacknowledged) and sent nothing we have not read: closing it now resets nothing
        it has not read. (Read without the claim, by a draining worker's main thread.)"""
        if self.state is not LINGER or self.claimed:
            return False
        buf = bytearray(4)
        try:
            for request in (termios.FIONREAD, termios.TIOCOUTQ):  # TIOCOUTQ is SIOCOUTQ
                fcntl.ioctl(self.fd, request, buf)
                if int.from_bytes(buf, sys.byteorder):
                    return False
        except OSError:
            return False
        return True

    def cold(self, now: float) -> bool:
        """Draining: parked between requests, having served one, and quiet for DRAIN_GRACE_S
        (a new connection's first request may be on its way: it keeps header_timeout)."""
        return (self.state is PARKED and self.served > 0 and self.parser.idle
                and now - (self.deadline - self.ctx.keepalive_s) >= DRAIN_GRACE_S)

    def stop_idle(self) -> Next:
        """The worker drains and this connection is idle between requests (claimed, its
        last look found no bytes): linger it closed now rather than at its deadline (our
        FIN first: a request crossing it on the wire is dropped, not reset, and its
        client, seeing the FIN, may retry it: RFC 9112 §9.3.1)."""
        self.end = END_LINGER
        return self.linger()

    def linger(self) -> Next:
        """Shut our sending side (the client reads every byte sent, then our FIN), then
        drop what the client still sends until it closes (lingering_time, _timeout,
        _bytes bound it); holds no thread: the epoll wakes it for what comes."""
        ctx = self.ctx
        if ctx.lingering_time_s <= 0:
            return CLOSE
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return CLOSE
        now = time.monotonic()
        self.state = LINGER
        self.linger_end = now + ctx.lingering_time_s
        self.deadline = min(now + ctx.lingering_timeout_s, self.linger_end)
        return READ

    @native_calls
    def close(self) -> None:
        """Release everything; the worker has taken it out of its table first (a closed
        descriptor's number may be reused at once by the next accept)."""
        if self.state is CLOSED:
            return
        self.state = CLOSED
        self.out.discard()
        self.parser.close()
        self.io.close()  # the native engine's forgets the descriptor before it is reused
        self.ctx.engine.close_socket(self.sock)

