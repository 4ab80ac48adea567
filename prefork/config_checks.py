"""What each setting's value may be: the checks config.py's declarations name, and the
normalisations made before a value is checked (gunicorn's forms: HOST alone, :PORT,
comma lists, 0 for "no limit"). Pure functions, read wherever a config is resolved.
"""

from __future__ import annotations

import re
from typing import Any

from prefork.errors import ConfigError

_BIND_RE = re.compile(r"^(unix:.+|\[[0-9a-fA-F:.%\w]+\]:\d{1,5}|[^:\[\]\s]*:\d{1,5}|fd://\d+)$")


# Settings where 0 means "no limit" (gunicorn's meaning): prefork's largest value instead.
ZERO_IS_UNLIMITED = {"limit_request_line": 1 << 20, "limit_request_fields": 10000,
                     "limit_request_field_size": 1 << 20}
# Lists whose command-line values may be comma-separated too, as gunicorn's are.
COMMA_LISTS = frozenset({"forwarded_allow_ips", "proxy_allow_ips", "pythonpath"})


def bind_address(value: str) -> str:
    """gunicorn's short forms of an address: HOST alone is HOST:8000 (gunicorn's default
    port), :PORT is every interface."""
    if value.startswith(("unix:", "fd://")) or _BIND_RE.match(value):
        return value
    if (value.startswith("[") and value.endswith("]")) or re.match(r"^[\w.-]+$", value):
        return value + ":8000"
    return value


def check_bind(values: tuple[str, ...]) -> str | None:
    if not values:
        return "at least one address is required"
    for v in values:
        if not _BIND_RE.match(v):
            return "each address is HOST:PORT, [IPV6]:PORT, unix:/PATH or fd://N"
        if not v.startswith(("unix:", "fd://")) and int(v.rsplit(":", 1)[1]) > 65535:
            return "a port is at most 65535"
    return None


def check_app(value: str | None) -> str | None:
    if value is None:
        return None
    if not re.match(r"^[\w.]+(:[\w.]+(\(\))?)?$", value):
        return "an app is MODULE:NAME or MODULE:FACTORY() (for example myproject.wsgi:application)"
    return None


def check_json_object(value: str) -> str | None:
    """Empty, or JSON text of an object (a dictConfig dict)."""
    if not value:
        return None
    import json

    try:
        return None if isinstance(json.loads(value), dict) else "a JSON object is expected"
    except ValueError as exc:
        return f"not valid JSON: {exc}"


def check_log_format(value: str) -> str | None:
    from prefork.accesslog import compile_format

    try:
        compile_format(value)
    except ConfigError as exc:
        return exc.allowed
    return None


def normalise(name: str, raw: Any) -> Any:
    """A raw value in the form its check expects (gunicorn's forms accepted)."""
    if name == "bind" and isinstance(raw, list | tuple):
        raw = [bind_address(v) if isinstance(v, str) else v for v in raw]
    elif name == "bind" and isinstance(raw, str):
        raw = ",".join(bind_address(v.strip()) for v in raw.split(","))
    elif name in ZERO_IS_UNLIMITED and raw in (0, "0"):
        raw = ZERO_IS_UNLIMITED[name]
    elif name in COMMA_LISTS and isinstance(raw, list | tuple):  # gunicorn's "a,b" flags
        raw = [p.strip() for v in raw for p in (v.split(",") if isinstance(v, str) else [v])
               if not isinstance(p, str) or p.strip()]
    return raw
