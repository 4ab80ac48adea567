"""What a request head says as llhttp reads it: the target's pieces and the header fields.

`HeadFields` receives llhttp's (httptools') callbacks for the start of a message, the
request target and each field line, checks what can be checked field by field (the
target's length: 414; the number and size of fields: 431; one Transfer-Encoding field: 400;
a trailer field that may only be in a head: 400) and notes the few fields that frame the
message (Host, Content-Length, Transfer-Encoding, Connection, Expect). The parser
(parser.py) judges the whole head from these notes when it is complete.

This class is the reference; the native engine's is prefork._native.HeadFields
(_native_http.c), which must agree with it field for field (tests/unit/test_fields.py).
Touched by one thread at a time: the pool thread that owns the connection.
"""

from __future__ import annotations

from prefork.errors import BadRequest, HeaderFieldsTooLarge, URITooLong

# Lengths of the field names on_header looks at besides Host: Expect, Connection,
# Content-Length, Transfer-Encoding.
_FRAMING_LENGTHS = frozenset({6, 10, 14, 17})
# RFC 9110 §6.5.1: a trailer section must not carry fields that frame the message, route
# it, authenticate it, modify the request or say how to process its content; those fields
# are only ever believed in the head. A trailer with one of them is refused (400).
FORBIDDEN_TRAILERS = frozenset({
    b"host", b"content-length", b"transfer-encoding", b"trailer", b"te", b"connection",
    b"keep-alive", b"upgrade", b"expect", b"max-forwards", b"cache-control", b"pragma",
    b"range", b"if-match", b"if-none-match", b"if-modified-since", b"if-unmodified-since",
    b"if-range", b"authorization", b"proxy-authorization", b"cookie", b"content-type",
    b"content-encoding", b"content-range", b"content-location",
})


class HeadFields:
    __slots__ = (
        "connection",
        "content_length",
        "expect_continue",
        "field_size",
        "headers",
        "host",
        "hosts",
        "in_head",
        "line_limit",
        "max_fields",
        "te",
        "url",
        "url_len",
    )

    def __init__(self, line_limit: int, max_fields: int, field_size: int) -> None:
        self.line_limit = line_limit  # bytes in the request target (414 past it)
        self.max_fields = max_fields  # fields in a head (431 past it)
        self.field_size = field_size  # bytes in one field's name and value (431 past it)
        self.in_head = False  # between a message's first byte and the end of its head
        self.url: list[bytes] = []  # the target, in the pieces llhttp gave it
        self.url_len = 0
        self.headers: list[tuple[bytes, bytes]] = []  # (name, value), in arrival order
        self.hosts = 0  # Host fields seen
        self.host: bytes | None = None  # the (last) Host field's value
        self.te: bytes | None = None  # the Transfer-Encoding field
        self.connection: bytes | None = None  # the Connection field(s), joined by ","
        self.content_length: int | None = None
        self.expect_continue = False  # Expect: 100-continue

    def on_message_begin(self) -> None:
        self.in_head = True
        self.url = []
        self.url_len = 0
        self.headers = []
        self.hosts = 0
        self.host = self.te = self.connection = self.content_length = None
        self.expect_continue = False

    def on_url(self, url: bytes) -> None:
        self.url_len += len(url)
        if self.url_len > self.line_limit:
            raise URITooLong(f"request target longer than {self.line_limit} bytes")
        self.url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:
            # A trailer field (RFC 9112 §7.1.2). Never merged into the head, which the app
            # may already be reading (RFC 9110 §6.5.1); its bytes count as chunk framing.
            if name.lower() in FORBIDDEN_TRAILERS:
                raise BadRequest(f"{name.decode('latin-1')} is not allowed in a trailer "
                                 "section (RFC 9110 §6.5.1)")
            return
        headers = self.headers
        if len(headers) >= self.max_fields:
            raise HeaderFieldsTooLarge(f"more than {self.max_fields} header fields")
        n = len(name)
        if n + len(value) > self.field_size:
            raise HeaderFieldsTooLarge(f"a header field is longer than {self.field_size} bytes")
        if value[-1:] in (b" ", b"\t"):
            value = value.rstrip(b" \t")  # RFC 9112 §5.1: trailing OWS is not the value
        headers.append((name, value))
        # Only a handful of names matter to framing; compare lengths first (cheap).
        if n == 4:
            if name.lower() == b"host":
                self.hosts += 1
                self.host = value
        elif n in _FRAMING_LENGTHS:
            lname = name.lower()
            if lname == b"content-length":
                # llhttp has already refused non-digits, overflow and duplicates.
                self.content_length = int(value)
            elif lname == b"transfer-encoding":
                if self.te is not None:
                    raise BadRequest("more than one Transfer-Encoding field")
                self.te = value
            elif lname == b"connection":
                c = self.connection
                self.connection = value if c is None else c + b"," + value
            elif lname == b"expect" and value.strip().lower() == b"100-continue":
                self.expect_continue = True
