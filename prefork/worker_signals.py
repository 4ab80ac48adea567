"""What each signal means in a worker process, from its fork to its exit.

`booting()` gives signals a worker's meaning before the forked child unblocks them
(the master forks with its signals blocked): TERM, INT and QUIT end a worker that is still
booting, the rest are the master's business. `install()` then gives the running worker
its handlers, which only set flags on the worker: its main thread acts on them once
signal.set_wakeup_fd has woken it. Touched by the worker's main thread only (Python runs
signal handlers there).
"""

from __future__ import annotations

import signal
from typing import Protocol

from prefork.messages import Stop

# The master acts on these; a terminal sends them to the whole process group.
_MASTERS = (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR2, signal.SIGWINCH)


class Flags(Protocol):
    """What the handlers set: the worker's flags."""

    stop_signal: Stop | None
    reopen_logs: bool


def booting() -> None:
    """In the forked child, before anything else: defaults, then signals unblocked."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    for sig in (signal.SIGUSR1, *_MASTERS):
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def install(flags: Flags, wake_fd: int) -> None:
    """The running worker's handlers: TERM drains, INT and QUIT stop now, USR1 reopens
    the logs; each writes to `wake_fd` (the main thread's wake-up)."""
    signal.set_wakeup_fd(wake_fd, warn_on_full_buffer=False)

    def graceful(signum: int, frame: object) -> None:
        flags.stop_signal = flags.stop_signal or Stop.GRACEFUL

    def quick(signum: int, frame: object) -> None:
        flags.stop_signal = Stop.QUICK

    def reopen(signum: int, frame: object) -> None:
        flags.reopen_logs = True

    signal.signal(signal.SIGTERM, graceful)
    signal.signal(signal.SIGINT, quick)
    signal.signal(signal.SIGQUIT, quick)
    signal.signal(signal.SIGUSR1, reopen)
    for sig in _MASTERS:
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
