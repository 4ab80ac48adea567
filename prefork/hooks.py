"""Server hooks, with gunicorn's names and meanings: the user's functions called at points
of the master's and the workers' lives (prefork.gunicorn.HOOKS lists them).

They come from a Python config file (`-c gunicorn.conf.py`) or from the module named by
the `hooks` setting. A hook that raises is logged with its name and the server goes on,
except `on_starting`, which aborts start-up (as in gunicorn). Built once in the master;
workers inherit it on fork. `pre_request` and `post_request` are plain attributes, None
when unset, so that the request path pays one comparison for them.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prefork.errors import ConfigError
from prefork.gunicorn import HOOKS

log = logging.getLogger(__name__)
Hook = Callable[..., Any]


@dataclass
class ServerView:
    """What a hook is given as `server` (gunicorn passes its Arbiter): the master's pid,
    a logger, the resolved settings and the worker count."""

    pid: int
    cfg: Any
    num_workers: int
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("prefork.hooks"))


@dataclass
class WorkerView:
    """What a hook is given as `worker`: its number, pid (0 before fork) and start time."""

    number: int
    pid: int
    started: float = field(default_factory=time.monotonic)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("prefork.hooks"))

    @property
    def age(self) -> float:
        return time.monotonic() - self.started


class Hooks:
    def __init__(self, fns: Mapping[str, Hook] | None = None) -> None:
        self.fns = dict(fns or {})
        self.pre_request: Hook | None = self.fns.get("pre_request")
        self.post_request: Hook | None = self.fns.get("post_request")

    def __bool__(self) -> bool:
        return bool(self.fns)

    def call(self, name: str, *args: Any) -> None:
        """Run hook `name` if set; what it raises is logged and swallowed, except from
        on_starting, which aborts start-up."""
        fn = self.fns.get(name)
        if fn is None:
            return
        if name == "on_starting":
            fn(*args)
        else:
            run_hook(fn, name, *args)


def run_hook(fn: Hook, name: str, *args: Any) -> None:
    """Call a hook; log (with the pid) and swallow what it raises. Pool threads call the
    per-request hooks through this directly (no lookup by name per request)."""
    try:
        fn(*args)
    except Exception:
        log.exception("[%d] server hook %s raised; going on", os.getpid(), name)


def from_module(spec: str) -> dict[str, Hook]:
    """The hook functions defined in module `spec` (the `hooks` setting)."""
    try:
        module = importlib.import_module(spec)
    except Exception as exc:
        raise ConfigError("hooks", spec, f"cannot import the hooks module: "
                          f"{type(exc).__name__}: {exc}") from None
    found = {name: getattr(module, name) for name in HOOKS if callable(getattr(module, name,
                                                                                None))}
    if not found:
        raise ConfigError("hooks", spec, "the module defines none of the hooks: "
                          + ", ".join(HOOKS))
    return found
