"""The master process's own settings: working directory, environment, umask, and the
user and group it drops to once the sockets are bound. Called in the master (workers
inherit all of it on fork), and by --check-config before it imports the app.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
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
