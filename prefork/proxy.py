"""Trusting the proxy, and only the proxy: forwarded headers into the WSGI environ.

Whether a peer is a trusted proxy is decided once per connection (`Trust.peer`), from
`forwarded_allow_ips` (addresses and CIDR ranges; "*" trusts everyone) and, for UNIX
socket listeners, `unix_socket_trusted` (only local processes allowed on the socket file
can connect there: nginx in front over a UNIX socket is the classic set-up).

From a trusted peer, per request (`apply`):
  X-Forwarded-For / Forwarded for=   -> REMOTE_ADDR: the right-most address that is not
                                        itself a trusted proxy (so a client cannot choose
                                        it by sending the header first)
  X-Forwarded-Proto / Forwarded proto= -> wsgi.url_scheme (http or https only)
  X-Forwarded-Host / Forwarded host=   -> HTTP_HOST, SERVER_NAME, SERVER_PORT
  X-Forwarded-Port                     -> SERVER_PORT
  X-Forwarded-Prefix                   -> SCRIPT_NAME
From any other peer these headers are removed from the environ, so an app can never be
fooled by a client that sends them directly. RFC 7239 `Forwarded` wins over the X-
headers when both are present.

Built once per worker; read by pool threads.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Any

from prefork.seam import native_calls

log = logging.getLogger(__name__)

FORWARDED_KEYS = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO",
                  "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX")
_PAIR = re.compile(r'\s*([a-zA-Z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]+)\s*')

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: tuple[str, ...]) -> tuple[bool, tuple[Network, ...]]:
    """(trust everyone, networks); raises ValueError naming a bad entry."""
    if "*" in values:
        return True, ()
    nets = []
    for value in values:
        try:
            nets.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an address or CIDR range") from None
    return False, tuple(nets)


def check_allow_ips(values: tuple[str, ...]) -> str | None:
    try:
        parse_networks(values)
    except ValueError as exc:
        return f"{exc}; use addresses, CIDR ranges (10.0.0.0/8) or *"
    return None


class Trust:
    def __init__(self, allow_ips: tuple[str, ...], unix_trusted: bool, hops: int = 0) -> None:
        self.everyone, self.networks = parse_networks(allow_ips)
        self.unix_trusted = unix_trusted
        self.hops = hops  # 0: skip trusted addresses; N: the N-th address from the right
        self._cache: dict[str, bool] = {}

    def address(self, addr: str) -> bool:
        """Is this address a trusted proxy?"""
        if self.everyone:
            return True
        known = self._cache.get(addr)
        if known is not None:
            return known
        try:
            ip = ipaddress.ip_address(addr.strip("[]").split("%", 1)[0])
        except ValueError:
            result = False
        else:
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            result = any(ip in net for net in self.networks)
        if len(self._cache) < 10000:
            self._cache[addr] = result
        return result

    @native_calls
    def peer(self, remote_addr: str, is_unix: bool) -> bool:
        return self.unix_trusted if is_unix else self.address(remote_addr)


def _forwarded(value: str) -> dict[str, list[str]]:
    """RFC 7239: the for/proto/host of each element, in order (left = first hop)."""
    out: dict[str, list[str]] = {"for": [], "proto": [], "host": []}
    for element in value.split(","):
        for m in _PAIR.finditer(element):
            key, val = m.group(1).lower(), m.group(2)
            if val.startswith('"'):
                val = re.sub(r"\\(.)", r"\1", val[1:-1])
            if key in out:
                out[key].append(val)
    return out


def _node_address(node: str) -> str:
    """A Forwarded for= node ("192.0.2.1:80", "[2001:db8::1]:443", "unknown") -> address."""
    if node.startswith("["):
        return node[1:node.find("]")] if "]" in node else node
    return node.rsplit(":", 1)[0] if node.count(":") == 1 else node


_FORWARDED_KEY_SET = frozenset(FORWARDED_KEYS)


def apply_forwarded(environ: dict[str, Any], trust: Trust, trusted_peer: bool) -> None:
    """What a trusted proxy says about the client, into the environ (REMOTE_ADDR, the
    scheme, host and port, SCRIPT_NAME); from any other peer those headers are dropped."""
    if environ.keys().isdisjoint(_FORWARDED_KEY_SET):
        return  # the common case, proxy or not: nothing to apply or to remove
    if not trusted_peer:
        for key in FORWARDED_KEYS:
            environ.pop(key, None)
        return
    chain, proto, host = _claims(environ)
    if chain:
        environ["REMOTE_ADDR"] = _client(chain, trust)
        environ["REMOTE_PORT"] = ""
    if proto:
        _apply_scheme(environ, proto, bool(host))
    if host:
        _apply_host(environ, host)
    port_header = environ.get("HTTP_X_FORWARDED_PORT")
    if port_header and port_header.strip().isdigit():
        environ["SERVER_PORT"] = port_header.strip()
    prefix = environ.get("HTTP_X_FORWARDED_PREFIX")
    if prefix and prefix.startswith("/"):
        environ["SCRIPT_NAME"] = prefix.rstrip("/") + environ.get("SCRIPT_NAME", "")


def _claims(environ: dict[str, Any]) -> tuple[list[str], str | None, str | None]:
    """(the address chain, the scheme, the host) from Forwarded (RFC 7239), which wins,
    or else the X-Forwarded-* headers."""
    forwarded = environ.get("HTTP_FORWARDED")
    if forwarded:
        parsed = _forwarded(forwarded)
        return ([_node_address(n) for n in parsed["for"]],
                parsed["proto"][-1] if parsed["proto"] else None,
                parsed["host"][-1] if parsed["host"] else None)
    xff = environ.get("HTTP_X_FORWARDED_FOR")
    chain = [a.strip() for a in xff.split(",") if a.strip()] if xff else []
    return chain, environ.get("HTTP_X_FORWARDED_PROTO"), environ.get("HTTP_X_FORWARDED_HOST")


def _client(chain: list[str], trust: Trust) -> str:
    """The client's address in a proxy chain."""
    if trust.hops:
        # Each of our N proxies appended one address: the N-th from the right is the
        # client as the outermost proxy saw it (anything left of it, it may have made up).
        return chain[-min(trust.hops, len(chain))]
    # Right to left: skip our own trusted proxies; the first other hop is the client.
    for addr in reversed(chain):
        if not trust.address(addr):
            return addr
    return chain[0]


def _apply_scheme(environ: dict[str, Any], proto: str, has_host: bool) -> None:
    proto = proto.split(",")[-1].strip().lower()
    if proto in ("http", "https"):
        environ["wsgi.url_scheme"] = proto
        if not has_host and "HTTP_X_FORWARDED_PORT" not in environ:
            environ["SERVER_PORT"] = "443" if proto == "https" else "80"


def _apply_host(environ: dict[str, Any], host: str) -> None:
    host = host.split(",")[-1].strip()
    environ["HTTP_HOST"] = host
    if host.startswith("["):  # an IPv6 literal, maybe with a port
        end = host.find("]")
        name, port = host[1:end], host[end + 2:] if host[end + 1:end + 2] == ":" else ""
    else:
        name, _, port = host.partition(":")
    environ["SERVER_NAME"] = name
    https = environ["wsgi.url_scheme"] == "https"
    environ["SERVER_PORT"] = port if port.isdigit() else ("443" if https else "80")
