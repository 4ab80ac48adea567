"""The compiled core (prefork._native) against the socket and select modules it stands in
for: the same bytes, the same results, the same exceptions, over real socketpairs and a
real epoll. Skipped where the extension is not built (the Python engine serves there)."""

from __future__ import annotations

import errno
import os
import select
import socket
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.quiet import alone

native = pytest.importorskip("prefork._native")

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_recv_returns_what_arrived_as_socket_recv_does(pair: tuple[socket.socket,
                                                                  socket.socket]) -> None:
    a, b = pair
    sock = native.Sock(a.fileno())
    b.sendall(b"GET / HTTP/1.1\r\n\r\n")
    assert sock.recv(65536) == b"GET / HTTP/1.1\r\n\r\n"
    b.sendall(b"0123456789")
    assert sock.recv(4) == b"0123"
    assert a.recv(4) == b"4567"  # the same stream, whichever object reads it
    assert sock.recv(0) == b""
    assert sock.recv(100) == b"89"


def test_nothing_to_read_raises_blockingioerror_like_a_nonblocking_socket(
        pair: tuple[socket.socket, socket.socket]) -> None:
    a, _b = pair
    with pytest.raises(BlockingIOError) as theirs:
        a.recv(10)
    with pytest.raises(BlockingIOError) as ours:
        native.Sock(a.fileno()).recv(10)
    assert ours.value.errno == theirs.value.errno


def test_recv_of_nothing_returns_empty_without_waiting_as_the_socket_module_does(
        pair: tuple[socket.socket, socket.socket]) -> None:
    a, _b = pair  # found by tests/fuzz/fuzz_native.py: the native side raised EAGAIN
    assert a.recv(0) == b"" == native.Sock(a.fileno()).recv(0)


def test_eof_reads_empty(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.shutdown(socket.SHUT_WR)
    assert native.Sock(a.fileno()).recv(10) == b""


def test_send_takes_any_buffer_and_reports_what_the_socket_took(
        pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    sock = native.Sock(a.fileno())
    assert sock.send(b"abc") == 3
    assert sock.send(memoryview(b"xxdefxx")[2:5]) == 3
    assert sock.send(bytearray(b"gh")) == 2
    assert b.recv(100) == b"abcdefgh"
    with pytest.raises(TypeError):
        sock.send("text")


def test_a_full_socket_raises_blockingioerror_after_a_partial_send(
        pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock = native.Sock(a.fileno())
    big = b"x" * (1 << 22)
    sent = sock.send(big)
    assert 0 < sent < len(big)
    with pytest.raises(BlockingIOError):
        while True:
            sock.send(big)
    got = b""
    while True:
        try:
            got += b.recv(1 << 20)
        except BlockingIOError:
            break
    assert got.startswith(b"x" * sent)


def test_a_peer_gone_is_the_same_oserror_as_the_socket_module_raises(
        pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.close()
    with pytest.raises(OSError) as ours:
        native.Sock(a.fileno()).send(b"late")
    with pytest.raises(OSError) as theirs:
        a.send(b"late")
    assert type(ours.value) is type(theirs.value)
    assert ours.value.errno == theirs.value.errno == errno.EPIPE


def test_bad_arguments_are_refused_not_trusted() -> None:
    with pytest.raises(ValueError):
        native.Sock(-1)
    with pytest.raises(OverflowError):
        native.Sock(1 << 70)
    unused = os.sysconf("SC_OPEN_MAX") + 10  # above the limit: never an open descriptor
    with pytest.raises(OSError) as err:
        native.Sock(unused).recv(10)
    assert err.value.errno == errno.EBADF
    a, b = socket.socketpair()
    with a, b, pytest.raises(ValueError):
        native.Sock(a.fileno()).recv(-1)


def test_a_closed_sock_forgets_its_descriptor_before_the_number_is_reused(
        pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    sock = native.Sock(a.fileno())
    sock.close()
    assert sock.fileno() == -1
    b.sendall(b"for whoever holds the number now")
    for call in (lambda: sock.recv(100), lambda: sock.send(b"x")):
        with pytest.raises(OSError) as err:
            call()
        assert err.value.errno == errno.EBADF
    assert a.recv(100) == b"for whoever holds the number now"  # nothing was taken


def test_reads_small_and_large_return_all_that_arrived_in_one_call(
        pair: tuple[socket.socket, socket.socket]) -> None:
    """A small read goes onto the stack (4 KiB) and a read that fills it fetches the rest
    at once: whichever way a read goes, one call returns what has arrived, up to the size
    asked, as socket.recv does (a connection switches between the two ways)."""
    a, b = pair
    sock = native.Sock(a.fileno())
    for size in (40, 4095, 4096, 4097, 16500, 100, 65536, 4096, 80000, 7, 5000):
        payload = os.urandom(size)
        b.sendall(payload)
        first = sock.recv(65536)
        assert first == payload[:65536], size
        rest = payload[65536:]
        assert (sock.recv(65536) if rest else b"") == rest, size
    with pytest.raises(BlockingIOError):
        sock.recv(65536)
    b.close()
    assert sock.recv(65536) == b""


def test_recv_is_capped_so_a_huge_bufsize_allocates_nothing_huge(
        pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.sendall(b"small")
    assert native.Sock(a.fileno()).recv(1 << 40) == b"small"


def test_epollctl_registers_and_modifies_as_select_epoll_does(
        pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    ep = select.epoll()
    ctl = native.EpollCtl(ep.fileno())
    try:
        ctl.register(a.fileno(), select.EPOLLIN | select.EPOLLONESHOT)
        assert ep.poll(0) == []
        b.send(b"!")
        assert ep.poll(1) == [(a.fileno(), select.EPOLLIN)]
        assert ep.poll(0) == []  # one-shot: disarmed until modified
        ctl.modify(a.fileno(), select.EPOLLIN | select.EPOLLONESHOT)
        assert ep.poll(1) == [(a.fileno(), select.EPOLLIN)]
        ctl.modify(a.fileno(), select.EPOLLOUT | select.EPOLLONESHOT)
        assert ep.poll(1) == [(a.fileno(), select.EPOLLOUT)]
        with pytest.raises(FileExistsError):
            ctl.register(a.fileno(), select.EPOLLIN)
        with pytest.raises(FileNotFoundError):
            ctl.modify(b.fileno(), select.EPOLLIN)
        with pytest.raises(TypeError):
            ctl.modify(a.fileno())  # type: ignore[call-arg]
        with pytest.raises(OverflowError):
            ctl.modify(a.fileno(), 1 << 40)
    finally:
        ep.close()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=5000), max_size=20),
       st.lists(st.integers(min_value=1, max_value=70000), min_size=1, max_size=20))
def test_a_stream_written_and_read_in_any_pieces_arrives_whole(
        chunks: list[bytes], reads: list[int]) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        b.setblocking(False)
        writer, reader = native.Sock(a.fileno()), native.Sock(b.fileno())
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                view = view[writer.send(view):]
        a.shutdown(socket.SHUT_WR)
        got = b""
        i = 0
        while True:
            data = reader.recv(reads[i % len(reads)])
            assert len(data) <= reads[i % len(reads)]
            if not data:
                break
            got += data
            i += 1
        assert got == b"".join(chunks)


def memory_grown(rounds: Callable[[int], None], warm: int, n: int) -> int:
    """Bytes still held (tracemalloc) after `n` rounds, once `warm` rounds have filled
    the caches (exception types, small ints, free lists)."""
    import gc
    import tracemalloc

    alone()
    rounds(warm)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    rounds(n)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return grown


def test_no_path_through_the_core_leaks(pair: tuple[socket.socket, socket.socket]) -> None:
    """Every return and error path, many times over: memory traced by tracemalloc (the
    bytes objects recv makes, the exceptions) must not grow with the count."""

    a, b = pair
    sock, ctl = native.Sock(a.fileno()), native.EpollCtl(a.fileno())  # not an epoll fd
    unused = native.Sock(os.sysconf("SC_OPEN_MAX") + 10)

    def rounds(n: int) -> None:
        for _ in range(n):
            b.send(b"0123456789")
            sock.recv(4)  # resized down
            sock.recv(65536)  # the rest
            for call in (lambda: sock.recv(10), lambda: unused.recv(10),  # EAGAIN, EBADF
                         lambda: unused.send(b"x"), lambda: sock.send("str"),
                         lambda: sock.recv(-1), lambda: ctl.modify(b.fileno(), 1)):
                with pytest.raises((OSError, TypeError, ValueError)):
                    call()
            sock.recv(0)
            sock.send(memoryview(b"abc")[1:])
            b.recv(10)

    grown = memory_grown(rounds, 200, 5000)
    assert grown < 64 * 1024, f"{grown} bytes still held after 5,000 rounds"


# -- accept and close_socket: a new connection without releasing the GIL ----------------

LISTENERS = ["tcp4", "tcp6", "unix"]


@pytest.fixture(params=LISTENERS)
def listener(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[socket.socket]:
    kind = request.param
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(tmp_path) + "/s")  # type: ignore[operator]
    else:
        family, host = ((socket.AF_INET, "127.0.0.1") if kind == "tcp4"
                        else (socket.AF_INET6, "::1"))
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.bind((host, 0))
        except OSError as exc:
            sock.close()
            pytest.skip(f"no {kind} loopback here: {exc}")
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def connect_to(listener: socket.socket) -> socket.socket:
    client = socket.socket(listener.family, socket.SOCK_STREAM)
    client.connect(listener.getsockname())
    return client


def test_accept_gives_what_socket_accept_gives_and_a_nonblocking_descriptor(
        listener: socket.socket) -> None:
    from prefork import engine

    first, second = connect_to(listener), connect_to(listener)
    theirs = engine.accept_python(listener)
    ours = native.accept(listener)
    assert theirs is not None and ours is not None
    (their_sock, their_peer), (our_sock, our_peer) = theirs, ours
    try:
        # The peer as socket.accept() gives it, each for its own client.
        expected = first.getsockname() if listener.family != socket.AF_UNIX else ""
        assert their_peer == ((str(expected[0]), str(expected[1])) if expected else ("", ""))
        expected = second.getsockname() if listener.family != socket.AF_UNIX else ""
        assert our_peer == ((str(expected[0]), str(expected[1])) if expected else ("", ""))
        assert our_sock.family == their_sock.family == listener.family
        assert our_sock.gettimeout() == 0.0  # Connection makes no ioctl
        our_sock.setblocking(False)  # nothing to do
        with pytest.raises(ValueError):
            our_sock.setblocking(True)
        fd = our_sock.fileno()
        assert not os.get_blocking(fd)  # the descriptor is non-blocking
        assert not os.get_inheritable(fd)  # close-on-exec, as socket.accept
        assert os.fstat(fd).st_mode & 0o170000 == 0o140000  # a socket
        second.sendall(b"ping")
        assert select.select([fd], [], [], 5)[0]
        assert our_sock.recv(10) == b"ping"
        with pytest.raises(BlockingIOError):
            our_sock.recv(10)
        # shutdown as socket.shutdown: the peer reads the end of the stream.
        our_sock.shutdown(socket.SHUT_WR)
        assert select.select([second], [], [], 5)[0]
        assert second.recv(10) == b""
    finally:
        for sock in (first, second, their_sock):
            sock.close()
        our_sock.close()
    # The Sock owned the descriptor: close() closed it, and it forgets the number.
    assert our_sock.fileno() == -1
    with pytest.raises(OSError) as gone:
        os.fstat(fd)
    assert gone.value.errno == errno.EBADF
    with pytest.raises(OSError) as late:
        our_sock.shutdown(socket.SHUT_RDWR)
    assert late.value.errno == errno.EBADF


@pytest.mark.parametrize("peer", [("127.0.0.1", 1), ("127.1.2.3", 9), ("127.0.0.10", 80),
                                  ("127.200.100.50", 12345), ("127.0.0.1", 65535),
                                  ("127.255.255.254", 1024)])
def test_accept_formats_every_ipv4_peer_as_socket_accept(peer: tuple[str, int]) -> None:
    """Addresses and ports of each length (the IPv4 peer is formatted without
    getnameinfo): as str() of socket.accept()'s address tuple."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        for accept in (native.accept, lambda lst: lst.accept()):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                client.bind(peer)
            except OSError as exc:
                client.close()
                pytest.skip(f"cannot bind a client to {peer}: {exc}")
            client.connect(listener.getsockname())
            select.select([listener], [], [], 5)
            got = accept(listener)
            assert got is not None
            sock, addr = got
            assert (str(addr[0]), str(addr[1])) == (peer[0], str(peer[1]))
            sock.close()
            client.close()


def test_an_accepted_sock_dropped_without_close_closes_its_descriptor(
        listener: socket.socket) -> None:
    client = connect_to(listener)
    accepted = native.accept(listener)
    assert accepted is not None
    fd = accepted[0].fileno()
    os.fstat(fd)
    del accepted  # the last reference: its descriptor goes with it
    with pytest.raises(OSError) as gone:
        os.fstat(fd)
    assert gone.value.errno == errno.EBADF
    assert client.recv(10) == b""  # the client sees the connection end
    client.close()


def test_an_accepted_sock_cannot_be_pointed_at_another_descriptor(
        listener: socket.socket, pair: tuple[socket.socket, socket.socket]) -> None:
    client = connect_to(listener)
    accepted = native.accept(listener)
    assert accepted is not None
    sock, _peer = accepted
    with pytest.raises(TypeError):
        sock.__init__(pair[0].fileno())  # type: ignore[misc]
    assert sock.family == listener.family
    sock.close()
    client.close()
    assert native.Sock(pair[0].fileno()).family == -1  # not accepted: unknown


def test_accept_with_nothing_waiting_is_none_where_socket_accept_raises(
        listener: socket.socket) -> None:
    from prefork import engine

    with pytest.raises(BlockingIOError):
        listener.accept()
    assert native.accept(listener) is None
    assert native.accept(listener.fileno()) is None
    assert engine.accept_python(listener) is None


def test_accept_on_what_is_not_a_listener_is_the_socket_modules_oserror(
        pair: tuple[socket.socket, socket.socket]) -> None:
    a, _b = pair
    with pytest.raises(OSError) as theirs:
        a.accept()
    with pytest.raises(OSError) as ours:
        native.accept(a.fileno())
    assert ours.value.errno == theirs.value.errno == errno.EINVAL
    for bad in (-1, "3", 2**40):
        with pytest.raises((OSError, TypeError, ValueError, OverflowError)):
            native.accept(bad)  # type: ignore[arg-type]


def test_close_socket_closes_the_descriptor_and_the_object_knows(
        pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    fd = a.fileno()
    native.close_socket(a)
    assert a.fileno() == -1 and a._closed  # type: ignore[attr-defined]
    with pytest.raises(OSError) as gone:
        os.fstat(fd)
    assert gone.value.errno == errno.EBADF
    assert b.recv(10) == b""  # the peer sees the end of the stream
    native.close_socket(a)  # as socket.close(): a second time does nothing
    a.close()


def test_close_socket_closes_an_accepted_sock(listener: socket.socket) -> None:
    client = connect_to(listener)
    accepted = native.accept(listener)
    assert accepted is not None
    sock, _peer = accepted
    fd = sock.fileno()
    native.close_socket(sock)
    assert sock.fileno() == -1
    with pytest.raises(OSError):
        os.fstat(fd)
    assert client.recv(10) == b""
    native.close_socket(sock)  # a second time does nothing
    client.close()


def test_accept_and_close_socket_leak_nothing(listener: socket.socket) -> None:
    """Each path many times: descriptors and traced memory do not grow."""

    def rounds(n: int) -> None:
        for i in range(n):
            client = connect_to(listener)
            accepted = native.accept(listener)
            assert accepted is not None
            if i % 2:
                native.close_socket(accepted[0])
            del accepted  # every other one closed by its last reference
            client.close()
            assert native.accept(listener.fileno()) is None

    fds = len(os.listdir("/proc/self/fd"))
    grown = memory_grown(rounds, 100, 2000)
    assert len(os.listdir("/proc/self/fd")) == fds
    assert grown < 64 * 1024, f"{grown} bytes still held after 2,000 rounds"
