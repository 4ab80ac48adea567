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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prefork.config import Config

_role = "master"
_handler: logging.Handler | None = None
_capture = False  # capture_output: fds 1 and 2 follow the error-log file
FORMAT = "[%(asctime)s] [%(process)d] [%(role)s] [%(levelname)s] %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S %z"
# gunicorn's error-log line (its glogging's), for the log parsers written for it.
GUNICORN_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"
GUNICORN_DATEFMT = "[%Y-%m-%d %H:%M:%S %z]"
_formatter = logging.Formatter(FORMAT, datefmt=DATEFMT)


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
    handler.setFormatter(_formatter)
    handler.addFilter(_RoleFilter())
    return handler


def setup(level: str, target: str = "-", capture: bool = False, style: str = "prefork"
          ) -> None:
    """The error log to `target`, its lines in prefork's or gunicorn's `style`; with
    `capture`, file descriptors 1 and 2 (the app's stdout and stderr) point at the same
    file."""
    global _handler, _capture, _formatter
    _capture = capture
    _formatter = (logging.Formatter(GUNICORN_FORMAT, datefmt=GUNICORN_DATEFMT)
                  if style == "gunicorn" else logging.Formatter(FORMAT, datefmt=DATEFMT))
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


# gunicorn's logger names: a logging configuration written for gunicorn addresses these.
GUNICORN_ERROR = "gunicorn.error"
GUNICORN_ACCESS = "gunicorn.access"


class _Forward(logging.Handler):
    """Hands prefork's error-log records to the 'gunicorn.error' logger a user's logging
    configuration set up (its handlers, its level, its propagation)."""

    def __init__(self, target: logging.Logger) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= self.target.getEffectiveLevel():
            self.target.handle(record)


def from_config(cfg: Config) -> None:
    """The error log as the settings say: its target, capture_output, and a user's logging
    configuration over it."""
    setup(cfg.loglevel, cfg.errorlog, cfg.capture_output, cfg.error_log_format)
    apply_config(cfg.logconfig_dict, cfg.logconfig, cfg.logconfig_json)


def apply_config(dict_text: str = "", ini: str = "", json_path: str = "") -> None:
    """A user's logging configuration (logconfig_dict, logconfig, logconfig_json), over
    the set-up above; loggers that exist stay enabled (prefork's among them). When it
    gives 'gunicorn.error' handlers, prefork's error lines go through that logger instead
    of the root's; access lines go to 'gunicorn.access' (see AccessLog)."""
    import json
    import logging.config

    for text in (dict_text, _read(json_path)):
        if text:
            config = json.loads(text)
            config.setdefault("version", 1)
            config.setdefault("disable_existing_loggers", False)
            logging.config.dictConfig(config)
    if ini:
        logging.config.fileConfig(ini, disable_existing_loggers=False)
    if dict_text or ini or json_path:
        ours = logging.getLogger("prefork")
        for handler in [h for h in ours.handlers if isinstance(h, _Forward)]:
            ours.removeHandler(handler)
        target = logging.getLogger(GUNICORN_ERROR)
        if target.handlers:
            ours.addHandler(_Forward(target))
            ours.propagate = False
        else:
            ours.propagate = True


def _read(path: str) -> str:
    if not path:
        return ""
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def access_logger() -> logging.Logger | None:
    """The 'gunicorn.access' logger, when a logging configuration gave it handlers."""
    logger = logging.getLogger(GUNICORN_ACCESS)
    return logger if logger.handlers else None
