"""The master process's own settings: working directory, environment, umask, the
open-files limit (and so how many connections a worker may hold), and the user and
group it drops to once the sockets are bound. Called in the master (workers inherit all
of it on fork; each reads its connection bound here), and by --check-config before it
imports the app.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import resource
import sys

from prefork.config import Config
from prefork.errors import ConfigError

log = logging.getLogger(__name__)


def prepare(cfg: Config) -> None:
    """chdir, env and umask: before the app is imported, so it sees them."""
    if cfg.chdir:
        os.chdir(cfg.chdir)
    for path in reversed(cfg.pythonpath):  # the app, and a hooks module, are found there
        if path not in sys.path:
            sys.path.insert(0, path)
    for item in cfg.env:
        key, _, value = item.partition("=")
        os.environ[key] = value
    if cfg.umask:
        os.umask(int(cfg.umask.removeprefix("0o"), 8))


RESERVED_FILES = 64  # the worker's own descriptors: listeners, epolls, pipes, logs, the app's
MOST_OPEN_FILES = 1 << 20  # what max_open_files = 0 asks for at most


def raise_open_files(cfg: Config) -> int:
    """Raise the soft RLIMIT_NOFILE towards max_open_files (0: the hard limit, at most
    MOST_OPEN_FILES), logged; returns the soft limit now. In the master, before the
    workers fork: they inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = hard == resource.RLIM_INFINITY
    want = cfg.max_open_files or (MOST_OPEN_FILES if unlimited else min(hard, MOST_OPEN_FILES))
    if want <= soft:
        return soft
    new_hard = hard if unlimited or want <= hard else want
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, new_hard))
    except (ValueError, OSError):  # above the hard limit, and not root
        if want <= hard or unlimited:
            raise
        log.warning("max_open_files = %d is above the hard limit %d (only root may raise "
                    "it): using %d", want, hard, hard)
        want = hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    log.info("open files: soft limit raised from %d to %d", soft, want)
    return want


def connections_per_worker(cfg: Config, say: bool = False) -> int:
    """worker_connections, or what the open-files limit leaves room for when it is 0; a
    setting above that room is lowered to it (said if `say`: past it accept fails)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = max(1, (MOST_OPEN_FILES if soft == resource.RLIM_INFINITY else soft)
               - RESERVED_FILES)
    if cfg.worker_connections == 0:
        return room
    if cfg.worker_connections > room:
        if say:
            log.warning("worker_connections = %d is more than the open-files limit (%d) leaves "
                        "room for: using %d (raise max_open_files)", cfg.worker_connections,
                        soft, room)
        return room
    return cfg.worker_connections


def drop_privileges(cfg: Config) -> None:
    """Become `user` and `group` (the sockets are bound by now, as root if need be)."""
    if not cfg.user and not cfg.group:
        return
    uid, gid = os.getuid(), os.getgid()
    name = None
    if cfg.user:
        try:
            entry = pwd.getpwuid(int(cfg.user)) if cfg.user.isdigit() else pwd.getpwnam(cfg.user)
        except (KeyError, ValueError):
            raise ConfigError("user", cfg.user, "no such user on this system") from None
        uid, gid, name = entry.pw_uid, entry.pw_gid, entry.pw_name
    if cfg.group:
        try:
            gid = int(cfg.group) if cfg.group.isdigit() else grp.getgrnam(cfg.group).gr_gid
        except KeyError:
            raise ConfigError("group", cfg.group, "no such group on this system") from None
    if (uid, gid) == (os.getuid(), os.getgid()):
        return
    try:
        if name is not None:
            os.initgroups(name, gid)
        os.setgid(gid)
        os.setuid(uid)
    except PermissionError:
        raise ConfigError("user", cfg.user or cfg.group, "changing user or group needs "
                          "root (start as root: sockets are bound first, then dropped)") from None
    log.info("running as uid %d, gid %d", uid, gid)
