"""The native engine's WSGI adapter: prefork/wsgi.py's, with the compiled core's loops.

prefork._native (_native_wsgi.c) has the per-field loops of the environ and of the
response head in C. They take the reference's caches and fallbacks as their first
arguments; this module binds them, so that both engines share one header-name cache and
one set of rules, and any case the C code does not decide itself is decided by the
Python reference. Imported only when the compiled core is (engine.choose); the objects
here are immutable and shared by all pool threads.
"""

from __future__ import annotations

from functools import partial

from prefork import _native, wsgi
from prefork.http import response


class NativeExchange(wsgi.Exchange):
    """wsgi.Exchange with the response head's loops in C (same results, by test)."""

    __slots__ = ()
    fields = staticmethod(partial(_native.response_fields, response._NAMES,
                                  response.header_name))
    encode = staticmethod(partial(_native.encode_head, response.encode_head))


environ_fields: wsgi.EnvironFields = partial(
    _native.environ_fields, wsgi._ENV_KEYS, wsgi.SINGLETON_KEYS, wsgi._environ_key)
