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
from prefork.engine import PYTHON, Engine
from prefork.errors import ConfigError
from prefork.wsgi import Exchange


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
        return Engine("python", "http_engine = auto: the compiled core (prefork._native) "
                      f"cannot be imported ({exc}), so requests take the Python path, at "
                      "about half the speed; install a prefork wheel for this platform and "
                      "Python, or reinstall where a C compiler and the Python headers are "
                      "present, to get the native engine", fallback=True)
    from prefork import native
    # NativeExchange has Exchange's attributes and methods (tests/unit/
    # test_native_exchange.py), not its class: its state lives in a C type.
    exchange = cast("type[Exchange]", native.NativeExchange)
    return Engine("native", f"http_engine = {setting}: the compiled core is loaded",
                  _native.Sock, _native.EpollCtl, exchange, native.build_environ,
                  native.head_fields, _native.serve_one, _native.on_ready,
                  _native.WorkerCalls, _native.accept, _native.close_socket,
                  native.environ_base, _native.new_connection, _native.close_connection,
                  bind_worker=native.bind_worker)
