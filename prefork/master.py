"""The master process: bind, fork workers, supervise, reload, upgrade, stop.

Signal handlers only enqueue the signal (and the wake-up fd interrupts the wait); the main
loop dispatches each one to `handle_<name>()`. Everything else happens in that one loop:

    loop: wait for (a signal | a worker's message | a worker's exit), at most 1 s
          handle queued signals
          reap exited workers: log the cause, respawn (backing off when they die young)
          watchdogs: heartbeat silence, memory, lifetime, overdue retirees
          start workers until the current generation has `workers` of them

Workers belong to a *generation*. HUP re-reads the config and starts a new generation; only
when all of it is ready are the old workers told to drain (SIGTERM), so a reload never
leaves a moment without ready workers. If a new worker dies before it is ready, the reload
is abandoned and the old generation keeps serving.

A worker is *retired* (it stops accepting and drains, and a replacement starts at once)
when it asks to be (a stuck request, max_requests) or the master decides (memory,
lifetime). A retiree still running graceful_timeout later is killed.

Only the master's main thread runs this code. It never imports the HTTP layer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import multiprocessing.popen_fork
import os
import random
import selectors
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prefork import (
    __version__,
    admin,
    exits,
    messages,
    metrics,
    process,
    procstats,
    systemd,
    upgrade,
)
from prefork import log as logsetup
from prefork.config import Config
from prefork.errors import ConfigError
from prefork.handle import WorkerHandle
from prefork.hooks import Hooks, ServerView, WorkerView
from prefork.loader import WSGIApp
from prefork.messages import ExitStatus, Heartbeat, Ready, Reload, Retire, Serving, Stop
from prefork.sockets import Listener, bind_all, set_defer_accept
from prefork.worker import set_title, worker_main

log = logging.getLogger(__name__)

YOUNG_S = 5.0  # a ready worker that never served and dies younger counts towards back-off
BOOT_TIMEOUT_S = 30.0  # a worker gets at least this long to import the app
SIGNALS = ("TERM", "INT", "QUIT", "HUP", "TTIN", "TTOU", "USR1", "USR2", "WINCH", "CHLD")
SIGNAL_NAMES = {getattr(signal, "SIG" + name): name for name in SIGNALS}

@dataclass
class Master:
    config: Config
    app: WSGIApp | None = None
    reload_config: Callable[[], Config] | None = None
    argv: list[str] = field(default_factory=list)  # the command line, for SIGUSR2
    listeners: list[Listener] = field(default_factory=list)
    workers: dict[int, WorkerHandle] = field(default_factory=dict)  # by worker number
    generation: int = 1
    reload_from: Config | None = None  # the config a reload in progress replaces
    signals: list[int] = field(default_factory=list)
    stopping: Stop | None = None
    stop_deadline: float = 0.0
    drain_at: float | None = None  # shutdown_delay: when the graceful drain begins
    exit_code: ExitStatus = ExitStatus.OK
    ever_ready: bool = False
    announced_ready: bool = False  # the first full set of workers has been reported
    failures: int = 0  # consecutive deaths of workers that never served: a boot loop
    next_spawn: float = 0.0
    crashes: exits.CrashReport = field(default_factory=lambda: exits.CrashReport())
    target: int = 0
    next_memory_check: float = 0.0
    upgrading: upgrade.Upgrade = field(init=False)  # a new master started by USR2
    upgrade_from: int = 0  # the old master's pid, when this master replaces one
    spawned: int = 0  # workers spawned so far
    pidfile: upgrade.Pidfile = field(init=False)
    hooks: Hooks = field(default_factory=Hooks)
    notifier: systemd.Notifier = field(init=False)
    admin_listener: admin.AdminServer | None = None
    gone_metrics: list[metrics.Snapshot] = field(default_factory=list)  # of exited workers
    restarts: dict[str, int] = field(default_factory=dict)  # worker ends, by cause
    last_exit: dict[int, str] = field(default_factory=dict)  # worker number -> cause
    wake_r: socket.socket = field(init=False)
    wake_w: socket.socket = field(init=False)
    sel: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    ctx: multiprocessing.context.ForkContext = field(
        default_factory=lambda: multiprocessing.get_context("fork"))

    # -- start -----------------------------------------------------------------------------
    def run(self) -> int:
        set_title("prefork: master")
        self.target = self.config.workers
        inherited = upgrade.take_inherited(os.environ)
        fds, self.upgrade_from = inherited.fds, inherited.old_pid
        self.pidfile = upgrade.Pidfile(self.config.pidfile)
        self.upgrading = upgrade.Upgrade(self.pidfile)
        activated = systemd.listen_fds(os.environ)
        self.notifier = systemd.Notifier(os.environ)
        if activated and not fds:  # systemd socket activation: its sockets, not `bind`
            self.listeners = bind_all(tuple(f"fd://{fd}" for fd in activated),
                                      self.config.backlog, self.config.unix_socket_mode,
                                      inherited=activated)
        else:
            self.listeners = bind_all(self.config.bind, self.config.backlog,
                                      self.config.unix_socket_mode, inherited=fds,
                                      unix_owner=self.config.unix_socket_owner,
                                      unix_group=self.config.unix_socket_group)
        set_defer_accept(self.listeners, self.config.defer_accept)
        for listener in self.listeners:
            log.info("listening at %s", listener.url())
        process.drop_privileges(self.config)
        if "*" in self.config.forwarded_allow_ips:
            log.warning("forwarded_allow_ips = *: any client can set its own address and "
                        "scheme with X-Forwarded-* headers; list your proxies instead")
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        for name in SIGNALS:
            signal.signal(getattr(signal, "SIG" + name), self._enqueue)
        self.sel.register(self.wake_r, selectors.EVENT_READ, None)
        if self.config.admin_bind:
            self.admin_listener = admin.AdminServer(self.config.admin_bind, self.sel,
                                                    self.admin_state, inherited.admin_fd)
        self.pidfile.write()
        self.hooks.call("when_ready", self.view())  # as gunicorn: listening, no worker yet
        log.info("prefork master started (pid %d): %d worker(s) x %d thread(s), app %s",
                 os.getpid(), self.target, self.config.threads,
                 self.config.app or "prefork.demo:app (built-in demo)")
        try:
            self._loop()
        finally:
            self._cleanup()
            self.hooks.call("on_exit", self.view())
        log.info("master exiting with status %d", self.exit_code)
        return self.exit_code

    def view(self) -> ServerView:
        """What a server hook is given as `server`."""
        return ServerView(os.getpid(), self.config, self.target, [x.sock for x in self.listeners])

    def _enqueue(self, signum: int, frame: object) -> None:
        # Runs between bytecodes of the main thread: only append; the loop does the work.
        if len(self.signals) < 32:
            self.signals.append(signum)

    # -- the loop --------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            self._spawn_missing()
            for key, mask in self.sel.select(self._wait_s()):
                data = key.data
                if data is None:
                    with contextlib.suppress(BlockingIOError):
                        self.wake_r.recv(4096)
                elif isinstance(data, WorkerHandle):
                    self._on_event(data, key.fileobj)
                elif self.admin_listener is not None:
                    self.admin_listener.on_event(data, mask)
            if self.admin_listener is not None:
                self.admin_listener.tick(time.monotonic())
            self.notifier.tick(time.monotonic())
            while self.signals:
                signum = self.signals.pop(0)
                name = SIGNAL_NAMES.get(signum, str(signum))
                handler = getattr(self, "handle_" + name.lower(), None)
                if handler is not None:
                    handler()
            self._reap()
            self._watchdog()
            self.upgrading.check()
            if self.drain_at is not None and time.monotonic() >= self.drain_at:
                self.drain_at = None
                self._stop(Stop.GRACEFUL)
            if self.stopping and not self.workers:
                return

    def _wait_s(self) -> float:
        now = time.monotonic()
        wait = 1.0
        if self._current_count() < self.target and not self.stopping:
            wait = min(wait, self.next_spawn - now)
        if self.config.max_worker_memory:  # memory samples exactly once a second
            wait = min(wait, self.next_memory_check - now)
        return max(0.0, wait)

    def _current(self) -> list[WorkerHandle]:
        """Workers of the current generation that are not retiring: the serving pool."""
        return [h for h in self.workers.values()
                if h.generation == self.generation and h.retiring_since is None]

    def _current_count(self) -> int:
        return len(self._current())

    def _on_event(self, worker: WorkerHandle, fileobj: object) -> None:
        if fileobj is not worker.channel:
            return  # the process sentinel: _reap() collects it
        msg = messages.receive(worker.channel)
        if isinstance(msg, messages.Closed):  # the worker closed its end: it is exiting
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(worker.channel)
        elif msg is not None:
            self._on_message(worker, msg)

    def _last_words(self, worker: WorkerHandle) -> None:
        """A dead worker's messages still queued: read before its death is judged (its
        "serving" may have been sent just before it crashed, in the same loop turn)."""
        for _ in range(64):  # bounded: the channel of a dead process only empties
            msg = messages.receive(worker.channel)
            if msg is None or msg is messages.CLOSED:
                return
            if isinstance(msg, Serving | Heartbeat):  # the rest asks a living worker's way
                self._on_message(worker, msg)

    def _on_message(self, worker: WorkerHandle, msg: messages.Message) -> None:
        worker.last_seen = time.monotonic()
        match msg:
            case Heartbeat():
                worker.beat = msg
            case Ready():
                self._on_ready(worker)
            case Serving():
                worker.serving = True
            case Reload() if self.config.reload:
                self.handle_hup()  # --reload: a worker saw a file of the app change
            case Retire(reason):
                self._retire(worker, reason, signal_it=False)

    def _on_ready(self, worker: WorkerHandle) -> None:
        worker.ready = True
        self.ever_ready = True
        log.info("worker %d (pid %d) is ready", worker.number, worker.pid)
        if self.reload_from is not None:
            current = self._current()
            if len(current) >= self.target and all(h.ready for h in current):
                old = [h for h in self.workers.values() if h.generation < self.generation]
                log.info("reload: %d new worker(s) ready; draining %d old one(s)",
                         len(current), len(old))
                for handle in old:
                    self._retire(handle, "reload")
                self.reload_from = None
                self.notifier.ready(f"reloaded: {len(current)} workers ready")
                self._retire_old_master()
        elif not self.announced_ready:
            current = self._current()
            if len(current) >= self.target and all(h.ready for h in current):
                self.announced_ready = True
                self.notifier.ready(f"{len(current)} workers ready")
                self._retire_old_master()

    # -- workers ---------------------------------------------------------------------------
    def _spawn_missing(self) -> None:
        if self.stopping:
            return
        while self._current_count() < self.target:
            if time.monotonic() < self.next_spawn:
                return  # backing off: workers keep dying before they are ready
            self._spawn()

    def _spawn(self) -> None:
        number = next(n for n in range(1, len(self.workers) + 2) if n not in self.workers)
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # The child must not hold the master's end of any channel, or a dead master would
        # not be noticed; nor the master's wake-up pair and selector.
        close_fds = [w.channel.fileno() for w in self.workers.values()]
        close_fds += [parent_end.fileno(), self.wake_r.fileno(), self.wake_w.fileno()]
        if isinstance(self.sel, selectors.EpollSelector):
            close_fds.append(self.sel.fileno())
        if self.admin_listener is not None:
            close_fds += self.admin_listener.fds()
        self.spawned += 1  # a hook's worker.age
        self.hooks.call("pre_fork", self.view(), WorkerView(number, 0, self.spawned, self.config))
        process = self.ctx.Process(
            target=worker_main,
            args=(number, self.config, self.listeners, child_end, close_fds, self.app,
                  self.hooks, self.spawned),
            name=f"prefork-worker-{number}",
        )
        # Signals are blocked across the fork: until the child has set its own handlers,
        # the master's would only queue a signal in the child's copy of our list, lost.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNAL_NAMES.keys())
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        child_end.close()
        parent_end.setblocking(False)
        now = time.monotonic()
        lifetime = self.config.max_worker_lifetime
        handle = WorkerHandle(number, process.pid or 0, process, parent_end, self.generation,
                              started=now, last_seen=now,
                              lifetime_s=lifetime * (1 + random.random() / 10))
        self.workers[number] = handle
        self.sel.register(parent_end, selectors.EVENT_READ, handle)
        self.sel.register(process.sentinel, selectors.EVENT_READ, handle)
        log.debug("spawned worker %d (pid %d, generation %d)", number, handle.pid,
                  self.generation)

    def _reap(self) -> None:
        for handle in list(self.workers.values()):
            if handle.process.is_alive():
                continue
            handle.process.join(0)
            code = handle.process.exitcode
            self._last_words(handle)
            del self.workers[handle.number]
            for obj in (handle.channel, handle.process.sentinel):
                with contextlib.suppress(KeyError, ValueError):
                    self.sel.unregister(obj)
            handle.channel.close()
            handle.process.close()
            if handle.beat.metrics:  # keep its counts: totals never go backwards
                self.gone_metrics = [metrics.merge_snapshots([*self.gone_metrics,
                                                              handle.beat.metrics])]
            self._after_exit(handle, code)
            self.hooks.call("child_exit", self.view(),
                            WorkerView(handle.number, handle.pid, cfg=self.config, alive=False))

    def _after_exit(self, handle: WorkerHandle, code: int | None) -> None:
        age = time.monotonic() - handle.started
        retired = handle.retiring_since is not None
        cause = exits.describe(code, killed_by_us=retired)
        label = exits.label(code, retired)
        self.restarts[label] = self.restarts.get(label, 0) + 1
        self.last_exit[handle.number] = cause
        if self.stopping or handle.retiring_since is not None:
            log.info("worker %d (pid %d) %s", handle.number, handle.pid, cause)
            return
        if handle.generation != self.generation:
            log.warning("old worker %d (pid %d) %s", handle.number, handle.pid, cause)
            return
        if self.reload_from is not None and not handle.ready:
            self._abandon_reload(f"new worker {handle.number} {cause}")
            return
        if code == ExitStatus.APP_LOAD and not self.ever_ready:
            log.error("worker %d could not load the app; stopping (see the error above)",
                      handle.number)
            self.exit_code = ExitStatus.APP_LOAD
            self._stop(Stop.QUICK)
            return
        if handle.serving or (handle.ready and age >= YOUNG_S):
            # It served: its death says nothing about the next worker (a route that
            # crashes, a segfault in a C extension, the OOM killer). Replace it now.
            self.failures = 0
            self.next_spawn = 0.0
            line = self.crashes.note(time.monotonic(), f"worker {handle.number} (pid "
                                     f"{handle.pid}) {cause} after {age:.1f} s")
            if line:
                log.error("%s; replacing it now", line)
            return
        # It died before serving anything: likely a boot loop (the app crashes as it
        # starts). The first is replaced at once, then 0.5 s doubling, capped.
        self.failures += 1
        delay = exits.backoff(self.failures)
        self.next_spawn = time.monotonic() + delay
        log.error("worker %d (pid %d) %s after %.1f s, before serving; restarting in %.1f s "
                  "(%d such deaths in a row)", handle.number, handle.pid, cause, age,
                  delay, self.failures)

    def _retire(self, handle: WorkerHandle, reason: str, *, signal_it: bool = True) -> None:
        """Take a worker out of the pool: a replacement starts, it drains and exits."""
        if handle.retiring_since is not None:
            return
        handle.retiring_since = time.monotonic()
        log.info("retiring worker %d (pid %d): %s", handle.number, handle.pid, reason)
        if signal_it:
            self._kill(handle, signal.SIGTERM)

    def _watchdog(self) -> None:
        now = time.monotonic()
        line = self.crashes.flush(now)
        if line:
            log.error("%s", line)
        check_memory = self.config.max_worker_memory and now >= self.next_memory_check
        if check_memory:
            self.next_memory_check = now + 1.0
        for handle in list(self.workers.values()):
            if handle.retiring_since is not None:
                # A retiree gets graceful_timeout; on a stop, the stop's deadline.
                overdue = (now >= self.stop_deadline if self.stopping else
                           now - handle.retiring_since > self.config.graceful_timeout)
                if overdue and not handle.killed and handle.process.is_alive():
                    log.warning("worker %d (pid %d) did not finish in time; killing it (%d "
                                "request(s) in progress cut)", handle.number, handle.pid,
                                handle.beat.inflight)
                    handle.killed = True
                    self._kill(handle, signal.SIGKILL)
                continue
            limit = self.config.timeout if handle.ready else max(self.config.timeout,
                                                                 BOOT_TIMEOUT_S)
            if limit and now - handle.last_seen > limit:
                log.error("worker %d (pid %d) sent no heartbeat for %.0f s; killing it",
                          handle.number, handle.pid, now - handle.last_seen)
                handle.retiring_since = now
                self._kill(handle, signal.SIGKILL)
                continue
            if handle.lifetime_s and now - handle.started > handle.lifetime_s:
                self._retire(handle, f"lifetime of {handle.lifetime_s:.0f} s reached")
            elif check_memory and handle.ready:
                self._check_memory(handle)

    def _check_memory(self, handle: WorkerHandle) -> None:
        used = procstats.memory(handle.pid, self.config.memory_metric)
        if used is None:
            return
        limit = self.config.max_worker_memory * 1024 * 1024
        handle.over_memory = handle.over_memory + 1 if used > limit else 0
        if handle.over_memory >= self.config.memory_samples:
            self._retire(handle, f"{self.config.memory_metric.upper()} {used >> 20} MiB over "
                                 f"max_worker_memory {self.config.max_worker_memory} MiB")

    @staticmethod
    def _kill(handle: WorkerHandle, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(handle.pid, sig)

    # -- what the admin listener reports ----------------------------------------------------
    def totals(self) -> metrics.Totals:
        """Every request counted so far: the live workers' and those that have gone."""
        live = [h.beat.metrics for h in self.workers.values() if h.beat.metrics]
        return metrics.merge([*self.gone_metrics, *live])

    def admin_state(self) -> admin.ServerState:
        """What the admin endpoints report: the master's view of the server."""
        now = time.monotonic()
        workers = [admin.worker_state(h, now, self.last_exit.get(h.number, ""))
                   for h in sorted(self.workers.values(), key=lambda h: h.number)]
        states: dict[str, int] = {}
        for w in workers:
            states[w["state"]] = states.get(w["state"], 0) + 1
        beats = [h.beat for h in self.workers.values()]
        return {
            "pid": os.getpid(), "version": __version__, "target": self.target,
            "threads": self.config.threads, "workers": workers, "worker_states": states,
            "ready_workers": sum(1 for h in self.workers.values()
                                 if h.ready and h.retiring_since is None),
            "draining": bool(self.stopping) or self.drain_at is not None,
            "totals": self.totals(),
            "in_flight": sum(b.inflight for b in beats),
            "connections": sum(b.conns for b in beats),
            "restarts": dict(self.restarts),
            "history": self.admin_listener.history() if self.admin_listener else [],
            "backlog": [(lst.address, b[0]) for lst in self.listeners
                        if (b := admin.backlog(lst.sock)) is not None],
        }

    # -- reload ----------------------------------------------------------------------------
    def handle_hup(self) -> None:
        if self.stopping:
            return
        if self.reload_from is not None:
            log.warning("SIGHUP: a reload is already under way; ignored")
            return
        try:
            new = self.reload_config() if self.reload_config else self.config
        except ConfigError as exc:
            log.error("SIGHUP: the new config is invalid, keeping the old one: %s", exc)
            return
        if new.bind != self.config.bind:
            log.warning("SIGHUP: bind changed; new addresses take effect on a restart or "
                        "SIGUSR2 upgrade")
            new = dataclasses.replace(new, bind=self.config.bind)
        self.hooks.call("on_reload", self.view())
        if new.workers != self.target:
            self.hooks.call("nworkers_changed", self.view(), new.workers, self.target)
        log.info("SIGHUP: reloading (%d new worker(s)%s)", new.workers,
                 "; the app is preloaded, so its code is not re-imported"
                 if self.app is not None else "")
        self.notifier.reloading()
        self.reload_from = self.config
        self.config = new
        self.target = new.workers
        logsetup.from_config(new)
        self.generation += 1
        self.next_spawn = 0.0

    def _abandon_reload(self, why: str) -> None:
        assert self.reload_from is not None
        log.error("reload failed (%s); the old workers keep serving", why)
        for handle in self._current():
            self._retire(handle, "reload abandoned")
        self.config = self.reload_from
        self.target = self.config.workers
        self.reload_from = None
        self.generation -= 1
        self.failures = 0
        self.next_spawn = 0.0
        self.notifier.ready("reload failed; the old workers serve")

    # -- upgrade (USR2) --------------------------------------------------------------------
    def handle_usr2(self) -> None:
        if self.stopping or self.upgrading.under_way or not self.argv:
            log.warning("SIGUSR2: cannot upgrade now (stopping, an upgrade under way, or "
                        "no command line to start again)")
            return
        self.hooks.call("pre_exec", self.view())
        admin_fd = self.admin_listener.sock.fileno() if self.admin_listener else -1
        self.upgrading.start(self.argv, self.listeners, admin_fd)

    def _retire_old_master(self) -> None:
        if self.upgrade_from:
            upgrade.retire_old_master(self.upgrade_from)
            self.upgrade_from = 0

    # -- stopping and other signals --------------------------------------------------------
    def _stop(self, how: Stop) -> None:
        if self.stopping is Stop.QUICK or self.stopping is how:
            return
        self.stopping = how
        self.notifier.stopping()
        now = time.monotonic()
        grace = self.config.graceful_timeout if how is Stop.GRACEFUL else 1.0
        self.stop_deadline = now + grace
        sig = signal.SIGTERM if how is Stop.GRACEFUL else signal.SIGQUIT
        for handle in self.workers.values():
            if handle.retiring_since is None or how is Stop.QUICK:
                handle.retiring_since = handle.retiring_since or now
                self._kill(handle, sig)
        # Our copy of the listeners must go too, so that once the workers have drained
        # the backlog new connections are refused instead of queued forever.
        for listener in self.listeners:
            with contextlib.suppress(OSError):
                listener.sock.close()

    def handle_term(self) -> None:
        delay = self.config.shutdown_delay
        if delay and self.drain_at is None and not self.stopping:
            log.info("SIGTERM: draining in %.1f s (shutdown_delay); serving until then", delay)
            self.drain_at = time.monotonic() + delay
            return
        log.info("SIGTERM: graceful stop (in-flight requests get %.0f s)",
                 self.config.graceful_timeout)
        self._stop(Stop.GRACEFUL)

    def handle_int(self) -> None:
        log.info("SIGINT: quick stop")
        self._stop(Stop.QUICK)

    def handle_quit(self) -> None:
        log.info("SIGQUIT: quick stop")
        self._stop(Stop.QUICK)

    def handle_ttin(self) -> None:
        self.target += 1
        log.info("SIGTTIN: workers %d -> %d", self.target - 1, self.target)
        self.hooks.call("nworkers_changed", self.view(), self.target, self.target - 1)

    def handle_ttou(self) -> None:
        if self.target <= 1:
            return
        self.target -= 1
        log.info("SIGTTOU: workers %d -> %d", self.target + 1, self.target)
        self.hooks.call("nworkers_changed", self.view(), self.target, self.target + 1)
        current = self._current()
        if len(current) > self.target:
            self._retire(max(current, key=lambda h: h.number), "SIGTTOU")

    def handle_usr1(self) -> None:
        log.info("SIGUSR1: reopening log files")
        logsetup.reopen()
        for handle in self.workers.values():
            self._kill(handle, signal.SIGUSR1)

    # -- clean-up ------------------------------------------------------------------------
    def _cleanup(self) -> None:
        if self.admin_listener is not None:
            self.admin_listener.close()
        for handle in self.workers.values():
            self._kill(handle, signal.SIGKILL)
        for handle in self.workers.values():
            handle.process.join(5)
        handed_over = self.upgrading.handed_over()
        for listener in self.listeners:
            with contextlib.suppress(OSError):
                if handed_over:
                    listener.sock.close()  # the new master serves this socket file now
                else:
                    listener.close()
        self.pidfile.remove(handed_over=handed_over)




