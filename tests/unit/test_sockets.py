"""Listening sockets: the options set on them."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from prefork.sockets import Listener, bind_tcp, bind_unix, set_defer_accept


@pytest.mark.parametrize("on", [True, False])
def test_defer_accept_on_tcp_listeners(on: bool) -> None:
    sock = bind_tcp("127.0.0.1:0", 16)
    try:
        set_defer_accept([Listener(sock, "127.0.0.1:0")], on)
        value = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT)
        assert (value > 0) is on
    finally:
        sock.close()


def test_defer_accept_leaves_unix_listeners_alone(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    # TCP_DEFER_ACCEPT on a UNIX socket fails (and would be logged): it must not be tried.
    path = str(tmp_path / "s.sock")
    sock = bind_unix(path, 16, 0o600)
    try:
        with caplog.at_level(logging.WARNING):
            set_defer_accept([Listener(sock, "unix:" + path, path)], True)
        assert caplog.records == []
    finally:
        sock.close()
