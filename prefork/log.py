"""Logging set-up for the master and the workers: one format, the pid and role on every line.

Called once in the master, and again in each worker after fork to set its role
("master" or "worker 3"). The access log (one line per request) belongs here too.
"""

from __future__ import annotations

import logging
import sys

_role = "master"


class _RoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.role = _role
        return True


def setup(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "[%(asctime)s] [%(process)d] [%(role)s] [%(levelname)s] %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S %z",
    ))
    handler.addFilter(_RoleFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def set_role(role: str) -> None:
    global _role
    _role = role
