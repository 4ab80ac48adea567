"""A worker process: after-fork set-up, the pool threads, the main thread, a graceful drain.

Pool threads are leaders and followers: each waits on the worker's one epoll (the listening
sockets and every connection waiting for bytes) and serves whatever it is woken for, inline:
accept and answer a new connection, read a head that is arriving (an incomplete head is
re-armed and the thread goes back to waiting: a slow client holds no thread), run the app,
write the response, park the connection for its next request (edge-triggered: registered
once, never re-armed; see connection.py). There is no
hand-off between threads on the request path. A thread waiting on the epoll is a free
thread, so only a worker with a free thread takes new connections. Only two threads wait
on the epoll at a time; the other free threads rest and are called in one by one when
every waiting thread has left to serve (few threads contending for the GIL is cheaper).

The main thread keeps time and talks to the master: signals (through the wake-up fd),
deadlines (a sweep of the connection table twice a second), the heartbeat, stuck requests,
the drain. It claims a connection before expiring it; a pool thread claims one before
serving it, and releases the claim when it parks it (worker.lock guards claims). An event
for a connection already claimed marks it woken, and its owner serves it again.

The master talks to a worker through signals (TERM: drain and exit; INT/QUIT: exit now)
and a SEQPACKET channel: the worker reports "ready" once, then a heartbeat every second.
When the master's end closes (the master died, even by SIGKILL) the worker exits at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from prefork import engine_choice, messages, process, worker_signals
from prefork import log as logsetup
from prefork.accepting import Accepting
from prefork.accesslog import AccessLog, is_off
from prefork.config import Config
from prefork.connection import Connection
from prefork.connstate import (
    CLOSE,
    CLOSED,
    HANGUP,
    PARKED,
    WRITE,
    Next,
    ServerContext,
    Watch,
)
from prefork.errors import AppLoadError
from prefork.hooks import Hooks, ServerView, WorkerView
from prefork.http.parser import ParserLimits
from prefork.http.request import Request
from prefork.loader import WSGIApp, load_app
from prefork.messages import ExitStatus, Heartbeat, Ready, Reload, Retire, Serving, Stop
from prefork.metrics import WorkerMetrics
from prefork.output import POLLIN, wait_for
from prefork.proxy import Trust
from prefork.reloader import FileWatch
from prefork.seam import native_calls
from prefork.sockets import Listener
from prefork.static import StaticFiles
from prefork.watchdog import RequestWatch
from prefork.wsgi import Exchange, base_environ

log = logging.getLogger(__name__)

HEARTBEAT_S = 1.0
SWEEP_S = 0.5  # how often deadlines are checked: their resolution
DRAIN_SWEEP_S = 0.05  # ...while draining: idle connections closed, the exit noticed
# How many pool threads wait on the epoll at once; the others rest on a condition and one
# is called in only when no thread is left waiting (every other one is running a request).
# Each thread woken costs GIL hand-offs: with all 8 threads of a worker waiting, a hello
# app served 33-36k req/s on 2 cores; with 2 waiting, 51-57k (and the same 91% of the
# ceiling for an app that sleeps 2 ms, where all 8 threads are called in).
WATCHERS = 2
_IN = select.EPOLLIN


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


class Worker(Accepting):
    def __init__(
        self,
        number: int,
        config: Config,
        listeners: list[Listener],
        channel: socket.socket,
        app: WSGIApp | None = None,
        hooks: Hooks | None = None,
        age: int = 0,
    ) -> None:
        self.number = number
        self.hooks = hooks or Hooks()
        self.view = WorkerView(number, os.getpid(), age, config)
        # worker_connections resolved (0: from the open-files limit); the compiled
        # accept reads it here too.
        self.config = dataclasses.replace(
            config, worker_connections=process.connections_per_worker(config))
        self.listeners = listeners
        self.channel = channel
        self.app = app
        self.master_pid = os.getppid()
        self.info = WorkerInfo(number, os.getpid())
        self.conns: dict[int, Connection] = {}
        self._served = itertools.count(1)
        self.lock = threading.Lock()
        self.accept_lock = threading.Lock()
        self.listen_lock = threading.Lock()  # accepting, and the listeners in the epoll
        self.failures = (0.0, 0)
        self.busy = 0
        # Pool threads waiting on the epoll, and those resting (free, but not waiting):
        self.watching = 0
        self.resting = 0
        self.rest = threading.Condition(self.lock)
        self.watchers = min(config.threads, WATCHERS)
        self.accepting = False
        self.stopping = False
        self.stop_signal: Stop | None = None  # set by the signal handlers
        self.recycle = False
        self.reopen_logs = False
        self.requests = RequestWatch(config.threads, config.timeout, config.request_timeout)
        self.max_requests = config.max_requests
        if config.max_requests and config.max_requests_jitter:
            import random

            self.max_requests += random.randint(0, config.max_requests_jitter)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.ep = select.epoll()  # connections and listeners: the pool threads wait here
        self.engine = engine_choice.choose(config.http_engine)
        self.engine.bind_worker(Worker)
        self.epoll = self.engine.epoll_io(self.ep)  # arms connections, by the engine's calls
        # What a connection does when woken: its own on_ready, or the engine's C twin.
        self.on_ready: Callable[[Connection], Next] = self.engine.on_ready
        # A pool thread's loop and its calls for each request: the worker's own methods,
        # or the engine's twins of them, made in C (engine.WorkerCalls).
        self.follow: Callable[[dict[int, Listener]], None] = self._follow
        self.serve: Callable[[Connection], None] = self._serve
        self.begin_request: Callable[[Request, Exchange], None] = self._begin_request
        self.end_request: Callable[[], None] = self.requests.end
        self.progress: Callable[[], None] = self.requests.progress
        if self.engine.worker_calls is not None:
            calls = self.engine.worker_calls(
                self.ep.fileno(), self.on_ready, self._arm, self._close,
                self.requests.inflight, self._served, self.info, self.max_requests,
                self._counted)
            self.serve, self.begin_request = calls.serve, calls.begin
            self.end_request, self.progress = calls.end, calls.progress
            self.follow = partial(calls.follow, self)
        self.main_ep = select.epoll()  # wake-ups (signals) and the master: the main thread

    # -- set-up ----------------------------------------------------------------------------
    def run(self) -> int:
        logsetup.set_role(f"worker {self.number}")
        set_title(f"prefork: worker {self.number}")
        worker_signals.install(self, self.wake_w)
        self.hooks.call("post_fork", ServerView(self.master_pid, self.config,
                                                self.config.workers), self.view)
        if self.app is None:
            try:
                self.app = load_app(self.config.app, self.config.pythonpath)
            except AppLoadError as exc:
                log.error("%s", exc)
                return ExitStatus.APP_LOAD
        self.hooks.call("post_worker_init", self.view)
        self.watch = FileWatch(self.config.reload_extra_files) if self.config.reload else None
        self.ctx = self.context()
        multiprocess = self.config.workers > 1
        # Keyed by the listener itself, not its fd: a drain closes the socket (its fd
        # becomes -1) while a pool thread may still be adopting what it accepted.
        self.bases: dict[int, dict[str, Any]] = {}
        for listener in self.listeners:
            name, port = listener.server_name_port()
            base = base_environ(name, port, self.config.root_path, multiprocess)
            base["prefork.worker"] = self.info
            self.bases[id(listener)] = self.ctx.engine.environ_base(base)
        self.main_ep.register(self.wake_r, _IN)
        self.main_ep.register(self.channel.fileno(), _IN)
        self._resume_accepting()
        listeners = {lst.sock.fileno(): lst for lst in self.listeners}
        for i in range(self.config.threads):
            threading.Thread(target=self.follow, args=(listeners,), name=f"pool-{i}",
                             daemon=True).start()
        self._tell_master(Ready())
        return self._loop()

    def context(self) -> ServerContext:
        """What every connection of this worker shares: settings and callbacks."""
        assert self.app is not None
        return ServerContext(
            app=self.app,
            keepalive_s=self.config.keepalive,
            header_timeout_s=self.config.header_timeout,
            body_timeout_s=self.config.body_timeout,
            send_timeout_s=self.config.send_timeout,
            max_keepalive_requests=self.config.max_keepalive_requests,
            request_timeout_s=self.config.request_timeout,
            lingering_time_s=self.config.lingering_time,
            lingering_timeout_s=self.config.lingering_timeout,
            lingering_bytes=self.config.lingering_bytes,
            engine=self.engine,
            parser_limits=ParserLimits(
                limit_request_line=self.config.limit_request_line,
                limit_request_fields=self.config.limit_request_fields,
                limit_request_field_size=self.config.limit_request_field_size,
                head_limit=self.config.head_limit_bytes,
                max_body=self.config.limit_request_body,
                framing_limit=self.config.limit_chunk_framing,
            ),
            begin_request=self.begin_request,
            end_request=self.end_request,
            progress=self.progress,
            access_log=access_log(self.config),
            worker_number=self.number,
            metrics=WorkerMetrics() if self.config.admin_bind else None,
            static=StaticFiles(self.config.static) if self.config.static else None,
            trust=Trust(self.config.forwarded_allow_ips, self.config.unix_socket_trusted,
                        self.config.forwarded_trusted_hops),
            proxy_mode=self.config.proxy_protocol,
            proxy_trust=Trust(self.config.proxy_allow_ips, self.config.unix_socket_trusted),
            pre_request=self.hooks.pre_request,
            post_request=self.hooks.post_request,
            hook_worker=self.view,
        )

    # -- the main thread -------------------------------------------------------------------
    def _loop(self) -> int:
        """The main thread: signals, the master, deadlines, heartbeat, the drain.

        Requests are not its business: pool threads wait on the worker's epoll themselves
        (leader/follower) and serve the connection they are woken for.
        """
        next_beat = next_sweep = time.monotonic()
        while True:
            if not self._wait_events(min(next_beat, next_sweep) - time.monotonic()):
                log.warning("master is gone; exiting")
                return ExitStatus.OK
            if self.stop_signal is Stop.QUICK:
                self.hooks.call("worker_int", self.view)
                return ExitStatus.OK
            self._on_flags()
            now = time.monotonic()
            if now >= next_sweep:
                next_sweep = now + (DRAIN_SWEEP_S if self.stopping else SWEEP_S)
                self._expire(now)
            if now >= next_beat:
                next_beat = now + HEARTBEAT_S
                if os.getppid() != self.master_pid:
                    log.warning("master is gone; exiting")
                    return ExitStatus.OK
                self._heartbeat()
                self._look_for_changes()
            if self.stopping:
                if self._drained():
                    self._heartbeat()  # its last counts: the master keeps them for /metrics
                    return ExitStatus.OK
            elif not self.accepting and len(self.conns) < self.config.worker_connections:
                self._resume_accepting()

    def _wait_events(self, timeout: float) -> bool:
        """Wait for a signal or the master, at most `timeout`; False if the master is gone."""
        for fd, _mask in self.main_ep.poll(max(0.0, timeout)):
            if fd == self.wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wake_r, 4096)
            elif fd == self.channel.fileno() and not self._on_master():
                return False
        return True

    def _on_flags(self) -> None:
        """What signal handlers and pool threads asked for: reopen logs, stop, recycle."""
        if self.reopen_logs:
            self.reopen_logs = False
            logsetup.reopen()
            if self.ctx.access_log is not None:
                self.ctx.access_log.reopen()
        if (self.stop_signal or self.recycle) and not self.stopping:
            if self.recycle and not self.stop_signal:
                self._tell_master(Retire(f"served {self.info.served} requests"))
            self._begin_stop()

    def _look_for_changes(self) -> None:
        """--reload: a file of the app changed; the master restarts every worker."""
        if self.watch is not None and not self.stopping:
            changed = self.watch.changed()
            if changed:
                log.info("reload: %s changed; restarting the workers", changed)
                self._tell_master(Reload())

    def _drained(self) -> bool:
        """Stopping: every connection is closed but those of requests given up, and those
        lingering whose client has every byte we sent and our FIN (closing them now
        cannot reset anything it has not read)."""
        stuck = self.requests.abandoned()
        if self.busy > stuck:
            return False
        left = sum(1 for conn in list(self.conns.values()) if not conn.quiet())
        if left <= stuck:
            if stuck:
                log.warning("exiting with %d stuck request(s) abandoned", stuck)
            return True
        return False

    def _follow(self, listeners: dict[int, Listener]) -> None:
        """A pool thread: wait on the worker's epoll, serve what it is woken for, repeat.
        A thread waiting here is a free thread, so only free threads take connections.
        At most `WATCHERS` threads wait at once; a thread that would be one too many rests
        until the last waiting thread leaves to serve (then one resting thread is called).
        The lock is taken twice per wake-up: to leave the watch and claim what woke us,
        and to come back. (The native engine's twin: WorkerCalls.follow.)"""
        ep = self.ep
        conns = self.conns
        lock = self.lock
        rest = self.rest
        serve = self.serve
        conn: Connection | None
        with lock:
            self._rest_then_watch()
        while True:
            try:
                events = ep.poll(-1, 1)
            except OSError:
                return
            fd, mask = events[0] if events else (-1, 0)
            with lock:
                self.watching -= 1
                if not self.watching and self.resting:
                    rest.notify()
                self.busy += 1
                conn = conns.get(fd)
                if conn is not None:
                    if conn.state is CLOSED:
                        conn = None
                    else:
                        conn.hangup = conn.hangup or bool(mask & HANGUP)
                        if conn.claimed:
                            conn.woken = True  # its owner serves it again before letting go
                            conn = None
                        else:
                            conn.claimed = True
            try:
                if conn is not None:
                    serve(conn)
                elif fd in listeners:
                    self._accept(listeners[fd])
            except BaseException as exc:
                self._pool_error(conn, exc)
            conn = None  # do not keep the last connection alive while waiting
            with lock:
                self.busy -= 1
                self._rest_then_watch()

    @native_calls
    def _pool_error(self, conn: Connection | None, exc: BaseException) -> None:
        """What a pool thread's serve or accept raised: logged, its connection closed."""
        log.error("unexpected error in a pool thread", exc_info=exc)
        if conn is not None:
            self._close(conn)

    @native_calls
    def _rest_then_watch(self) -> None:
        """With the lock held: rest while enough threads wait on the epoll, then join them."""
        while self.watching >= self.watchers:
            self.resting += 1
            self.rest.wait()
            self.resting -= 1
        self.watching += 1

    def _claim(self, conn: Connection, now: float) -> bool:
        """Take ownership of a connection the sweep found due (still due: only its owner
        moves its deadline)."""
        with self.lock:
            if conn.claimed or conn.state is CLOSED or not conn.due(now):
                return False
            conn.claimed = True
            return True

    def _serve(self, conn: Connection) -> None:
        """Serve a connection the epoll woke us for (the caller has claimed it): it says
        what comes next, and we park it or close it (or serve it again)."""
        while self._arm(conn, self.on_ready(conn)):
            pass

    def _expire(self, now: float) -> None:
        """Close connections parked past their deadline (idle keep-alive, slow head,
        lingering, a client not reading), and watch the running requests.
        A sweep of the table, twice a second: no per-request timer state, and nothing
        keeps a closed connection alive."""
        self._watch_requests(now)
        for conn in list(self.conns.values()):
            if conn.due(now) and self._claim(conn, now) and self._arm(conn, conn.on_deadline(now)):
                self._kick(conn)
        if self.stopping:
            self._close_idle(now)

    def _close_idle(self, now: float) -> None:
        """Draining: an idle connection is closed once cold (Connection.cold), not at its
        keep-alive deadline, after one last look: bytes that came are served by a pool
        thread (with "Connection: close"); else it lingers closed (Connection.stop_idle)."""
        for conn in list(self.conns.values()):
            if conn.claimed or not conn.cold(now):
                continue
            with self.lock:
                if conn.claimed or conn.state is not PARKED:
                    continue
                conn.claimed = True
            if wait_for(conn.fd, POLLIN, 0):
                self._kick(conn)  # (a hang-up too: its reader finds the EOF and closes)
            elif self._arm(conn, conn.stop_idle()):
                self._kick(conn)

    def _watch_requests(self, now: float) -> None:
        """The request watchdogs (watchdog.py): a worker that gave a request up, or whose
        every thread is stuck, retires (a replacement starts now; it is killed after
        graceful_timeout if its requests still do not finish)."""
        answered = self.requests.answered_504
        verdict = self.requests.check(now)
        if self.ctx.metrics is not None:
            for _ in range(self.requests.answered_504 - answered):
                self.ctx.metrics.reject(504)
        if verdict is not None:
            self.hooks.call("worker_abort", self.view)
            if not self.stopping:
                self._tell_master(Retire(verdict))
                self._begin_stop()

    def _begin_stop(self) -> None:
        """Graceful stop: take what is already in the backlog (on a stop), stop listening,
        let every accepted request finish; cold idle keep-alive connections are closed now."""
        # Under the accept lock: a pool thread is either done adopting what it accepted,
        # or will find `stopping` set and leave the backlog to us.
        with self.accept_lock:
            with self.lock:
                self.stopping = True
            self.ctx.stopping = True
            why = "recycling" if self.recycle and not self.stop_signal else "stopping"
            log.info("%s: draining %d connection(s)", why, len(self.conns))
            # On a stop, what waits in the backlog is ours to serve (the listeners close
            # everywhere). A worker retiring alone (recycling, stuck) leaves it to the
            # others: it would be served past max_requests.
            self._stop_listening(take_backlog=self.stop_signal is not None)
        # Cold idle keep-alive connections are closed now (lingering: see _close_idle);
        # those serving a request are answered with "Connection: close", then closed.
        self._close_idle(time.monotonic())

    def _heartbeat(self) -> None:
        metrics = self.ctx.metrics
        self._tell_master(Heartbeat(self.busy, self.info.served, len(self.conns),
                                    len(self.requests.inflight),
                                    metrics.snapshot() if metrics is not None else None))

    def _on_master(self) -> bool:
        """The master wrote to us (it never does) or closed its end: False once gone."""
        return messages.receive(self.channel) is not messages.CLOSED

    def _tell_master(self, message: messages.Message) -> None:
        messages.send(self.channel, message)

    # -- called from pool threads ----------------------------------------------------------
    def _arm(self, conn: Connection, then: Next) -> bool:
        """What a claimed connection asked for: park it (the epoll watches it for what it
        waits for; then our claim is released), or close it. True: it is still ours, to
        serve again (its last read may have left bytes no edge will announce, or an event
        came for it while we held it)."""
        if then is CLOSE:
            self._close(conn)
            return False
        if then is WRITE:
            watch = Watch.READ_WRITE
        elif not conn.drained:
            return True
        else:
            watch = conn.watch or Watch.READ
        if watch is not conn.watch:  # registered or widened while ours: no race to re-arm
            try:
                if conn.watch:
                    self.epoll.modify(conn.fd, watch)
                else:
                    self.epoll.register(conn.fd, watch)
            except OSError:
                self._close(conn)
                return False
            conn.watch = watch
        with self.lock:
            if conn.woken:
                conn.woken = False
                return True
            conn.claimed = False
        return False

    def _kick(self, conn: Connection) -> None:
        """Let go of one _arm says to serve again, for a pool thread (it is writable)."""
        with self.lock:
            conn.woken = conn.claimed = False
            conn.watch = Watch.READ_WRITE
        with contextlib.suppress(OSError):
            self.epoll.modify(conn.fd, Watch.READ_WRITE)

    def _close(self, conn: Connection) -> None:
        """Forget a connection, then close it (in that order: its descriptor's number may
        be reused by the next accept). Closing its socket, never duplicated, takes it out
        of the epoll: no epoll call needed."""
        self.conns.pop(conn.fd, None)
        self.engine.close_connection(conn)

    def _begin_request(self, req: Request, exchange: Exchange) -> None:
        """A pool thread begins a request: the watchdogs' clock starts; it is counted."""
        self.requests.begin(req, exchange)
        served = next(self._served)
        self.info.served = served
        if served == 1 or (self.max_requests and served >= self.max_requests):
            self._counted(served)

    def _counted(self, served: int) -> None:
        """The first request, or max_requests reached (the end of _begin_request)."""
        if served == 1:
            self._tell_master(Serving())  # a crash from now on is no boot loop
        if self.max_requests and served >= self.max_requests and not self.recycle:
            # Done by the counting thread, not the main one (which may wait long for the
            # GIL): no response keeps its connection now and no connection is accepted.
            self.recycle = True
            self.ctx.stopping = True
            self._pause_accepting()
            log.info("served %d requests; recycling", served)
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self.wake_w, b"!")


def access_log(config: Config) -> AccessLog | None:
    """The access log: to access_log's target, and to 'gunicorn.access' if a logging
    configuration gave that logger handlers; None when neither (nothing timed for it)."""
    logger = logsetup.access_logger()
    if is_off(config.access_log) and logger is None:
        return None
    return AccessLog(config.access_log, config.access_log_format, logger)


def worker_main(
    number: int,
    config: Config,
    listeners: list[Listener],
    channel: socket.socket,
    close_fds: list[int],
    app: WSGIApp | None,
    hooks: Hooks | None = None,
    age: int = 0,
) -> None:
    """Entry point in the forked child (multiprocessing target); `age`: the master's
    count of workers spawned (gunicorn's worker.age)."""
    worker_signals.booting()  # Worker.run() installs the handlers
    for fd in close_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    code = 1
    worker = None
    try:
        worker = Worker(number, config, listeners, channel, app, hooks, age)
        code = worker.run()
    except Exception:
        log.exception("worker crashed")
    finally:
        if worker is not None:
            worker.hooks.call("worker_exit", ServerView(worker.master_pid, config,
                                                         config.workers), worker.view)
        sys.stdout.flush()
        sys.stderr.flush()
    sys.exit(code)
