"""A worker's listeners: taking new connections, and pausing when the worker is full,
out of descriptors or recycling.

`Accepting` is the half of `worker.Worker` that owns `accepting` (whether the listeners
are in the worker's epoll). Pausing and resuming change that flag and the epoll together,
under `listen_lock`: a pool thread pausing (a full table, EMFILE) and the main thread
resuming (room again) cannot interleave so that one registers a listener the other has
not yet unregistered (EEXIST), or leave the flag saying the opposite of the epoll.
Called by pool threads (`_accept`, `_pause_accepting`) and the worker's main thread
(`_resume_accepting`, the drain). The native engine's pool loop accepts in C
(WorkerCalls.follow) and calls `_pause_accepting` and `_accept` by name.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import select
import threading
import time
from collections.abc import Callable
from typing import Any

from prefork import engine
from prefork.config import Config
from prefork.connection import Connection
from prefork.connstate import Next, ServerContext
from prefork.engine import ClientSocket
from prefork.seam import native_calls
from prefork.sockets import Listener

log = logging.getLogger(__name__)

_IN = select.EPOLLIN
# Running out of descriptors or memory on accept: said at most once a second, with a count.
OUT_OF = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
FAILURE_LOG_S = 1.0


class Accepting:
    """The listener side of a worker (see the module docstring)."""

    # The worker's, set in its __init__ and run().
    config: Config
    engine: engine.Engine
    ep: select.epoll
    listeners: list[Listener]
    conns: dict[int, Connection]
    lock: threading.Lock
    accept_lock: threading.Lock
    listen_lock: threading.Lock
    accepting: bool
    stopping: bool
    recycle: bool
    bases: dict[int, dict[str, Any]]
    ctx: ServerContext
    serve: Callable[[Connection], None]  # the worker's (or the engine's twin)
    _arm: Callable[[Connection, Next], bool]
    _kick: Callable[[Connection], None]
    failures: tuple[float, int]  # accept failures: when the last was logged, how many since

    @native_calls
    def _accept(self, listener: Listener) -> None:
        # The bound check and the accept are one step: two threads woken for a listener
        # must not both take the last free place. The drain closes listeners under the
        # same lock: one found open here stays open until what it gave is adopted.
        with self.accept_lock:
            if self.stopping or self.recycle:
                return  # the drain takes what is left in the backlog
            if len(self.conns) >= self.config.worker_connections:
                self._pause_accepting()
                return
            try:
                accepted = self.engine.accept(listener.sock)
            except OSError as exc:
                if exc.errno in OUT_OF:
                    self._accept_failed(exc)
                    self._pause_accepting()
                return  # ECONNABORTED, or a listener closed by a stop: nothing to do
            if accepted is None:
                return  # another thread or worker took it
            conn = self._adopt(*accepted, self.bases[id(listener)], time.monotonic())
        # Its first request often arrives with the connection: serve it at once.
        self.serve(conn)

    def _accept_failed(self, exc: OSError) -> None:
        """Out of descriptors or memory: logged once a second at most, with a count (the
        worker pauses and retries on every sweep; a line each time would flood the log)."""
        now = time.monotonic()
        last, count = self.failures
        count += 1
        if now - last >= FAILURE_LOG_S:
            log.error("cannot accept: %s (%d time(s) since the last line); pausing for a "
                      "moment (raise max_open_files, or lower worker_connections)",
                      exc.strerror, count)
            last, count = now, 0
        self.failures = (last, count)

    def _adopt(self, sock: ClientSocket, remote: tuple[str, str], base: dict[str, Any],
               now: float) -> Connection:
        """A new connection, claimed by the caller; in the epoll from its first parking."""
        conn = self.engine.new_connection(sock, remote, base, self.ctx, now)
        conn.claimed = True
        self.conns[conn.fd] = conn
        return conn

    @native_calls
    def _pause_accepting(self) -> None:
        with self.listen_lock:
            if not self.accepting:
                return
            self.accepting = False
            for listener in self.listeners:
                with contextlib.suppress(OSError, ValueError):  # closed by the drain
                    self.ep.unregister(listener.sock.fileno())

    def _resume_accepting(self) -> None:
        with self.listen_lock:
            if self.accepting or self.stopping or self.recycle:
                return
            self.accepting = True
            for listener in self.listeners:
                # Not EPOLLEXCLUSIVE: every worker hears of a new connection and a free
                # pool thread of one of them (one waiting on its epoll) takes it.
                self.ep.register(listener.sock.fileno(), _IN)

    def _stop_listening(self, take_backlog: bool) -> None:
        """The drain (under the accept lock): adopt what waits in the backlog if asked
        (a pool thread serves each when its bytes come), then close our listeners."""
        now = time.monotonic()
        with self.listen_lock:
            for listener in self.listeners:
                base = self.bases[id(listener)]
                for _ in range(10000 if take_backlog else 0):
                    try:
                        accepted = self.engine.accept(listener.sock)
                    except OSError:
                        break
                    if accepted is None:
                        break
                    conn = self._adopt(*accepted, base, now)
                    if self._arm(conn, Next.READ):
                        self._kick(conn)
                with contextlib.suppress(OSError, ValueError):
                    self.ep.unregister(listener.sock.fileno())
                listener.sock.close()
            self.accepting = False
