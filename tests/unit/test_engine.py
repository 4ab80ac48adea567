"""Choosing the request path (http_engine): what each setting gives, and what it says."""

from __future__ import annotations

import importlib.util
import socket
import sys

import pytest

from prefork.engine_choice import PYTHON
from prefork.engine_choice import choose
from prefork.errors import ConfigError

pytestmark = pytest.mark.timeout(10)
BUILT = importlib.util.find_spec("prefork._native") is not None


def test_python_is_always_there_and_uses_the_socket_itself() -> None:
    engine = choose("python")
    assert engine is PYTHON
    a, b = socket.socketpair()
    with a, b:
        assert engine.socket_io(a) is a


@pytest.mark.skipif(not BUILT, reason="the compiled core is not built here")
def test_auto_and_native_take_the_compiled_core_when_built() -> None:
    for setting in ("auto", "native"):
        engine = choose(setting)
        assert engine.name == "native" and "loaded" in engine.why
        a, b = socket.socketpair()
        with a, b:
            io = engine.socket_io(a)
            assert type(io).__module__ == "prefork._native" and io.send(b"x") == 1
            assert b.recv(1) == b"x"


def test_without_the_compiled_core_auto_falls_back_and_native_is_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import prefork

    monkeypatch.setitem(sys.modules, "prefork._native", None)  # import fails
    monkeypatch.delattr(prefork, "_native", raising=False)  # and no attribute is left
    engine = choose("auto")
    assert engine.name == "python" and engine.fallback
    assert "cannot be imported" in engine.why and "wheel" in engine.why
    with pytest.raises(ConfigError) as err:
        choose("native")
    text = str(err.value)
    assert "http_engine" in text and "C compiler" in text
