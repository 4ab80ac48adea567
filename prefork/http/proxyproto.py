"""The PROXY protocol header (HAProxy's spec, versions 1 and 2): bytes in, address out.

A load balancer that speaks it sends one header before the HTTP bytes, naming the real
client. `parse()` is given what has arrived so far and answers:

  None                      not complete yet (feed more)
  (consumed, (addr, port))  a header of `consumed` bytes naming the client
  (consumed, None)          a valid header without an address (v1 UNKNOWN, v2 LOCAL):
                            keep the connection's own peer address

and raises BadRequest for anything malformed, or for a version the mode does not allow.
"""

from __future__ import annotations

import ipaddress
import struct

from prefork.errors import BadRequest

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107  # "PROXY TCP6 <39> <39> <5> <5>\r\n"
Result = tuple[int, tuple[str, str] | None] | None


def parse(data: bytes, mode: str) -> Result:
    """`mode` is "v1", "v2" or "auto"."""
    if data[:1] == b"P" and mode in ("v1", "auto"):
        return _v1(data)
    if data[:1] == b"\r" and mode in ("v2", "auto"):
        return _v2(data)
    if len(data) < 6 and (b"PROXY "[:len(data)] == data or V2_SIGNATURE[:len(data)] == data):
        return None
    raise BadRequest(f"expected a PROXY protocol {mode} header")


def _v1(data: bytes) -> Result:
    if not data.startswith(b"PROXY "[:len(data)]):
        raise BadRequest("not a PROXY v1 header")
    end = data.find(b"\r\n", 0, V1_MAX + 1)
    if end < 0:
        if len(data) >= V1_MAX:
            raise BadRequest("PROXY v1 header too long")
        return None
    parts = data[:end].decode("ascii", "replace").split(" ")
    if parts[:2] == ["PROXY", "UNKNOWN"]:  # the proxy could not tell (anything may follow)
        return end + 2, None
    if len(parts) != 6 or parts[0] != "PROXY" or parts[1] not in ("TCP4", "TCP6"):
        raise BadRequest("malformed PROXY v1 header")
    _, family, src, _dst, sport, _dport = parts
    try:
        ip = ipaddress.ip_address(src)
    except ValueError:
        raise BadRequest("bad source address in PROXY v1 header") from None
    if (ip.version == 4) != (family == "TCP4") or not sport.isdigit() or int(sport) > 65535:
        raise BadRequest("malformed PROXY v1 header")
    return end + 2, (str(ip), sport)


def _v2(data: bytes) -> Result:
    if len(data) < 16:
        if not V2_SIGNATURE.startswith(data[:12]):
            raise BadRequest("not a PROXY v2 header")
        return None
    if not data.startswith(V2_SIGNATURE):
        raise BadRequest("not a PROXY v2 header")
    ver_cmd, family, length = struct.unpack_from("!BBH", data, 12)
    if ver_cmd >> 4 != 2 or ver_cmd & 0xF not in (0, 1):
        raise BadRequest("unsupported PROXY v2 version or command")
    total = 16 + length
    if len(data) < total:
        return None
    if ver_cmd & 0xF == 0:  # LOCAL: a health check from the proxy itself
        return total, None
    body = data[16:total]
    if family == 0x11 and length >= 12:  # TCP over IPv4
        src = ipaddress.IPv4Address(body[:4])
        (sport,) = struct.unpack_from("!H", body, 8)
        return total, (str(src), str(sport))
    if family == 0x21 and length >= 36:  # TCP over IPv6
        src6 = ipaddress.IPv6Address(body[:16])
        (sport,) = struct.unpack_from("!H", body, 32)
        return total, (str(src6), str(sport))
    if family & 0xF0 in (0x00, 0x30):  # UNSPEC, or AF_UNIX: no IP to report
        return total, None
    raise BadRequest("malformed PROXY v2 addresses")
