"""Which request path serves (http_engine): `choose` turns the setting into an Engine,
the compiled core's or the Python reference's. The master chooses to say which in the
log; each worker chooses for itself as it starts (the same answer: same interpreter, same
install).

It sits above engine.py and native.py (which binds the compiled core to the references,
and so imports the connection and worker modules): engine.py imports none of them, and
no import cycle passes through the engine seam (tests/unit/test_architecture.py).
"""

from __future__ import annotations

from typing import cast

from prefork.config import HttpEngine
from prefork.connection import Connection
from prefork.engine import Engine
from prefork.errors import ConfigError
from prefork.request_cycle import RequestCycle
from prefork.wsgi import Exchange


def python_engine(why: str, fallback: bool = False) -> Engine:
    """The Python reference's engine: the socket module's calls, and Connection's own
    methods where the native engine has C twins."""
    return Engine("python", why, serve_one=RequestCycle.serve_one,
                  on_ready=Connection.on_ready, new_connection=Connection,
                  close_connection=Connection.close, fallback=fallback)


PYTHON = python_engine("http_engine = python")


def choose(setting: HttpEngine) -> Engine:
    """The engine for a setting. `native` without the compiled core is a ConfigError:
    asked for explicitly, it must not quietly become the other one."""
    if setting == "python":
        return PYTHON
    try:
        from prefork import _native
    except ImportError as exc:
        if setting == "native":
            raise ConfigError("http_engine", setting, "the compiled core (prefork._native) "
                              f"cannot be imported ({exc}); reinstall prefork where a C "
                              "compiler and the Python headers are present, or use auto "
                              "or python") from None
        return python_engine("http_engine = auto: the compiled core (prefork._native) "
                             f"cannot be imported ({exc}), so requests take the Python path, "
                             "at about half the speed; install a prefork wheel for this "
                             "platform and Python, or reinstall where a C compiler and the "
                             "Python headers are present, to get the native engine",
                             fallback=True)
    from prefork import native
    # NativeExchange has Exchange's attributes and methods (tests/unit/
    # test_native_exchange.py), not its class: its state lives in a C type.
    exchange = cast("type[Exchange]", native.NativeExchange)
    return Engine("native", f"http_engine = {setting}: the compiled core is loaded",
                  _native.Sock, _native.EpollCtl, exchange, native.build_environ,
                  native.head_fields, worker_calls=_native.WorkerCalls,
                  accept=_native.accept, close_socket=_native.close_socket,
                  environ_base=native.environ_base, serve_one=_native.serve_one,
                  on_ready=_native.on_ready, new_connection=_native.new_connection,
                  close_connection=_native.close_connection,
                  bind_worker=native.bind_worker)
