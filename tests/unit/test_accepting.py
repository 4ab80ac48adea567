"""A worker's accept pause and resume (prefork/accepting.py), on a real epoll and a real
listener, with the interleaving that once killed a worker (EEXIST in _resume_accepting)
made to happen every time."""

from __future__ import annotations

import importlib.util
import select
import socket
import threading
from typing import Any

import pytest

from prefork.config import Config
from prefork.sockets import Listener
from prefork.worker import Worker

pytestmark = pytest.mark.timeout(20)


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [b""]


class SlowUnregister:
    """The worker's epoll, whose unregister stops half-way: it tells `inside`, then waits
    (0.5 s at most) for `other_done` before it does its work."""

    def __init__(self, ep: select.epoll) -> None:
        self.ep = ep
        self.inside = threading.Event()
        self.other_done = threading.Event()

    def unregister(self, fd: int) -> None:
        self.inside.set()
        self.other_done.wait(0.5)
        self.ep.unregister(fd)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ep, name)


def registered(ep: select.epoll, fd: int) -> bool:
    try:
        ep.modify(fd, select.EPOLLIN)
    except FileNotFoundError:
        return False
    return True


ENGINES = ["python", *(["native"] if importlib.util.find_spec("prefork._native") else [])]


@pytest.mark.parametrize("engine", ENGINES)
def test_resume_during_a_pause_waits_for_it_and_leaves_flag_and_epoll_agreeing(
        engine: str) -> None:
    """A pool thread pauses (the table is full) while the main thread resumes (there is
    room again), the resume arriving between the pause's flag and its unregister."""
    listen = socket.create_server(("127.0.0.1", 0))
    master, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    worker = Worker(1, Config(http_engine=engine), [Listener(listen, "127.0.0.1:0")], child,
                    app)
    real_ep = worker.ep
    try:
        worker._resume_accepting()
        assert worker.accepting and registered(real_ep, listen.fileno())
        slow = SlowUnregister(real_ep)
        worker.ep = slow  # type: ignore[assignment]
        errors: list[BaseException] = []

        def resume() -> None:
            assert slow.inside.wait(5)
            try:
                worker._resume_accepting()
            except BaseException as exc:
                errors.append(exc)
            finally:
                slow.other_done.set()

        resumer = threading.Thread(target=resume)
        resumer.start()
        worker._pause_accepting()
        resumer.join(5)
        assert not resumer.is_alive()
        assert errors == []
        # Both calls happened, in one order or the other: the flag says what the epoll has.
        assert worker.accepting == registered(real_ep, listen.fileno())
        assert worker.accepting, "the resume came last"
    finally:
        worker.ep = real_ep
        real_ep.close()
        listen.close()
        master.close()
        child.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_recycling_pauses_accepting_from_the_pool_thread_that_counted(engine: str) -> None:
    """max_requests reached: the counting thread itself stops the listeners and tells
    every later response to close, without waiting for the main thread."""
    listen = socket.create_server(("127.0.0.1", 0))
    master, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    worker = Worker(1, Config(http_engine=engine, max_requests=3, max_requests_jitter=0),
                    [Listener(listen, "127.0.0.1:0")], child, app)
    try:
        worker.ctx = worker.context()
        worker._resume_accepting()
        for served in (1, 2):
            worker._counted(served)
        assert worker.accepting and not worker.ctx.stopping
        worker._counted(3)
        assert worker.recycle and worker.ctx.stopping
        assert not worker.accepting and not registered(worker.ep, listen.fileno())
        worker._resume_accepting()  # the main thread's "room again" does not undo it
        assert not worker.accepting
    finally:
        worker.ep.close()
        listen.close()
        master.close()
        child.close()
