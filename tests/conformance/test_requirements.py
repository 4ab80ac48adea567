"""The requirement matrix: each MUST / MUST NOT / SHOULD of RFC 9112 §2-§9 and RFC 9110
§5-§10 and §15 that a server can violate, with a test through a real server.

Each test is registered with `@requirement(section, level, text, behaviour)`; the table in
docs/CONFORMANCE.md is generated from these registrations (`python -m
tests.conformance.matrix`) and `test_the_matrix_in_the_docs_is_current` keeps it so.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conformance.matrix import requirement
from tests.server import Server

pytestmark = pytest.mark.timeout(60)


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return ", ".join(values) if values else None

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class Exchange:
    responses: list[Response]
    closed: bool  # the server closed the connection
    raw: bytes


def parse_responses(raw: bytes, no_body: list[bool]) -> list[Response]:
    """Responses in order; no_body[i]: the i-th final response answers a HEAD."""
    out: list[Response] = []
    pos = 0
    while pos < len(raw):
        end = raw.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        lines = raw[pos:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = [(n, v.strip()) for n, _, v in (line.partition(":") for line in lines[1:])]
        resp = Response(status, headers)
        pos = end + 4
        if status < 200:
            continue  # interim: its final response follows
        head_only = len(out) < len(no_body) and no_body[len(out)]
        length = resp.header("Content-Length")
        if head_only or status in (204, 304):
            pass
        elif resp.header("Transfer-Encoding") == "chunked":
            while True:
                line_end = raw.index(b"\r\n", pos)
                size = int(raw[pos:line_end].split(b";")[0], 16)
                pos = line_end + 2
                if size == 0:
                    pos = raw.index(b"\r\n", pos) + 2
                    break
                resp.body += raw[pos:pos + size]
                pos += size + 2
        elif length is not None:
            resp.body = raw[pos:pos + int(length)]
            pos += int(length)
        else:
            resp.body = raw[pos:]
            pos = len(raw)
        out.append(resp)
    return out


@pytest.fixture(scope="module")
def srv() -> Iterator[Server]:
    with Server("tests.apps.conformance:app", "--limit-request-line", "1024",
                "--limit-request-body", "1000", "--keepalive", "2", workers=1,
                threads=4) as server:
        yield server


def talk(srv: Server, data: bytes, no_body: list[bool] | None = None,
         half_close: bool = True, wait_s: float = 5.0) -> Exchange:
    """Send `data`; read until the server closes (or `wait_s` of silence)."""
    with socket.create_connection((srv.host, srv.port), timeout=wait_s) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        raw = b""
        closed = False
        try:
            while chunk := sock.recv(65536):
                raw += chunk
            closed = True
        except TimeoutError:
            pass
        except ConnectionResetError:
            closed = True
    return Exchange(parse_responses(raw, no_body or []), closed, raw)


def one(srv: Server, data: bytes, **kw: Any) -> Response:
    ex = talk(srv, data, **kw)
    assert len(ex.responses) == 1, ex.raw[:500]
    return ex.responses[0]


def refused(srv: Server, data: bytes, status: int = 400) -> None:
    """Refused with `status` and the connection closed; what follows is not served."""
    ex = talk(srv, data + b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [r.status for r in ex.responses] == [status], ex.raw[:500]
    assert ex.responses[0].header("Connection") == "close"
    assert ex.closed


GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"

# -- RFC 9112 ---------------------------------------------------------------------------


@requirement("9112 §2.2", "SHOULD", "ignore at least one empty line before the request-line",
             "empty lines (CRLF) before a request line are skipped")
def test_empty_line_before_request_line_is_ignored(srv: Server) -> None:
    assert one(srv, b"\r\n" + GET).status == 200


@requirement("9112 §2.2", "MUST", "a bare CR is invalid (or replaced by SP)",
             "400")
def test_bare_cr_in_a_field_is_refused(srv: Server) -> None:
    refused(srv, b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n")


@requirement("9112 §2.2", "MUST", "whitespace between the start-line and the first field: "
             "reject, or ignore the line", "400")
def test_whitespace_before_first_field_is_refused(srv: Server) -> None:
    refused(srv, b"GET / HTTP/1.1\r\n Host: a\r\n\r\n")


@requirement("9112 §2.3", "MUST", "HTTP-version is case-sensitive", "400 for http/1.1")
def test_lowercase_http_name_is_refused(srv: Server) -> None:
    refused(srv, b"GET / http/1.1\r\nHost: a\r\n\r\n")


@requirement("9112 §3", "SHOULD", "an invalid request-line gets 400 (or 301)", "400")
def test_invalid_request_line_gets_400(srv: Server) -> None:
    refused(srv, b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n")


@requirement("9112 §3.2", "MUST", "400 to an HTTP/1.1 request without Host", "400")
def test_http11_without_host_is_refused(srv: Server) -> None:
    refused(srv, b"GET / HTTP/1.1\r\n\r\n")


@requirement("9112 §3.2", "MUST", "400 to a request with more than one Host", "400")
def test_two_host_fields_are_refused(srv: Server) -> None:
    refused(srv, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")


@requirement("9112 §3.2", "MUST", "400 to a Host with an invalid field value",
             "400 (uri-host [\":\" port]; a comma is refused too)")
def test_invalid_host_value_is_refused(srv: Server) -> None:
    for host in (b"a b", b"a,b", b"a/b", b"[::1", b"a:8x", b"u@a"):
        refused(srv, b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert one(srv, b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n").json()["host"] == "[::1]:80"


@requirement("9112 §3.2", "MUST", "414 to a request-target longer than the server parses",
             "414 (limit_request_line)")
def test_long_target_gets_414(srv: Server) -> None:
    refused(srv, b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414)


@requirement("9112 §3.2", "MUST NOT", "a request-target has no fragment", "400")
def test_fragment_is_refused(srv: Server) -> None:
    refused(srv, b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n")


@requirement("9112 §3.2.2", "MUST", "accept absolute-form", "served; path and query from it")
def test_absolute_form_is_served(srv: Server) -> None:
    got = one(srv, b"GET http://a.example:8080/p?q=1 HTTP/1.1\r\nHost: a.example:8080\r\n\r\n")
    assert (got.json()["path"], got.json()["query"]) == ("/p", "q=1")


@requirement("9112 §3.2.2", "MUST", "with absolute-form, ignore Host and use the target's "
             "authority", "HTTP_HOST is the authority, IPv6 brackets kept")
def test_absolute_form_authority_replaces_host(srv: Server) -> None:
    got = one(srv, b"GET http://[::1]:8080/foo HTTP/1.1\r\nHost: other\r\n\r\n").json()
    assert got["host"] == "[::1]:8080"


@requirement("9112 §3.2.2", "MUST", "an invalid absolute-form target is refused "
             "(RFC 9110 §4.2.4: userinfo is an error)", "400, never a 500")
def test_malformed_absolute_form_is_refused(srv: Server) -> None:
    for target in (b"s://]ufd/:", b"http:///x", b"http://u:p@a/", b"ftp://a/"):
        refused(srv, b"PUT " + target + b" HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")


@requirement("9112 §3.2.3", "MUST", "authority-form is only for CONNECT", "400")
def test_authority_form_without_connect_is_refused(srv: Server) -> None:
    refused(srv, b"GET a.example:80 HTTP/1.1\r\nHost: a.example\r\n\r\n")


@requirement("9112 §3.2.4", "MUST", "asterisk-form is only for OPTIONS",
             "OPTIONS * served (PATH_INFO *); GET * gets 400")
def test_asterisk_form_only_for_options(srv: Server) -> None:
    assert one(srv, b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").json()["path"] == "*"
    refused(srv, b"GET * HTTP/1.1\r\nHost: a\r\n\r\n")


@requirement("9112 §5", "MUST", "400 to whitespace between a field name and the colon", "400")
def test_space_before_colon_is_refused(srv: Server) -> None:
    refused(srv, b"GET / HTTP/1.1\r\nHost : a\r\n\r\n")


@requirement("9112 §5.1", "MUST", "leading and trailing whitespace is not part of the value",
             "OWS trimmed")
def test_field_value_whitespace_is_trimmed(srv: Server) -> None:
    got = one(srv, b"GET / HTTP/1.1\r\nHost: a\r\nX-Y: \t v w \t\r\n\r\n").json()
    assert got["headers"]["HTTP_X_Y"] == "v w"


@requirement("9112 §5.2", "MUST", "obs-fold in a request: 400, or replace with SP", "400")
def test_obs_fold_is_refused(srv: Server) -> None:
    refused(srv, b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n")


@requirement("9112 §6.1", "SHOULD", "501 for a transfer coding the server does not understand",
             "501")
def test_unknown_transfer_coding_gets_501(srv: Server) -> None:
    refused(srv, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            501)


@requirement("9112 §6.3", "MUST", "400 when chunked is not the final coding of a request",
             "400")
def test_chunked_not_final_is_refused(srv: Server) -> None:
    refused(srv, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n")


@requirement("9112 §6.1", "MUST", "Transfer-Encoding in an HTTP/1.0 message: framing is "
             "faulty, close after", "400 and closed (stricter: never framed)")
def test_transfer_encoding_in_http10_is_refused(srv: Server) -> None:
    refused(srv, b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")


@requirement("9112 §6.1", "MUST NOT", "no Transfer-Encoding in a response to HTTP/1.0",
             "an HTTP/1.0 response of unknown length is delimited by closing")
def test_no_chunked_response_to_http10(srv: Server) -> None:
    ex = talk(srv, b"GET /stream HTTP/1.0\r\n\r\n")
    resp = ex.responses[0]
    assert resp.header("Transfer-Encoding") is None and resp.body == b"one,two"
    assert ex.closed


@requirement("9112 §6.1", "MUST NOT", "no Transfer-Encoding (nor Content-Length, RFC 9110 "
             "§8.6) in a 1xx or 204 response", "both dropped, even if the app sets them")
def test_no_framing_fields_in_204(srv: Server) -> None:
    resp = one(srv, b"GET /204 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert resp.status == 204
    assert resp.header("Transfer-Encoding") is None and resp.header("Content-Length") is None


@requirement("9112 §6.3", "MUST", "Transfer-Encoding with Content-Length: handle as an error "
             "or let TE override; close after", "400 and closed")
def test_te_and_cl_together_are_refused(srv: Server) -> None:
    refused(srv, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")


@requirement("9112 §6.3", "MUST", "an invalid Content-Length is an unrecoverable error: 400 "
             "and close", "400 and closed")
def test_invalid_content_length_is_refused(srv: Server) -> None:
    refused(srv, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n")
    refused(srv, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab")


@requirement("9112 §6.3", "MUST", "a request without Content-Length or Transfer-Encoding has "
             "no body", "the next bytes are the next request")
def test_no_framing_means_no_body(srv: Server) -> None:
    ex = talk(srv, b"POST / HTTP/1.1\r\nHost: a\r\n\r\n" + GET)
    assert [r.json()["body"] for r in ex.responses] == ["", ""]


@requirement("9112 §6.3", "MUST", "a body cut short by a closed connection is incomplete: "
             "close", "the app's read fails; no response is sent as if it were whole")
def test_truncated_body_is_not_answered_as_complete(srv: Server) -> None:
    ex = talk(srv, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    assert ex.responses == [] and ex.closed


@requirement("9112 §7.1", "MUST", "a recipient can parse and decode chunked", "decoded")
def test_chunked_request_is_decoded(srv: Server) -> None:
    got = one(srv, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n").json()
    assert got["body"] == "abc0123456789"


@requirement("9112 §7.1", "MUST", "anticipate large chunk sizes: no overflow", "400")
def test_chunk_size_overflow_is_refused(srv: Server) -> None:
    refused(srv, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"10000000000000000\r\nx\r\n")


@requirement("9112 §7.1.1", "MUST", "ignore unrecognised chunk extensions; parse BWS",
             "extensions ignored; BWS before ; accepted, BWS after ; refused (deliberate)")
def test_chunk_extensions_are_ignored(srv: Server) -> None:
    for line in (b"3;a=b", b"3;a=\"q\"", b"3 ;a", b"3\t;a=b"):
        got = one(srv, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                       + line + b"\r\nabc\r\n0\r\n\r\n").json()
        assert got["body"] == "abc", line
    refused(srv, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"3; a=b\r\nabc\r\n0\r\n\r\n")


@requirement("9112 §7.1.2", "MAY", "a recipient may discard trailer fields",
             "trailers are parsed and dropped, never merged into the head")
def test_trailer_fields_are_dropped(srv: Server) -> None:
    got = one(srv, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"1\r\na\r\n0\r\nX-Sum: 1\r\n\r\n").json()
    assert got["body"] == "a" and "HTTP_X_SUM" not in got["headers"]


@requirement("9112 §9.3", "MUST", "HTTP/1.1 connections persist unless closed; HTTP/1.0 "
             "with keep-alive persists", "kept open; Connection: keep-alive sent to 1.0")
def test_persistence_defaults(srv: Server) -> None:
    ex = talk(srv, GET + GET, half_close=False, wait_s=1.0)
    assert [r.status for r in ex.responses] == [200, 200] and not ex.closed
    ex = talk(srv, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", half_close=False,
              wait_s=1.0)
    assert ex.responses[0].header("Connection") == "keep-alive" and not ex.closed
    ex = talk(srv, b"GET / HTTP/1.0\r\n\r\n", half_close=False, wait_s=1.0)
    assert ex.closed


@requirement("9112 §9.3", "MUST", "read the whole request body, or close after responding",
             "an unread body is discarded and the next request served (up to 1 MiB; more: closed)")
def test_unread_body_is_discarded(srv: Server) -> None:
    ex = talk(srv, b"POST /noread HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" + GET)
    assert [r.status for r in ex.responses] == [200, 200]
    assert ex.responses[1].json()["method"] == "GET"


@requirement("9112 §9.3.2", "MUST", "responses to pipelined requests in the order received",
             "served in order, one at a time")
def test_pipelined_responses_in_order(srv: Server) -> None:
    ex = talk(srv, b"".join(b"GET /?n=%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(5)))
    assert [r.json()["query"] for r in ex.responses] == [f"n={i}" for i in range(5)]


@requirement("9112 §9.6", "MUST", "after a request with Connection: close, close after the "
             "response and process no further request", "closed; a pipelined request after it "
             "is not answered")
def test_connection_close_is_honoured(srv: Server) -> None:
    ex = talk(srv, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" + GET,
              half_close=False)
    assert len(ex.responses) == 1 and ex.closed
    assert ex.responses[0].header("Connection") == "close"


# -- RFC 9110 ---------------------------------------------------------------------------


@requirement("9110 §5.3", "MUST", "a repeated list field is combined with commas in order",
             "joined with \", \" (Cookie with \"; \")")
def test_repeated_list_field_is_combined(srv: Server) -> None:
    got = one(srv, b"GET / HTTP/1.1\r\nHost: a\r\nAccept: a\r\nAccept: b\r\n\r\n").json()
    assert got["headers"]["HTTP_ACCEPT"] == "a, b"


@requirement("9110 §5.3", "MUST NOT", "a field that is not a list is not repeated",
             "400 for Content-Type, Authorization, Range, User-Agent and other singletons")
def test_repeated_singleton_field_is_refused(srv: Server) -> None:
    for name in (b"Content-Type", b"Authorization", b"Range", b"User-Agent", b"Referer"):
        refused(srv, b"GET / HTTP/1.1\r\nHost: a\r\n%s: x\r\n%s: y\r\n\r\n" % (name, name))


@requirement("9110 §5.5", "MUST", "CR, LF or NUL in a field value: reject or replace with SP",
             "400")
def test_nul_in_field_value_is_refused(srv: Server) -> None:
    refused(srv, b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n")


@requirement("9110 §5.1", "MUST", "a field name is a token", "400")
def test_field_name_not_a_token_is_refused(srv: Server) -> None:
    refused(srv, b"GET / HTTP/1.1\r\nHost: a\r\nX(Y): 1\r\n\r\n")


@requirement("9110 §6.2", "MUST", "a higher minor version of HTTP/1 is processed as the "
             "highest supported", "HTTP/1.2 served as HTTP/1.1")
def test_higher_minor_version_is_served_as_11(srv: Server) -> None:
    resp = one(srv, b"GET / HTTP/1.2\r\nHost: a\r\n\r\n")
    assert resp.status == 200 and resp.json()["protocol"] == "HTTP/1.1"


@requirement("9110 §6.4.1", "MUST NOT", "no content in a response to HEAD, nor in 1xx, 204, "
             "304", "none sent, whatever the app returns")
def test_no_content_for_head_204_304(srv: Server) -> None:
    ex = talk(srv, b"HEAD /sized?n=7 HTTP/1.1\r\nHost: a\r\n\r\n"
                   b"GET /304 HTTP/1.1\r\nHost: a\r\n\r\nGET /204 HTTP/1.1\r\nHost: a\r\n\r\n" + GET,
              no_body=[True])
    assert [r.status for r in ex.responses] == [200, 304, 204, 200]
    assert ex.responses[3].json()["method"] == "GET", "nothing stray between the responses"


@requirement("9110 §6.5.1", "MUST NOT", "no framing, routing, authentication or content "
             "fields in trailers", "400")
def test_forbidden_trailer_fields_are_refused(srv: Server) -> None:
    for name in (b"Host", b"Content-Length", b"Transfer-Encoding", b"Authorization",
                 b"Content-Type"):
        refused(srv, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"1\r\na\r\n0\r\n%s: 1\r\n\r\n" % name)


@requirement("9110 §6.6.1", "MUST", "an origin server with a clock sends Date in 2xx, 3xx "
             "and 4xx responses", "Date in every response, error responses included")
def test_date_in_every_response(srv: Server) -> None:
    assert one(srv, GET).header("Date")
    assert one(srv, b"GET /304 HTTP/1.1\r\nHost: a\r\n\r\n").header("Date")
    assert one(srv, b"GET / HTTP/1.1\r\n\r\n").header("Date")


@requirement("9110 §8.6", "MUST NOT", "Content-Length in a HEAD response only if it equals "
             "what GET would send", "the app's length, unchanged; no body")
def test_head_content_length_matches_get(srv: Server) -> None:
    head = one(srv, b"HEAD /sized?n=7 HTTP/1.1\r\nHost: a\r\n\r\n", no_body=[True])
    get = one(srv, b"GET /sized?n=7 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert head.header("Content-Length") == get.header("Content-Length") == "7"


@requirement("9110 §9.1", "SHOULD", "501 for an unrecognised method; methods are "
             "case-sensitive", "501 for a well-formed unknown method (get, BREW); extension "
             "methods llhttp knows (PROPFIND, MKCOL, REPORT, PURGE...) reach the app")
def test_unknown_method_gets_501(srv: Server) -> None:
    refused(srv, b"BREW / HTTP/1.1\r\nHost: a\r\n\r\n", 501)
    refused(srv, b"get / HTTP/1.1\r\nHost: a\r\n\r\n", 501)
    for method in (b"PROPFIND", b"MKCOL", b"REPORT", b"PURGE", b"PATCH", b"SEARCH"):
        assert one(srv, method + b" / HTTP/1.1\r\nHost: a\r\n\r\n").json()["method"] == \
            method.decode()


@requirement("9110 §9.1", "MUST", "a method is a token", "400 for a method that is not")
def test_method_not_a_token_is_400(srv: Server) -> None:
    for line in (b"GE@T / HTTP/1.1", b"GET\t/ HTTP/1.1", b"G(T / HTTP/1.1"):
        refused(srv, line + b"\r\nHost: a\r\n\r\n")


@requirement("9110 §9.3.6", "MAY", "an origin server may refuse CONNECT",
             "501 (not a proxy), authority-form with IPv6 too; never a 500")
def test_connect_gets_501(srv: Server) -> None:
    refused(srv, b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", 501)
    refused(srv, b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n", 501)


@requirement("9110 §10.1.1", "MUST", "ignore a 100-continue expectation in an HTTP/1.0 "
             "request", "no interim 100 to an HTTP/1.0 client")
def test_no_100_continue_to_http10(srv: Server) -> None:
    ex = talk(srv, b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok")
    assert b"100 Continue" not in ex.raw
    assert ex.responses[0].json()["body"] == "ok"


@requirement("9110 §10.1.1", "SHOULD", "send 100 Continue before reading a body the client "
             "holds back", "100 sent when the app first reads the body, not before")
def test_100_continue_when_the_app_reads(srv: Server) -> None:
    with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                     b"Content-Length: 2\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"ok")
        reply = b""
        while b"}" not in reply:
            reply += sock.recv(4096)
        assert b"200 OK" in reply and b'"body": "ok"' in reply


@requirement("9110 §15.5.14", "MAY", "413 for content larger than the server will process",
             "413 at the head when Content-Length says so (limit_request_body)")
def test_too_large_body_gets_413(srv: Server) -> None:
    refused(srv, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n", 413)


@requirement("9110 §15.6.6", "SHOULD", "505 for an unsupported major version", "505 for "
             "HTTP/2.0 and above; 400 for HTTP/0.x")
def test_unsupported_major_version_gets_505(srv: Server) -> None:
    refused(srv, b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505)
    refused(srv, b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505)


def test_the_matrix_in_the_docs_is_current() -> None:
    from tests.conformance.matrix import BEGIN, DOC, END, table

    text = DOC.read_text()
    assert BEGIN in text and END in text
    current = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert current == table().strip(), \
        "docs/CONFORMANCE.md is stale: python -m tests.conformance.matrix --write"


def test_every_requirement_is_a_test_here() -> None:
    from tests.conformance.matrix import REQUIREMENTS

    names = {r.test for r in REQUIREMENTS}
    assert len(REQUIREMENTS) >= 45 and len(names) == len(REQUIREMENTS)
    module = globals()
    assert all(callable(module.get(n)) for n in names)

