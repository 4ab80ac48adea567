"""Listening sockets: bind TCP (IPv4/IPv6), UNIX, or inherited descriptors. Nothing else.

Called by the master before it forks, so every worker inherits the same listeners.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
from dataclasses import dataclass

log = logging.getLogger(__name__)


class BindError(Exception):
    """An address could not be listened on; the message says which and why."""


@dataclass(slots=True)
class Listener:
    sock: socket.socket
    address: str  # as configured: "127.0.0.1:8000", "[::1]:8000", "unix:/run/x.sock"
    path: str | None = None  # the socket file we created, removed by close()

    @property
    def is_unix(self) -> bool:
        return self.sock.family == socket.AF_UNIX

    def url(self) -> str:
        """Where clients reach this listener, with the real port when 0 was asked for."""
        if self.is_unix:
            return f"unix:{self.sock.getsockname()}"
        host, port = self.sock.getsockname()[:2]
        if self.sock.family == socket.AF_INET6:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    def server_name_port(self) -> tuple[str, str]:
        """SERVER_NAME and SERVER_PORT for the WSGI environ."""
        if self.is_unix:
            return "localhost", "80"
        host, port = self.sock.getsockname()[:2]
        return str(host), str(port)

    def close(self) -> None:
        """Close for good (the master at exit): also remove a socket file we created."""
        self.sock.close()
        if self.path:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def set_defer_accept(listeners: list[Listener], on: bool) -> None:
    """TCP_DEFER_ACCEPT on every TCP listener (also inherited ones): accept() only once
    the client has sent something. After ~1 s the kernel hands a silent one over anyway."""
    option = getattr(socket, "TCP_DEFER_ACCEPT", None)
    if option is None:  # not Linux
        return
    for listener in listeners:
        if listener.sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                listener.sock.setsockopt(socket.IPPROTO_TCP, option, 1 if on else 0)
            except OSError as exc:
                log.warning("cannot set TCP_DEFER_ACCEPT on %s: %s", listener.address,
                            exc.strerror)


def parse_host_port(address: str) -> tuple[socket.AddressFamily, str, int]:
    host, _, port_text = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        return socket.AF_INET6, host[1:-1], int(port_text)
    if not host:
        host = "0.0.0.0"
    infos = socket.getaddrinfo(host, int(port_text), type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    family = infos[0][0]
    return family, host, int(port_text)


def bind_tcp(address: str, backlog: int) -> socket.socket:
    try:
        family, host, port = parse_host_port(address)
    except socket.gaierror as exc:
        raise BindError(f"cannot resolve {address!r}: {exc}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Inherited by accepted sockets on Linux: no per-connection setsockopt needed.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on {address}: {exc.strerror or exc}") from None
    return sock


def _remove_stale_unix_socket(path: str) -> None:
    """Unlink `path` only if it is a socket that nobody is listening on."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise BindError(f"cannot listen on unix:{path}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        log.info("removing stale socket file %s", path)
        os.unlink(path)
        return
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise BindError(f"cannot check unix:{path}: {exc.strerror or exc}") from None
        return
    finally:
        probe.close()
    raise BindError(f"cannot listen on unix:{path}: another server is listening there")


def _ids(owner: str, group: str) -> tuple[int, int]:
    """(uid, gid) from names or numbers; -1 leaves one unchanged."""
    import grp
    import pwd

    try:
        uid = -1 if not owner else int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid
        gid = -1 if not group else int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise BindError(f"unknown unix_socket_owner/group: {exc}") from None
    return uid, gid


def bind_unix(path: str, backlog: int, mode: int, owner: str = "",
              group: str = "") -> socket.socket:
    uid, gid = _ids(owner, group)
    _remove_stale_unix_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o777 & ~mode)  # the file is never visible with wider permissions
    try:
        sock.bind(path)
        if uid != -1 or gid != -1:
            os.chown(path, uid, gid)
        os.chmod(path, mode)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on unix:{path}: {exc.strerror or exc}") from None
    finally:
        os.umask(old_umask)
    return sock


def bind_all(addresses: tuple[str, ...], backlog: int, unix_mode: int,
             inherited: list[int] | None = None, unix_owner: str = "",
             unix_group: str = "") -> list[Listener]:
    """Listen on every address; with `inherited` descriptors (a SIGUSR2 upgrade), adopt
    those instead, in the same order as the addresses."""
    listeners: list[Listener] = []
    if inherited:
        if len(inherited) != len(addresses):
            raise BindError(f"{len(inherited)} inherited sockets for {len(addresses)} addresses")
        for fd, address in zip(inherited, addresses, strict=True):
            sock = socket.socket(fileno=fd)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            path = address[5:] if address.startswith("unix:") else None
            listeners.append(Listener(sock, address, path))
        return listeners
    try:
        for address in addresses:
            path = None
            if address.startswith("unix:"):
                path = address[5:]
                sock = bind_unix(path, backlog, unix_mode, unix_owner, unix_group)
            elif address.startswith("fd://"):
                sock = socket.socket(fileno=int(address[5:]))
            else:
                sock = bind_tcp(address, backlog)
            sock.setblocking(False)
            listeners.append(Listener(sock, address, path))
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    return listeners
