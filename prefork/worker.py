"""A worker process: after-fork set-up, the loop thread, the thread pool, a graceful drain.

The worker's main thread runs the *loop*: one epoll over the listening sockets, every
connection that is waiting for bytes (a keep-alive connection between requests, or a
client still sending its head), a self-pipe for wake-ups and signals, and the channel to
the master. The loop accepts, reads heads without blocking, enforces deadlines, and hands
a connection with a complete request to the pool. Pool threads run the app and give the
connection back by re-arming it in the epoll (EPOLLONESHOT), so a connection is only ever
seen by one thread at a time and an idle one holds no thread.

Accept only what can be served: while every pool thread is busy the listeners are taken
out of the epoll, so new connections wait in the kernel backlog for a worker that is free.

The master talks to a worker through signals (TERM: drain and exit; INT/QUIT: exit now)
and a SEQPACKET channel: the worker reports "ready" once, then a heartbeat every second.
When the master's end closes (the master died, even by SIGKILL) the worker exits at once.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import logging
import os
import queue
import select
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from prefork import log as logsetup
from prefork.accesslog import AccessLog, is_off
from prefork.config import Config
from prefork.connection import (
    ACTIVE,
    DISPATCH,
    KEEP,
    LINGER,
    PARKED,
    WAIT,
    WRITING,
    ClientGone,
    Connection,
    ServerContext,
)
from prefork.errors import AppLoadError
from prefork.http.request import Request
from prefork.loader import load_app
from prefork.metrics import WorkerMetrics
from prefork.proxy import Trust
from prefork.sockets import Listener
from prefork.static import StaticFiles
from prefork.wsgi import WSGIApp, base_environ

log = logging.getLogger(__name__)

APP_LOAD_ERROR = 4  # exit status: the app cannot be imported; respawning would not help
HEARTBEAT_S = 1.0
# A worker with no free thread leaves new connections to idle workers, but for no longer
# than this: when every worker is saturated, new connections must not starve behind
# busy keep-alive ones (they would wait in the backlog for seconds).
ACCEPT_PAUSE_MAX_S = 0.02
STUCK_HINT_S = 0.5  # no job finished for this long: the saturated worker may be stuck
SWEEP_S = 0.5  # how often deadlines are checked: their resolution
_IN = select.EPOLLIN
_ARMED = select.EPOLLIN | select.EPOLLONESHOT
_ARMED_OUT = select.EPOLLOUT | select.EPOLLONESHOT
_DISARMED = select.EPOLLONESHOT


@dataclass(slots=True)
class WorkerInfo:
    """What the app may learn about the worker serving it (environ["prefork.worker"])."""

    number: int
    pid: int
    started: float = field(default_factory=time.monotonic)
    served: int = 0

    def requests_served(self) -> int:
        return self.served


def set_title(title: str) -> None:
    try:
        import setproctitle
    except ImportError:  # optional: titles only help ps/top
        return
    setproctitle.setproctitle(title)


class Worker:
    def __init__(
        self,
        number: int,
        config: Config,
        listeners: list[Listener],
        channel: socket.socket,
        app: WSGIApp | None = None,
    ) -> None:
        self.number = number
        self.config = config
        self.listeners = listeners
        self.channel = channel
        self.app = app
        self.master_pid = os.getppid()
        self.info = WorkerInfo(number, os.getpid())
        self.conns: dict[int, Connection] = {}
        self._served = itertools.count(1)
        self.jobs: queue.SimpleQueue[Connection | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.busy = 0
        self.accepting = False
        self.force_accept_at = 0.0  # when a saturated worker takes connections anyway
        self.last_done = 0.0  # when a pool thread last finished a job
        self.stopping = False
        self.stop_signal: str | None = None  # "graceful" or "quick", set by signal handlers
        self.recycle = False
        self.reopen_logs = False
        # thread ident -> (start, method, target) of the request it is running
        self.inflight: dict[int, tuple[float, str, bytes]] = {}
        self.stuck: set[int] = set()
        self.max_requests = config.max_requests
        if config.max_requests and config.max_requests_jitter:
            import random

            self.max_requests += random.randint(0, config.max_requests_jitter)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.ep = select.epoll()

    # -- set-up ----------------------------------------------------------------------------
    def _install_signals(self) -> None:
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)

        def graceful(signum: int, frame: object) -> None:
            self.stop_signal = self.stop_signal or "graceful"

        def quick(signum: int, frame: object) -> None:
            self.stop_signal = "quick"

        def reopen(signum: int, frame: object) -> None:
            self.reopen_logs = True

        signal.signal(signal.SIGTERM, graceful)
        signal.signal(signal.SIGINT, quick)
        signal.signal(signal.SIGQUIT, quick)
        signal.signal(signal.SIGUSR1, reopen)
        # The master acts on these; a terminal sends them to the whole process group.
        for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU,
                    signal.SIGUSR2, signal.SIGWINCH):
            signal.signal(sig, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)

    def run(self) -> int:
        logsetup.set_role(f"worker {self.number}")
        set_title(f"prefork: worker {self.number}")
        self._install_signals()
        if self.app is None:
            try:
                self.app = load_app(self.config.app, self.config.pythonpath)
            except AppLoadError as exc:
                log.error("%s", exc)
                return APP_LOAD_ERROR
        ctx = ServerContext(
            app=self.app,
            keepalive_s=self.config.keepalive,
            header_timeout_s=self.config.header_timeout,
            body_timeout_s=self.config.body_timeout,
            send_timeout_s=self.config.send_timeout,
            max_keepalive_requests=self.config.max_keepalive_requests,
            parser_limits={
                "limit_request_line": self.config.limit_request_line,
                "limit_request_fields": self.config.limit_request_fields,
                "limit_request_field_size": self.config.limit_request_field_size,
                "head_limit": self.config.head_limit_bytes,
                "max_body": self.config.limit_request_body,
                "framing_limit": self.config.limit_chunk_framing,
            },
            park=self._park,
            discard=self._discard,
            begin_request=self._begin_request,
            end_request=self._end_request,
            progress=self._progress,
            access_log=None if is_off(self.config.access_log) else
            AccessLog(self.config.access_log, self.config.access_log_format),
            worker_number=self.number,
            metrics=WorkerMetrics() if self.config.admin_bind else None,
            static=StaticFiles(self.config.static) if self.config.static else None,
            trust=Trust(self.config.forwarded_allow_ips, self.config.unix_socket_trusted,
                        self.config.forwarded_trusted_hops),
            proxy_mode=self.config.proxy_protocol,
            proxy_trust=Trust(self.config.proxy_allow_ips, self.config.unix_socket_trusted),
        )
        self.ctx = ctx
        multiprocess = self.config.workers > 1
        self.bases: dict[int, dict[str, Any]] = {}
        for listener in self.listeners:
            name, port = listener.server_name_port()
            base = base_environ(name, port, self.config.root_path, multiprocess)
            base["prefork.worker"] = self.info
            self.bases[listener.sock.fileno()] = base
        for i in range(self.config.threads):
            threading.Thread(target=self._pool_thread, name=f"pool-{i}", daemon=True).start()
        self.ep.register(self.wake_r, _IN)
        self.ep.register(self.channel.fileno(), _IN)
        self._resume_accepting()
        self._tell_master(b"ready")
        return self._loop()

    # -- the loop thread -------------------------------------------------------------------
    def _loop(self) -> int:
        ep = self.ep
        conns = self.conns
        listener_fds = {lst.sock.fileno(): lst for lst in self.listeners}
        channel_fd = self.channel.fileno()
        next_beat = next_sweep = time.monotonic()
        while True:
            wake_at = min(next_beat, next_sweep)
            if not self.accepting and not self.stopping:
                wake_at = min(wake_at, self.force_accept_at)
            timeout = max(0.0, wake_at - time.monotonic())
            for fd, _mask in ep.poll(timeout):
                conn = conns.get(fd)
                if conn is not None:
                    self._on_ready(conn)
                elif fd in listener_fds:
                    self._accept(listener_fds[fd])
                elif fd == self.wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 4096)
                elif fd == channel_fd and not self._on_master():
                    log.warning("master is gone; exiting")
                    return 0
            if self.stop_signal == "quick":
                return 0
            if self.reopen_logs:
                self.reopen_logs = False
                logsetup.reopen()
                if self.ctx.access_log is not None:
                    self.ctx.access_log.reopen()
            if (self.stop_signal or self.recycle) and not self.stopping:
                if self.recycle and not self.stop_signal:
                    self._tell_master(b"retire served %d requests" % self.info.served)
                self._begin_stop()
            now = time.monotonic()
            if now >= next_sweep:
                next_sweep = now + SWEEP_S
                self._expire(now)
            if now >= next_beat:
                next_beat = now + HEARTBEAT_S
                if os.getppid() != self.master_pid:
                    log.warning("master is gone; exiting")
                    return 0
                self._heartbeat()
            if self.stopping:
                stuck = sum(1 for ident in self.stuck if ident in self.inflight)
                if len(conns) <= stuck and self.busy <= stuck:
                    if stuck:
                        log.warning("exiting with %d stuck request(s) abandoned", stuck)
                    return 0
            elif not self.accepting and len(conns) < self.config.worker_connections and (
                    self.busy < self.config.threads
                    or (now >= self.force_accept_at and now - self.last_done < STUCK_HINT_S)):
                self._resume_accepting()

    def _on_ready(self, conn: Connection) -> None:
        state = conn.state
        if state == PARKED:
            action = conn.receive()
            if action == DISPATCH:
                self._dispatch(conn)
            elif action == WAIT:
                self._park(conn)
            else:
                conn.close()
        elif state == WRITING:
            try:
                done = conn.flush()
            except ClientGone:
                conn.close()
                return
            if not done:
                conn.deadline = time.monotonic() + self.config.send_timeout
                self._park(conn)
            elif conn.end == KEEP and conn.has_work():
                self._dispatch(conn)  # pipelined requests were waiting behind the output
            else:
                conn.settle()
        elif state == LINGER:
            if conn.linger_read():
                self._park(conn)
            else:
                conn.close()
        # ACTIVE: a stray error/hang-up report; the pool thread owning it will find out.

    def _accept(self, listener: Listener) -> None:
        threads = self.config.threads
        free = threads - self.busy
        if free <= 0:
            now = time.monotonic()
            # Only a worker that is getting through its work takes a share while saturated:
            # one whose threads are all stuck must leave new connections to others.
            if now < self.force_accept_at or now - self.last_done > STUCK_HINT_S:
                self._pause_accepting()
                return
            free = threads  # saturated for a while: take a fair share anyway
            self.force_accept_at = now + ACCEPT_PAUSE_MAX_S
        free = min(free, self.config.worker_connections - len(self.conns))
        if free <= 0:
            self._pause_accepting()
            return
        fd = listener.sock.fileno()
        base = self.bases[fd]
        now = time.monotonic()
        for _ in range(free):
            try:
                sock, addr = listener.sock.accept()
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.error("cannot accept: %s; pausing for a moment", exc.strerror)
                    self._pause_accepting()
                    time.sleep(0.1)  # let connections finish and free descriptors
                break  # ECONNABORTED and friends: the client gave up
            self._adopt(sock, addr, base, now)

    def _adopt(self, sock: socket.socket, addr: Any, base: dict[str, Any], now: float) -> None:
        # AF_UNIX peers have no address.
        remote = (str(addr[0]), str(addr[1])) if isinstance(addr, tuple) else ("", "")
        conn = Connection(sock, remote, base, self.ctx)
        self.conns[conn.fd] = conn
        self.ep.register(conn.fd, _DISARMED)
        conn.deadline = now + self.config.header_timeout
        action = conn.receive()  # the request often arrives with the connection
        if action == DISPATCH:
            self._dispatch(conn)
        elif action == WAIT:
            self._park(conn)
        else:
            conn.close()

    def _dispatch(self, conn: Connection) -> None:
        conn.state = ACTIVE
        with self.lock:
            self.busy += 1
        self.jobs.put(conn)


    def _expire(self, now: float) -> None:
        """Close connections parked past their deadline (idle keep-alive, slow head,
        lingering, a client not reading), and find requests running past `timeout`.
        A sweep of the table, twice a second: no per-request timer state, and nothing
        keeps a closed connection alive."""
        timeout = self.config.timeout
        for ident, (start, method, target) in list(self.inflight.items()):
            if now - start > timeout and ident not in self.stuck:
                self._report_stuck(ident, now - start, method, target)
        for conn in list(self.conns.values()):
            if conn.deadline <= now:
                state = conn.state
                if state == PARKED:
                    conn.expire()
                elif state in (LINGER, WRITING):  # WRITING: stopped reading
                    conn.close()

    def _report_stuck(self, ident: int, age: float, method: str, target: bytes) -> None:
        """A request has run past `timeout`: log where its thread is, and retire this
        worker (a replacement starts now; the other requests here finish first)."""
        self.stuck.add(ident)
        frame = sys._current_frames().get(ident)
        stack = "".join(traceback.format_stack(frame)) if frame else "  (thread gone)\n"
        log.error("request %s %s has run %.1f s, past timeout (%.0f s); stack of its "
                  "thread:\n%s", method, target.decode("latin-1"), age, self.config.timeout,
                  stack.rstrip())
        if not self.stopping:
            self._tell_master(b"retire stuck request")
            self._begin_stop()

    def _pause_accepting(self) -> None:
        if self.accepting:
            self.accepting = False
            self.force_accept_at = max(self.force_accept_at,
                                       time.monotonic() + ACCEPT_PAUSE_MAX_S)
            for listener in self.listeners:
                with contextlib.suppress(OSError):
                    self.ep.unregister(listener.sock.fileno())

    def _resume_accepting(self) -> None:
        if not self.accepting and not self.stopping:
            self.accepting = True
            for listener in self.listeners:
                # Not EPOLLEXCLUSIVE: every worker hears of a new connection and those with
                # a free thread race to accept it. With exclusive wake-ups, a saturated
                # worker woken for it would leave it waiting in the backlog unseen.
                self.ep.register(listener.sock.fileno(), _IN)

    def _begin_stop(self) -> None:
        """Graceful stop: take what is already in the backlog, stop listening, let every
        accepted request finish; idle keep-alive connections are closed now."""
        self.stopping = True
        self.ctx.stopping = True
        why = "recycling" if self.recycle and not self.stop_signal else "stopping"
        log.info("%s: draining %d connection(s)", why, len(self.conns))
        now = time.monotonic()
        for listener in self.listeners:
            base = self.bases[listener.sock.fileno()]
            for _ in range(10000):
                try:
                    sock, addr = listener.sock.accept()
                except OSError:
                    break
                self._adopt(sock, addr, base, now)
            with contextlib.suppress(OSError):
                self.ep.unregister(listener.sock.fileno())
            listener.sock.close()
        self.accepting = False
        # Idle keep-alive connections stay: closing one as its client sends the next
        # request would lose that request. Their next request is answered with
        # "Connection: close"; an idle one is closed at its keepalive deadline.

    def _heartbeat(self) -> None:
        beat: dict[str, object] = {"busy": self.busy, "served": self.info.served,
                                   "conns": len(self.conns), "inflight": len(self.inflight)}
        if self.ctx.metrics is not None:
            beat["m"] = self.ctx.metrics.snapshot()
        self._tell_master(b"hb " + json.dumps(beat, separators=(",", ":")).encode())

    def _on_master(self) -> bool:
        try:
            data = self.channel.recv(64)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return bool(data)

    def _tell_master(self, message: bytes) -> None:
        with contextlib.suppress(OSError):  # a full channel (master busy) drops a heartbeat
            self.channel.send(message, socket.MSG_DONTWAIT)

    # -- called from pool threads ----------------------------------------------------------
    def _pool_thread(self) -> None:
        get = self.jobs.get
        while True:
            conn = get()
            if conn is None:
                return
            try:
                conn.serve()
            except BaseException:
                log.exception("unexpected error serving %r", conn)
                conn.close()
            finally:
                conn = None  # do not keep the last connection alive while waiting
                self.last_done = time.monotonic()
                with self.lock:
                    self.busy -= 1
                    wake = not self.accepting and not self.stopping
                if wake:
                    self._wake()

    def _park(self, conn: Connection) -> None:
        """Give `conn` back to the loop (from any thread): re-arm it in the epoll."""
        try:
            self.ep.modify(conn.fd, _ARMED_OUT if conn.state == WRITING else _ARMED)
        except OSError:
            conn.close()

    def _discard(self, conn: Connection) -> None:
        self.conns.pop(conn.fd, None)
        with contextlib.suppress(OSError, ValueError):
            self.ep.unregister(conn.fd)

    def _begin_request(self, req: Request) -> None:
        self.inflight[threading.get_ident()] = (time.monotonic(), req.method, req.target)
        served = next(self._served)
        self.info.served = served
        if self.max_requests and served >= self.max_requests and not self.recycle:
            self.recycle = True
            log.info("served %d requests; recycling", served)
            self._wake()

    def _end_request(self) -> None:
        self.inflight.pop(threading.get_ident(), None)

    def _progress(self) -> None:
        entry = self.inflight.get(threading.get_ident())
        if entry is not None:
            self.inflight[threading.get_ident()] = (time.monotonic(), entry[1], entry[2])

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self.wake_w, b"!")


def worker_main(
    number: int,
    config: Config,
    listeners: list[Listener],
    channel: socket.socket,
    close_fds: list[int],
    app: WSGIApp | None,
) -> None:
    """Entry point in the forked child (multiprocessing target)."""
    # The master forked us with its signals blocked: give them a worker's meaning before
    # letting any through (TERM/INT/QUIT end a worker that is still booting; the rest
    # are the master's business), then unblock. Worker.run() installs the real handlers.
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTTIN,
                signal.SIGTTOU, signal.SIGWINCH):
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    for fd in close_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    code = 1
    try:
        code = Worker(number, config, listeners, channel, app).run()
    except Exception:
        log.exception("worker crashed")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    sys.exit(code)
