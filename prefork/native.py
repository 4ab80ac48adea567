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
from collections.abc import Callable
from functools import partial
from typing import Any

import httptools

from prefork import _native, connection, connstate, engine, output, proxy, wsgi
from prefork.errors import BadRequest, HeaderFieldsTooLarge, URITooLong
from prefork.http import parser, request, response
from prefork.http.fields import FORBIDDEN_TRAILERS
from prefork.http.parser import FieldsFactory

# The classes whose __slots__ fields the C files read and write (declared once, in
# _native_seam.h): bound first; a renamed field fails here, named.
_native.bind_seam(connection.Connection, parser.RequestParser, parser._Callbacks,
                  output.Output, connstate.ServerContext, engine.Engine, parser.ParserLimits,
                  request.Request, request.Body)

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
                  parser.RequestParser, output.Output,
                  (connstate.PARKED, connstate.ACTIVE, connstate.WRITING, connstate.KEEP,
                   connstate.END_CLEAN, connstate.END_LINGER, connstate.READ,
                   connstate.WRITE, connstate.CLOSE, connstate.PROXY_NONE),
                  connection.RECV_BYTES, parser.FEED_ERRORS)

# A new connection's objects, made in C (Connection.__init__'s twin, with the parser and
# the output it makes), and its close (Connection.close's): these classes' fields.
_native.bind_adopt(connection.Connection, parser.RequestParser, parser._Callbacks,
                   output.Output, connstate.ServerContext, engine.Engine,
                   parser.ParserLimits, collections.deque, httptools.HttpRequestParser,
                   parser.LENIENCIES, connection.Connection.close,
                   (connstate.PARKED, connstate.KEEP, connstate.PROXY_NONE,
                    connstate.CLOSED, connstate.Watch.NOTHING))



def bind_worker(accept: Callable[..., Any]) -> None:
    """The worker's calls for each request (_native.WorkerCalls): serve parks these
    connections (the epoll's masks: connstate.Watch), follow claims them (unless
    closed), and accept stands in for `accept` (Worker._accept), which each worker
    hands over as it starts (engine.Engine.bind_worker): this module does not import
    the worker's, which imports the engine's."""
    _native.bind_worker(connection.Connection, connstate.CLOSE, connstate.WRITE,
                        connstate.CLOSED, _native.accept, _native.new_connection,
                        accept, tuple(connstate.Watch))



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
