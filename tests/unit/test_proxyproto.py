"""PROXY protocol v1/v2 headers: parsed whole and in pieces; malformed ones refused."""

from __future__ import annotations

import socket
import struct

import pytest

from prefork.errors import BadRequest
from prefork.http.proxyproto import V2_SIGNATURE, parse


def v2(family: int, addresses: bytes, command: int = 1) -> bytes:
    return V2_SIGNATURE + struct.pack("!BBH", 0x20 | command, family, len(addresses)) + addresses


V2_TCP4 = v2(0x11, socket.inet_aton("203.0.113.7") + socket.inet_aton("10.0.0.1")
             + struct.pack("!HH", 51234, 443))
V2_TCP6 = v2(0x21, socket.inet_pton(socket.AF_INET6, "2001:db8::7")
             + socket.inet_pton(socket.AF_INET6, "2001:db8::1") + struct.pack("!HH", 4711, 443)
             + b"\x04\x00\x01x")  # plus a TLV, ignored


@pytest.mark.parametrize("header, mode, client", [
    (b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n", "v1", ("203.0.113.7", "51234")),
    (b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 443\r\n", "v1", ("2001:db8::7", "4711")),
    (b"PROXY UNKNOWN\r\n", "v1", None),
    (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", "auto", None),
    (V2_TCP4, "v2", ("203.0.113.7", "51234")),
    (V2_TCP6, "auto", ("2001:db8::7", "4711")),
    (v2(0x00, b"", command=0), "v2", None),  # LOCAL
])
def test_headers(header: bytes, mode: str, client: tuple[str, str] | None) -> None:
    data = header + b"GET / HTTP/1.1\r\n"
    assert parse(data, mode) == (len(header), client)
    for cut in range(len(header)):  # incomplete: asks for more, never guesses
        assert parse(header[:cut], mode) is None


@pytest.mark.parametrize("data, mode", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "v1"),
    (b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n", "v2"),
    (V2_TCP4, "v1"),
    (b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n", "v1"),
    (b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n", "v1"),
    (b"PROXY TCP4 1.2.3.4 10.0.0.1 99999 2\r\n", "v1"),
    (b"PROXY TCP4 1.2.3.4\r\n", "v1"),
    (b"PROXY " + b"x" * 200, "v1"),
    (V2_SIGNATURE + b"\x31\x11\x00\x00", "v2"),
    (V2_SIGNATURE + b"\x21\x11\x00\x04abcd", "v2"),
])
def test_malformed(data: bytes, mode: str) -> None:
    with pytest.raises(BadRequest):
        parse(data, mode)
