"""Logging set-up for the master and the workers: one format, the pid and role on every line.

Called once in the master, and again in each worker after fork to set its role
("master" or "worker 3"). The error log goes to stderr or a file; `reopen()` (on SIGUSR1,
from the main thread of each process, never inside the signal handler) reopens the file
after log rotation.
"""

from __future__ import annotations

import logging
import os
import sys

_role = "master"
_handler: logging.Handler | None = None
_capture = False  # capture_output: fds 1 and 2 follow the error-log file
FORMAT = "[%(asctime)s] [%(process)d] [%(role)s] [%(levelname)s] %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S %z"


class _RoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.role = _role
        return True


def _make_handler(target: str) -> logging.Handler:
    handler: logging.Handler
    if target == "-":
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(target, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT, datefmt=DATEFMT))
    handler.addFilter(_RoleFilter())
    return handler


def setup(level: str, target: str = "-", capture: bool = False) -> None:
    """The error log to `target`; with `capture`, file descriptors 1 and 2 (the app's
    stdout and stderr) point at the same file."""
    global _handler, _capture
    _capture = capture
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    _handler = _make_handler(target)
    _handler.target = target  # type: ignore[attr-defined]
    root.addHandler(_handler)
    root.setLevel(level.upper())
    _redirect_stdio()


def _redirect_stdio() -> None:
    handler = _handler
    if _capture and isinstance(handler, logging.FileHandler) and handler.stream is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd in (1, 2):
            os.dup2(handler.stream.fileno(), fd)


def reopen() -> None:
    """Reopen the error-log file (after logrotate moved it); stderr needs nothing."""
    handler = _handler
    if isinstance(handler, logging.FileHandler):
        handler.acquire()
        try:
            handler.close()
            handler.stream = handler._open()
        finally:
            handler.release()
        _redirect_stdio()


def set_role(role: str) -> None:
    global _role
    _role = role
