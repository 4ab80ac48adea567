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
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prefork.errors import ConfigError
from prefork.gunicorn_names import HOOKS

log = logging.getLogger(__name__)
Hook = Callable[..., Any]


@dataclass
class ServerView:
    """What a hook is given as `server`, with the attributes of gunicorn's Arbiter that
    prefork has: the master's pid, the resolved settings (`cfg`: gunicorn's names where
    prefork has the setting: workers, threads, bind, worker_connections...), the worker
    count, the listening sockets (`LISTENERS`, socket objects) and their addresses
    (`address`), a logger."""

    pid: int
    cfg: Any
    num_workers: int
    LISTENERS: list[socket.socket] = field(default_factory=list)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("prefork.hooks"))

    @property
    def address(self) -> list[Any]:
        """What each listener is bound to: (host, port), or a UNIX socket's path."""
        return [sock.getsockname() for sock in self.LISTENERS]

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"server.{name}: gunicorn's Arbiter has it, prefork's hooks "
                             f"do not (they have pid, cfg, num_workers, LISTENERS, "
                             f"address, log)")


@dataclass
class WorkerView:
    """What a hook is given as `worker`, with gunicorn's attributes: its number, pid (0
    before fork), `age` (the master's count of workers spawned, as gunicorn's), the
    resolved settings (`cfg`), `alive`, a logger; `started` (monotonic seconds)."""

    number: int
    pid: int
    age: int = 0
    cfg: Any = None
    alive: bool = True
    started: float = field(default_factory=time.monotonic)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("prefork.hooks"))

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"worker.{name}: gunicorn's workers have it, prefork's hooks "
                             f"do not (they have number, pid, age, cfg, alive, log)")


class RequestView:
    """What pre_request and post_request are given as `req`, in the shapes of gunicorn's
    request: method, uri, path, query, fragment, version (a tuple: (1, 1)), scheme, and
    headers as (NAME, value) strings with the name upper-cased."""

    __slots__ = ("_req",)

    def __init__(self, req: Any) -> None:
        self._req = req

    method = property(lambda self: self._req.method)
    uri = property(lambda self: self._req.uri)
    path = property(lambda self: self._req.path)
    query = property(lambda self: self._req.query)
    fragment = property(lambda self: "")
    scheme = property(lambda self: "http")
    version = property(lambda self: tuple(int(p) for p in self._req.version.split(".")))

    @property
    def headers(self) -> list[tuple[str, str]]:
        return [(name.decode("latin-1").upper(), value.decode("latin-1"))
                for name, value in self._req.headers]

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"req.{name}: gunicorn's request has it, prefork's hooks get "
                             "method, uri, path, query, fragment, version, scheme, headers")


class ResponseView:
    """What post_request is given as `resp`, in the shapes of gunicorn's response:
    status ("200 OK"), status_code (200), headers ((name, value) strings), sent and
    response_length (body bytes sent)."""

    __slots__ = ("_exchange",)

    def __init__(self, exchange: Any) -> None:
        self._exchange = exchange

    status = property(lambda self: self._exchange.status or str(self._exchange.code))
    status_code = property(lambda self: self._exchange.code)
    headers = property(lambda self: list(self._exchange.headers or []))
    sent = property(lambda self: self._exchange.sent)
    response_length = property(lambda self: self._exchange.sent)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"resp.{name}: gunicorn's response has it, prefork's hooks get "
                             "status, status_code, headers, sent, response_length")


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
