"""The native engine's per-field code: the compiled core's, bound to the references'.

prefork._native has in C the callbacks llhttp makes for each field of a request head
(_native_http.c: HeadFields, twin of prefork.http.fields.HeadFields), the per-field
loops of the environ and of the response head (_native_wsgi.c), and the exchange: its
state as a C type, with start_response and run (the app's single-item response) as twins
of wsgi.Exchange's (_native_exchange.c). They take the references' caches, error classes
and fallbacks as their first arguments (or from bind_exchange, once); this module binds
them, so that both engines share one header-name cache and one set of rules, and any
case the C code does not decide itself is decided by the Python reference. Imported
only when the compiled core is (engine_choice.choose); the objects here are immutable and
shared by all pool threads.
"""

from __future__ import annotations

import collections
import threading
from functools import partial
from typing import Any

import httptools

from prefork import _native, connection, connstate, engine, output, proxy, request_cycle, seam, wsgi
from prefork.errors import BadRequest, HeaderFieldsTooLarge, URITooLong
from prefork.http import parser, request, response
from prefork.http.fields import FORBIDDEN_TRAILERS
from prefork.http.parser import FieldsFactory

# What the C files use of the Python classes, declared once in _native_seam.h: the
# __slots__ fields they read and write and the enum members they use, bound first; the
# methods they call, checked to exist and be marked @native_calls (the worker's, by
# bind_worker). A renamed field, member or method fails here, named.
_native.bind_seam(connection.Connection, parser.RequestParser, parser._Callbacks,
                  output.Output, connstate.ServerContext, engine.Engine, parser.ParserLimits,
                  request.Request, request.Body, connstate.State, connstate.Next,
                  connstate.Ending, connstate.ProxyHeader, connstate.Watch)
SEAM = _native.seam()
_CLASSES: dict[str, type] = {"Connection": connection.Connection,
                             "RequestParser": parser.RequestParser, "Output": output.Output,
                             "Trust": proxy.Trust, "Exchange": wsgi.Exchange}
seam.check(SEAM["calls"], _CLASSES)
seam.check(SEAM["references"], _CLASSES)

_native.bind_exchange(response._STATUS_CODES, wsgi.Exchange.start_response, response._NAMES,
                      response.header_name, wsgi._SERVER_FIELDS, threading.Lock)

_REFERENCE = wsgi.Exchange

# HeadFields.on_headers_complete ends a common head in C, setting these classes' fields
# (by their __slots__ offsets); any other head goes to the parser's own method. And
# HeadFields.on_message_complete ends a request, and on_body takes a piece of a body.
_native.bind_parser(parser.RequestParser, request.Request, request.Body,
                    parser.RequestParser.on_headers_complete,
                    parser.RequestParser.on_message_complete, parser.RequestParser.on_body)


class NativeExchange(_native.Exchange):
    """wsgi.Exchange with its state in C fields, start_response and run in C for the
    common cases (_native_exchange.c), the response head's loops in C; everything else
    is the reference's own code, which works on these fields by their names. The same
    results, by test."""

    __slots__ = ()
    fields = staticmethod(partial(_native.response_fields, response._NAMES,
                                  response.header_name))
    encode = staticmethod(partial(_native.encode_head, response.encode_head))
    time_out = _REFERENCE.time_out
    _head = _REFERENCE._head
    _frame = _REFERENCE._frame
    write = _REFERENCE.write
    finish = _REFERENCE.finish
    send_file = _REFERENCE.send_file
    respond = _REFERENCE.respond


# Connection.serve_one's twin reads and writes these classes' fields by their offsets;
# a request it does not serve itself (hooks, static files, timing) goes to the reference.
_native.bind_connection(connection.Connection, connstate.ServerContext, engine.Engine,
                        request.Request, request.Body, connection.Connection.serve_one,
                        proxy.apply_forwarded, proxy.FORWARDED_KEYS)

# Connection.on_ready's twin, for a PARKED connection: the read, the parser fed, the
# requests served (serve_one), the connection settled; any other state is the reference's.
_native.bind_loop(connection.Connection.on_ready, connection.Connection.settle,
                  parser.RequestParser, output.Output, request_cycle.RECV_BYTES,
                  parser.FEED_ERRORS)

# A new connection's objects, made in C (Connection.__init__'s twin, with the parser and
# the output it makes), and its close (Connection.close's): these classes' fields.
_native.bind_adopt(connection.Connection, parser.RequestParser, parser._Callbacks,
                   output.Output, connstate.ServerContext, engine.Engine,
                   parser.ParserLimits, collections.deque, httptools.HttpRequestParser,
                   parser.LENIENCIES, connection.Connection.close)



def bind_worker(worker: type) -> None:
    """The worker's calls for each request (_native.WorkerCalls) and the accept twin,
    which stands in for `worker._accept` (Worker._accept, unless replaced): each worker
    hands its class over as it starts (engine.Engine.bind_worker), this module not
    importing the worker's, which imports the engine's. Its methods the C calls are
    checked here, as the others are at import."""
    seam.check(SEAM["calls"], {"Worker": worker})
    _native.bind_worker(_native.accept, _native.new_connection, worker)


# A request's environ: made in C for an origin-form target, else by the reference.
build_environ: wsgi.BuildEnviron = partial(
    _native.build_environ, wsgi.build_environ, wsgi._ENV_KEYS, wsgi.SINGLETON_KEYS,
    wsgi._environ_key)

# llhttp's callbacks for a head (the reference: prefork.http.fields.HeadFields).
head_fields: FieldsFactory = partial(_native.HeadFields, FORBIDDEN_TRAILERS, parser._GOOD_HOSTS,
                                     BadRequest, HeaderFieldsTooLarge, URITooLong)


def environ_base(base: dict[str, Any]) -> dict[str, Any]:
    """A listener's base environ with room for a request's keys (32: the server's own and
    two dozen header fields), so that build_environ's copy of it does not grow."""
    return _native.roomy_dict(base, 32)
