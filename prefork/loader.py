"""Turn "package.module:app" or "module:factory()" into a WSGI callable, and name the
type of what it returns (`WSGIApp`, PEP 3333's callables).

Called in a worker after fork (or in the master with preload_app). Any failure becomes an
AppLoadError whose message says what was looked for and why it failed.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, cast

from prefork.errors import AppLoadError

# PEP 3333's callables, as the server sees them.
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], None]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

DEFAULT_NAME = "application"  # as in Django's wsgi.py and gunicorn's default


def load_app(spec: str | None, pythonpath: tuple[str, ...] = ()) -> WSGIApp:
    """Import the app named by `spec`; None gives the built-in demo app."""
    if spec is None:
        from prefork.demo import app

        return app
    for path in reversed(pythonpath):
        if path not in sys.path:
            sys.path.insert(0, path)
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like gunicorn: the working directory is importable
    module_name, _, attr = spec.partition(":")
    attr = attr or DEFAULT_NAME
    call = attr.endswith("()")
    if call:
        attr = attr[:-2]
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        detail = "".join(traceback.format_exception(exc)).rstrip()
        raise AppLoadError(f"cannot import module {module_name!r} for app {spec!r}:\n"
                           f"{detail}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attr!r} "
                               f"(app {spec!r})") from None
    if call:
        try:
            obj = obj()
        except Exception as exc:
            detail = "".join(traceback.format_exception(exc)).rstrip()
            raise AppLoadError(f"app factory {spec!r} failed:\n{detail}") from None
    if not callable(obj):
        raise AppLoadError(f"app {spec!r} is a {type(obj).__name__}, not a WSGI callable")
    return cast(WSGIApp, obj)
