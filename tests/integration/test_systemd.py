"""systemd integration, without systemd: a fake notify socket, and socket activation."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server import ROOT, Server, wait_for

pytestmark = pytest.mark.timeout(60)


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.seen: list[str] = []

    def wait(self, state: str, timeout: float = 15) -> list[str]:
        def arrived() -> bool:
            with contextlib.suppress(TimeoutError):
                self.seen.append(self.sock.recv(4096).decode())
            return any(state in msg.split("\n") for msg in self.seen)
        wait_for(arrived, timeout=timeout, interval=0, what=state)
        return self.seen


def test_notify_ready_reloading_stopping_watchdog(tmp_path: Path) -> None:
    notify = NotifySocket(tmp_path / "notify")
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000"}
    with Server("tests.apps.basic:app", workers=2, env=env) as srv:
        seen = notify.wait("READY=1")
        ready = next(m for m in seen if "READY=1" in m)
        assert f"MAINPID={srv.pid}" in ready and "STATUS=2 workers ready" in ready
        notify.wait("WATCHDOG=1")
        notify.seen.clear()
        srv.signal(signal.SIGHUP)
        seen = notify.wait("READY=1")
        assert any(m.startswith("RELOADING=1\nMONOTONIC_USEC=") for m in seen)
        srv.signal(signal.SIGTERM)
        notify.wait("STOPPING=1")
        assert srv.wait_exit(15) == 0


def test_socket_activation(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    log = open(tmp_path / "out.log", "wb")  # noqa: SIM115 - closed below
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # As systemd does: the socket is descriptor 3 and LISTEN_PID is the server's own pid.
    proc = subprocess.Popen(
        ["bash", "-c", f"exec 3<&{fd}; export LISTEN_PID=$$ LISTEN_FDS=1; exec "
                       f"{sys.executable} -m prefork tests.apps.basic:app --workers 1 "
                       "--bind 127.0.0.1:1"],
        pass_fds=(fd,), env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    listener.close()  # the server holds it now
    try:
        def served() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                    sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    return sock.recv(4096).startswith(b"HTTP/1.1 200")
            except OSError:
                return False
        wait_for(served, timeout=20, what="the socket-activated server")
        text = (tmp_path / "out.log").read_text()
        assert f"listening at http://127.0.0.1:{port}" in text
        assert "127.0.0.1:1" not in text, "the activated socket replaces bind"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
        log.close()
