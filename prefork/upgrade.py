"""Binary upgrade on SIGUSR2, and the pidfile that names the running master.

On USR2 the master starts a new master with the same command line. The new one inherits
the listening sockets (their descriptors in PREFORK_INHERIT_FDS, so no connection is
refused while both run) and learns its predecessor's pid (PREFORK_UPGRADE_FROM). While
both run, the old master's pidfile is renamed to `<pidfile>.oldbin`, as nginx and gunicorn
do. Once the new master's workers are all ready it sends TERM to the old one, which
drains; if the new master exits before that, the old one keeps serving and takes its
pidfile back.

Touched only by the master's main thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass

from prefork.sockets import Listener

log = logging.getLogger(__name__)

INHERIT_ENV = "PREFORK_INHERIT_FDS"
ADMIN_ENV = "PREFORK_INHERIT_ADMIN_FD"
UPGRADE_ENV = "PREFORK_UPGRADE_FROM"


@dataclass(frozen=True)
class Inherited:
    """What an upgrading master passed us: the serving listeners' descriptors, the admin
    listener's (-1: none), and the old master's pid (0: we are no upgrade)."""

    fds: list[int]
    admin_fd: int
    old_pid: int


def take_inherited(environ: MutableMapping[str, str]) -> Inherited:
    """What an upgrading master passed us (removed from the environment, so that our own
    children do not see it)."""
    fds = [int(fd) for fd in environ.pop(INHERIT_ENV, "").split(",") if fd]
    admin_fd = int(environ.pop(ADMIN_ENV, "-1") or -1)
    old_pid = int(environ.pop(UPGRADE_ENV, "0") or 0)
    return Inherited(fds, admin_fd, old_pid)


class Pidfile:
    """The file holding the master's pid (none when `path` is empty)."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def write(self) -> None:
        if self.path:
            with open(self.path, "w") as fh:
                fh.write(f"{os.getpid()}\n")

    def rename(self, *, to_old: bool) -> None:
        """To `<path>.oldbin` while a new master starts; back if it fails."""
        if self.path:
            old = self.path + ".oldbin"
            src, dst = (self.path, old) if to_old else (old, self.path)
            with contextlib.suppress(OSError):
                os.replace(src, dst)

    def remove(self, *, handed_over: bool) -> None:
        """On exit: our file (`.oldbin` once a new master has taken over)."""
        if self.path:
            with contextlib.suppress(OSError):
                os.unlink(self.path + ".oldbin" if handed_over else self.path)


class Upgrade:
    """A new master started by USR2, until it takes over or fails."""

    def __init__(self, pidfile: Pidfile) -> None:
        self.pidfile = pidfile
        self.child: subprocess.Popen[bytes] | None = None

    @property
    def under_way(self) -> bool:
        return self.child is not None

    def start(self, argv: list[str], listeners: list[Listener], admin_fd: int = -1) -> None:
        """The new master, given our listeners (and the admin listener's socket, so that
        /metrics answers throughout: both masters accept on it until we exit)."""
        fds = [listener.sock.fileno() for listener in listeners]
        env = {**os.environ, INHERIT_ENV: ",".join(map(str, fds)), UPGRADE_ENV: str(os.getpid())}
        if admin_fd >= 0:
            env[ADMIN_ENV] = str(admin_fd)
        log.info("SIGUSR2: starting a new master with the same listeners")
        self.pidfile.rename(to_old=True)
        self.child = subprocess.Popen([sys.executable, "-m", "prefork", *argv[1:]], env=env,
                                      pass_fds=fds + ([admin_fd] if admin_fd >= 0 else []))

    def check(self) -> None:
        """The new master exited before taking over: we keep serving, with our pidfile."""
        if self.child is not None and self.child.poll() is not None:
            log.error("the new master (pid %d) exited with status %s before taking over; "
                      "this one keeps serving", self.child.pid, self.child.returncode)
            self.child = None
            self.pidfile.rename(to_old=False)

    def handed_over(self) -> bool:
        """A new master runs and serves our listeners (checked as we exit)."""
        return self.child is not None and self.child.poll() is None


def retire_old_master(pid: int) -> None:
    """We are the new master and ready: the old one may drain and stop."""
    log.info("new master ready; asking the old master (pid %d) to stop", pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
