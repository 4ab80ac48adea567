"""Errors that carry their own meaning.

`HTTPError` subclasses carry the HTTP status they are answered with, so the code that
catches one never needs a table mapping exception types to statuses. `ConfigError`
names the setting, the value given and what is allowed. Used by every process.
"""

from __future__ import annotations


def as_typed(value: object) -> str:
    """A value as the user wrote it: text quoted, lists comma-separated (no Python
    brackets), whole floats without a decimal point, long values cut."""
    if isinstance(value, list | tuple):
        text = repr(",".join(str(v) for v in value))
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    else:
        text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


class ConfigError(Exception):
    """A setting's value is unusable; the message names key, value and what is allowed."""

    def __init__(self, key: str, value: object, allowed: str, source: str = "") -> None:
        where = f" (from {source})" if source else ""
        super().__init__(f"setting {key!r}{where}: got {as_typed(value)}; {allowed}")
        self.key = key
        self.value = value
        self.allowed = allowed


class AppLoadError(Exception):
    """The WSGI application could not be imported or built."""


class ClientGone(Exception):
    """The client closed or reset the connection, stopped reading for send_timeout, or
    its request was given up (request_timeout): no more response bytes can go out."""


class HTTPError(Exception):
    """A request that cannot be served; answered with `status` and the connection closed."""

    status = 400
    reason = "Bad Request"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.reason)
        self.detail = detail or self.reason


class BadRequest(HTTPError):
    status, reason = 400, "Bad Request"


class RequestTimeout(HTTPError):
    status, reason = 408, "Request Timeout"


class PayloadTooLarge(HTTPError):
    status, reason = 413, "Content Too Large"


class URITooLong(HTTPError):
    status, reason = 414, "URI Too Long"


class HeaderFieldsTooLarge(HTTPError):
    status, reason = 431, "Request Header Fields Too Large"


class InternalServerError(HTTPError):
    status, reason = 500, "Internal Server Error"


class NotImplementedByServer(HTTPError):
    status, reason = 501, "Not Implemented"


class GatewayTimeout(HTTPError):
    status, reason = 504, "Gateway Timeout"


class VersionNotSupported(HTTPError):
    status, reason = 505, "HTTP Version Not Supported"
