"""The master process: bind, fork workers, supervise, stop.

Signal handlers only enqueue the signal (and the wake-up fd interrupts the wait); the main
loop dispatches each one to `handle_<name>()`. Everything else happens in that one loop:

    loop: wait for (a signal | a worker's channel message | a worker's exit) or 1 s
          handle queued signals
          reap exited workers: log the cause, respawn (backing off when they die young)
          kill workers whose heartbeat stopped for `timeout`
          start workers until there are `workers` of them

Workers are forked with multiprocessing's fork context; each gets one end of a SEQPACKET
socketpair on which it says "ready" and then sends a heartbeat every second. A worker
that exits with APP_LOAD_ERROR before any worker was ever ready stops the server: the app
cannot be imported, and respawning it forever would only hide that.

Only the master's main thread runs this code. It never imports the HTTP layer.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import selectors
import signal
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess

from prefork import log as logsetup
from prefork.config import Config
from prefork.sockets import Listener, bind_all
from prefork.worker import APP_LOAD_ERROR, set_title, worker_main
from prefork.wsgi import WSGIApp

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_APP_LOAD = APP_LOAD_ERROR
EXIT_BIND = 3
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
YOUNG_S = 5.0  # a worker that dies younger than this counts towards back-off
SIGNALS = ("TERM", "INT", "QUIT", "HUP", "TTIN", "TTOU", "USR1", "USR2", "WINCH", "CHLD")
SIGNAL_NAMES = {getattr(signal, "SIG" + name): name for name in SIGNALS}


@dataclass(slots=True, eq=False)
class WorkerHandle:
    number: int
    pid: int
    process: BaseProcess
    channel: socket.socket  # the master's end
    started: float
    last_seen: float
    ready: bool = False
    stopping_since: float | None = None
    busy: int = 0
    served: int = 0


@dataclass
class Master:
    config: Config
    app: WSGIApp | None = None
    listeners: list[Listener] = field(default_factory=list)
    workers: dict[int, WorkerHandle] = field(default_factory=dict)  # by worker number
    signals: list[int] = field(default_factory=list)
    stopping: str | None = None  # None, "graceful" or "quick"
    stop_deadline: float = 0.0
    exit_code: int = EXIT_OK
    ever_ready: bool = False
    failures: int = 0  # consecutive young deaths
    next_spawn: float = 0.0
    target: int = 0
    wake_r: socket.socket = field(init=False)
    wake_w: socket.socket = field(init=False)
    sel: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    ctx: multiprocessing.context.ForkContext = field(
        default_factory=lambda: multiprocessing.get_context("fork"))

    # -- start -----------------------------------------------------------------------------
    def run(self) -> int:
        set_title("prefork: master")
        self.target = self.config.workers
        self.listeners = bind_all(self.config.bind, self.config.backlog,
                                  self.config.unix_socket_mode)
        for listener in self.listeners:
            log.info("listening at %s", listener.url())
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        for name in SIGNALS:
            signal.signal(getattr(signal, "SIG" + name), self._enqueue)
        self.sel.register(self.wake_r, selectors.EVENT_READ, None)
        log.info("prefork master started (pid %d): %d worker(s) x %d thread(s), app %s",
                 os.getpid(), self.target, self.config.threads,
                 self.config.app or "prefork.demo:app (built-in demo)")
        try:
            self._loop()
        finally:
            self._cleanup()
        log.info("master exiting with status %d", self.exit_code)
        return self.exit_code

    def _enqueue(self, signum: int, frame: object) -> None:
        # Runs between bytecodes of the main thread: only append; the loop does the work.
        if len(self.signals) < 32:
            self.signals.append(signum)

    # -- the loop --------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            self._spawn_missing()
            for key, _ in self.sel.select(self._wait_s()):
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        self.wake_r.recv(4096)
                else:
                    self._on_event(key.data, key.fileobj)
            while self.signals:
                signum = self.signals.pop(0)
                name = SIGNAL_NAMES.get(signum, str(signum))
                handler = getattr(self, "handle_" + name.lower(), None)
                if handler is not None:
                    handler()
            self._reap()
            self._watchdog()
            if self.stopping and not self.workers:
                return

    def _wait_s(self) -> float:
        wait = 1.0
        if len(self.workers) < self.target and not self.stopping:
            wait = max(0.0, min(wait, self.next_spawn - time.monotonic()))
        return wait

    def _on_event(self, worker: WorkerHandle, fileobj: object) -> None:
        if fileobj is worker.channel:
            try:
                msg = worker.channel.recv(256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                msg = b""
            if not msg:  # the worker closed its end: it is exiting; the sentinel will tell
                with contextlib.suppress(KeyError, ValueError):
                    self.sel.unregister(worker.channel)
                return
            worker.last_seen = time.monotonic()
            if msg == b"ready":
                worker.ready = True
                self.ever_ready = True
                log.info("worker %d (pid %d) is ready", worker.number, worker.pid)
            elif msg.startswith(b"hb "):
                parts = msg.split()
                with contextlib.suppress(ValueError, IndexError):
                    worker.busy, worker.served = int(parts[1]), int(parts[2])
        # a sentinel event: _reap() will collect it

    # -- workers ---------------------------------------------------------------------------
    def _spawn_missing(self) -> None:
        if self.stopping:
            return
        while len(self.workers) < self.target:
            if time.monotonic() < self.next_spawn:
                return
            number = next(n for n in range(1, len(self.workers) + 2) if n not in self.workers)
            self._spawn(number)

    def _spawn(self, number: int) -> None:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # The child must not hold the master's end of any channel, or a dead master would
        # not be noticed; nor the master's wake-up pair.
        close_fds = [w.channel.fileno() for w in self.workers.values()]
        close_fds += [parent_end.fileno(), self.wake_r.fileno(), self.wake_w.fileno()]
        if isinstance(self.sel, selectors.EpollSelector):
            close_fds.append(self.sel.fileno())
        process = self.ctx.Process(
            target=worker_main,
            args=(number, self.config, self.listeners, child_end, close_fds, self.app),
            name=f"prefork-worker-{number}",
        )
        process.start()
        child_end.close()
        parent_end.setblocking(False)
        now = time.monotonic()
        handle = WorkerHandle(number, process.pid or 0, process, parent_end, started=now,
                              last_seen=now)
        self.workers[number] = handle
        self.sel.register(parent_end, selectors.EVENT_READ, handle)
        self.sel.register(process.sentinel, selectors.EVENT_READ, handle)
        log.debug("spawned worker %d (pid %d)", number, handle.pid)

    def _reap(self) -> None:
        for handle in list(self.workers.values()):
            if handle.process.is_alive():
                continue
            handle.process.join(0)
            code = handle.process.exitcode
            del self.workers[handle.number]
            for obj in (handle.channel, handle.process.sentinel):
                with contextlib.suppress(KeyError, ValueError):
                    self.sel.unregister(obj)
            handle.channel.close()
            handle.process.close()
            self._after_exit(handle, code)

    def _after_exit(self, handle: WorkerHandle, code: int | None) -> None:
        age = time.monotonic() - handle.started
        if code is not None and code < 0:
            sig = -code
            cause = f"killed by signal {signal.Signals(sig).name}"
            if sig == signal.SIGKILL and handle.stopping_since is None:
                cause += " (by the kernel's OOM killer, or someone else)"
        else:
            cause = f"exited with status {code}"
        if self.stopping or handle.stopping_since is not None:
            log.info("worker %d (pid %d) %s", handle.number, handle.pid, cause)
            return
        if code == APP_LOAD_ERROR:
            if not self.ever_ready:
                log.error("worker %d could not load the app; stopping (see the error above)",
                          handle.number)
                self.exit_code = EXIT_APP_LOAD
                self._stop("quick")
                return
            cause = "could not load the app"
        if code == 0:  # recycled (max_requests) or asked to stop: replace at once
            log.info("worker %d (pid %d) exited after %.1f s; replacing it",
                     handle.number, handle.pid, age)
            return
        if age < YOUNG_S:
            self.failures += 1
            delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (self.failures - 1))
            self.next_spawn = time.monotonic() + delay
            log.error("worker %d (pid %d) %s after %.1f s; restarting in %.1f s",
                      handle.number, handle.pid, cause, age, delay)
        else:
            self.failures = 0
            log.error("worker %d (pid %d) %s after %.1f s; restarting it",
                      handle.number, handle.pid, cause, age)

    def _watchdog(self) -> None:
        now = time.monotonic()
        for handle in self.workers.values():
            if handle.stopping_since is not None:
                continue
            limit = self.config.timeout
            if not handle.ready:
                limit = max(limit, 30.0)  # importing a big app may take a while
            if now - handle.last_seen > limit:
                log.error("worker %d (pid %d) sent no heartbeat for %.0f s; killing it",
                          handle.number, handle.pid, now - handle.last_seen)
                self._kill(handle, signal.SIGKILL)
                handle.stopping_since = now
        if self.stopping and now >= self.stop_deadline:
            for handle in self.workers.values():
                if handle.process.is_alive():
                    log.warning("worker %d (pid %d) did not stop in time; killing it",
                                handle.number, handle.pid)
                    self._kill(handle, signal.SIGKILL)

    @staticmethod
    def _kill(handle: WorkerHandle, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(handle.pid, sig)

    # -- stopping --------------------------------------------------------------------------
    def _stop(self, how: str) -> None:
        if self.stopping == "quick" or self.stopping == how:
            return
        self.stopping = how
        now = time.monotonic()
        grace = self.config.graceful_timeout if how == "graceful" else 1.0
        self.stop_deadline = now + grace
        sig = signal.SIGTERM if how == "graceful" else signal.SIGQUIT
        for handle in self.workers.values():
            handle.stopping_since = now
            self._kill(handle, sig)
        # Our copy of the listeners must go too, so that once the workers have drained
        # the backlog new connections are refused instead of queued forever.
        for listener in self.listeners:
            with contextlib.suppress(OSError):
                listener.sock.close()

    def handle_term(self) -> None:
        log.info("SIGTERM: graceful stop (in-flight requests get %.0f s)",
                 self.config.graceful_timeout)
        self._stop("graceful")

    def handle_int(self) -> None:
        log.info("SIGINT: quick stop")
        self._stop("quick")

    def handle_quit(self) -> None:
        log.info("SIGQUIT: quick stop")
        self._stop("quick")

    def handle_ttin(self) -> None:
        self.target += 1
        log.info("SIGTTIN: workers %d -> %d", self.target - 1, self.target)

    def handle_ttou(self) -> None:
        if self.target <= 1:
            return
        self.target -= 1
        log.info("SIGTTOU: workers %d -> %d", self.target + 1, self.target)
        handle = max(self.workers.values(), key=lambda h: h.number, default=None)
        if handle is not None and handle.stopping_since is None:
            handle.stopping_since = time.monotonic()
            self._kill(handle, signal.SIGTERM)

    def _cleanup(self) -> None:
        for handle in self.workers.values():
            self._kill(handle, signal.SIGKILL)
        for handle in self.workers.values():
            handle.process.join(5)
        for listener in self.listeners:
            with contextlib.suppress(OSError):
                listener.close()


def serve(config: Config) -> int:
    """Run a master until it stops; returns the process exit status."""
    logsetup.setup(config.loglevel)
    app = None
    if config.preload_app:
        from prefork.errors import AppLoadError
        from prefork.loader import load_app

        try:
            app = load_app(config.app, config.pythonpath)
        except AppLoadError as exc:
            log.error("%s", exc)
            return EXIT_APP_LOAD
    from prefork.sockets import BindError

    try:
        return Master(config, app).run()
    except BindError as exc:
        log.error("%s", exc)
        return EXIT_BIND
