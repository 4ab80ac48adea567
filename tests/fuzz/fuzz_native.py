"""Coverage-guided, differential fuzzing of the compiled core (prefork._native) under
AddressSanitizer (atheris; not in CI: a run is minutes long and needs clang).

Build the extension with coverage and ASan into a folder of its own, then run:

    CC=clang CFLAGS="-fsanitize=address,fuzzer-no-link -g -O1" \\
        python setup.py build_ext --build-lib /tmp/native-asan --build-temp /tmp/native-asan-obj
    LD_PRELOAD="$(python -c 'import atheris; print(atheris.path())')/asan_with_fuzzer.so" \\
    ASAN_OPTIONS=detect_leaks=1 NATIVE_SO=/tmp/native-asan/prefork/_native*.so \\
        python tests/fuzz/fuzz_native.py -max_total_time=1800 -rss_limit_mb=4096

Each input is a program of operations on two identical socketpairs: one driven through
prefork._native's Sock and EpollCtl, the other through the socket and select modules
(the reference, what the Python engine calls). Every step must give the same result on
both: the same bytes, the same count, or the same exception type and errno. Operations:
recv of any size (0, small, huge, negative), send of bytes / bytearray / memoryview
slices / a str, the peer shutting or closing, a full socket buffer, epoll register and
modify with any mask, closed or out-of-range descriptors, the connection closed (then
every call must fail as on a closed socket). ASan reports any read or
write outside a buffer and, at exit, any leak.
"""

from __future__ import annotations

import glob
import importlib.machinery
import importlib.util
import os
import select
import socket
import sys
from types import ModuleType

import atheris


def load_native() -> ModuleType:
    """The ASan build named by NATIVE_SO, or the installed one."""
    pattern = os.environ.get("NATIVE_SO")
    if not pattern:
        import prefork._native as native

        return native
    path = sorted(glob.glob(pattern))[0]
    loader = importlib.machinery.ExtensionFileLoader("prefork._native", path)
    spec = importlib.util.spec_from_file_location("prefork._native", path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


native = load_native()


def outcome(fn: object, *args: object) -> tuple[str, object]:
    try:
        return "ok", fn(*args)  # type: ignore[operator]
    except OSError as exc:
        return type(exc).__name__, exc.errno
    except (TypeError, ValueError, OverflowError) as exc:
        return type(exc).__name__, None


class Side:
    """One socketpair and epoll, driven either natively or through the socket module."""

    def __init__(self, use_native: bool) -> None:
        self.a, self.b = socket.socketpair()
        self.a.setblocking(False)
        self.b.setblocking(False)
        self.ep = select.epoll()
        self.use_native = use_native
        self.io = native.Sock(self.a.fileno()) if use_native else self.a
        self.ctl = native.EpollCtl(self.ep.fileno()) if use_native else self.ep

    def close(self) -> None:
        for obj in (self.a, self.b, self.ep):
            obj.close()


def payload(fdp: atheris.FuzzedDataProvider) -> object:
    data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 70000))
    kind = fdp.ConsumeIntInRange(0, 4)
    if kind == 1:
        return bytearray(data)
    if kind == 2:
        start = fdp.ConsumeIntInRange(0, len(data))
        return memoryview(data)[start:start + fdp.ConsumeIntInRange(0, len(data))]
    if kind == 3:
        return data.decode("latin-1")  # a str: TypeError on both
    return data


def step(fdp: atheris.FuzzedDataProvider, sides: tuple[Side, Side]) -> None:
    op = fdp.ConsumeIntInRange(0, 9)
    results = []
    if op == 0:
        size = fdp.PickValueInList([0, 1, 7, 4096, 4097, 65536, 1 << 20, -1])
        results = [outcome(s.io.recv, size) for s in sides]
    elif op == 1:
        data = payload(fdp)
        results = [outcome(s.io.send, data) for s in sides]
    elif op == 2:
        data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 5000))
        results = [outcome(s.b.send, data) for s in sides]
    elif op == 3:
        for s in sides:
            try:
                while s.b.recv(1 << 20):
                    pass
            except OSError:
                pass
    elif op == 4:
        how = fdp.PickValueInList([socket.SHUT_RD, socket.SHUT_WR, socket.SHUT_RDWR])
        results = [outcome(s.b.shutdown, how) for s in sides]
    elif op == 5:
        mask = fdp.ConsumeIntInRange(0, (1 << 32) - 1)
        fd_choice = fdp.ConsumeIntInRange(0, 2)
        register = fdp.ConsumeBool()
        for s in sides:
            fd = (s.a.fileno(), s.b.fileno(), 100000)[fd_choice]
            method = s.ctl.register if register else s.ctl.modify
            results.append(outcome(method, fd, mask))
    elif op == 6:
        results = [outcome(s.ep.poll, 0) for s in sides]
        results = [(kind, len(value) if isinstance(value, list) else value)
                   for kind, value in results]
    elif op == 7:  # the native side alone: what has no counterpart in the socket module
        fd = fdp.PickValueInList([-1, 1 << 31, 1 << 70, 99999, sides[0].a.fileno()])
        kind, _ = outcome(native.Sock, fd)
        assert kind in ("ok", "ValueError", "OverflowError"), kind
        # A huge bufsize is capped (no huge allocation): as a reference recv of the cap.
        results = [outcome(sides[0].io.recv, 1 << 40),
                   outcome(sides[1].io.recv, native.MAX_RECV)]
    elif op == 8:
        for s in sides:
            if s.a.fileno() >= 0:
                s.a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    else:  # the connection closes: from then on both sides fail alike (EBADF)
        for s in sides:
            s.io.close()
            s.a.close()
    if results and results[0] != results[1]:
        raise AssertionError(f"native {results[0]!r} != socket module {results[1]!r} (op {op})")


def test_one(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    sides = (Side(True), Side(False))
    try:
        for _ in range(fdp.ConsumeIntInRange(1, 24)):
            step(fdp, sides)
    finally:
        for s in sides:
            s.close()


def main() -> None:
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
