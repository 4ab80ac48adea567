"""Forwarded headers: believed from trusted proxies only, and never choosable by a client."""

from __future__ import annotations

from typing import Any

import pytest

from prefork import config
from prefork.errors import ConfigError
from prefork.proxy import FORWARDED_KEYS, Trust, apply_forwarded


def env(**headers: str) -> dict[str, Any]:
    base = {"REMOTE_ADDR": "10.0.0.5", "REMOTE_PORT": "5555", "SERVER_NAME": "internal",
            "SERVER_PORT": "8000", "SCRIPT_NAME": "", "wsgi.url_scheme": "http",
            "HTTP_HOST": "internal:8000"}
    base.update({"HTTP_" + k.upper(): v for k, v in headers.items()})
    return base


TRUST = Trust(("10.0.0.0/8", "::1"), unix_trusted=True)


def test_untrusted_peer_loses_the_headers() -> None:
    e = env(x_forwarded_for="1.2.3.4", x_forwarded_proto="https", forwarded="for=6.6.6.6",
            x_forwarded_host="evil", x_forwarded_port="1", x_forwarded_prefix="/x")
    apply_forwarded(e, TRUST, trusted_peer=False)
    assert not any(k in e for k in FORWARDED_KEYS)
    assert e["REMOTE_ADDR"] == "10.0.0.5" and e["wsgi.url_scheme"] == "http"


def test_right_most_untrusted_hop_is_the_client() -> None:
    # The client sent X-Forwarded-For: 6.6.6.6 itself; our proxies appended the rest.
    e = env(x_forwarded_for="6.6.6.6, 203.0.113.7, 10.0.0.9")
    apply_forwarded(e, TRUST, trusted_peer=True)
    assert e["REMOTE_ADDR"] == "203.0.113.7"


def test_scheme_host_port_prefix() -> None:
    e = env(x_forwarded_for="203.0.113.7", x_forwarded_proto="https",
            x_forwarded_host="example.com", x_forwarded_prefix="/app/")
    apply_forwarded(e, TRUST, trusted_peer=True)
    assert e["wsgi.url_scheme"] == "https"
    assert (e["HTTP_HOST"], e["SERVER_NAME"], e["SERVER_PORT"]) == \
        ("example.com", "example.com", "443")
    assert e["SCRIPT_NAME"] == "/app"
    e = env(x_forwarded_host="[2001:db8::1]:8443", x_forwarded_port="9443")
    apply_forwarded(e, TRUST, trusted_peer=True)
    assert e["SERVER_NAME"] == "2001:db8::1" and e["SERVER_PORT"] == "9443"


def test_rfc7239_forwarded_wins() -> None:
    e = env(forwarded='for="[2001:db8:cafe::17]:4711";proto=https;host=a.example, for=10.0.0.9',
            x_forwarded_for="6.6.6.6")
    apply_forwarded(e, TRUST, trusted_peer=True)
    assert e["REMOTE_ADDR"] == "2001:db8:cafe::17"
    assert e["wsgi.url_scheme"] == "https" and e["SERVER_NAME"] == "a.example"


def test_bogus_proto_is_ignored() -> None:
    e = env(x_forwarded_proto="javascript")
    apply_forwarded(e, TRUST, trusted_peer=True)
    assert e["wsgi.url_scheme"] == "http"


def test_trust_decisions() -> None:
    assert TRUST.peer("10.1.2.3", is_unix=False) and TRUST.peer("::1", is_unix=False)
    assert not TRUST.peer("127.0.0.1", is_unix=False)
    assert TRUST.peer("", is_unix=True)
    assert not Trust(("127.0.0.1",), unix_trusted=False).peer("", is_unix=True)
    assert Trust(("*",), unix_trusted=False).peer("8.8.8.8", is_unix=False)
    assert Trust(("127.0.0.1",), unix_trusted=False).peer("::ffff:127.0.0.1", is_unix=False)


def test_bad_allow_list_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="forwarded_allow_ips"):
        config.resolve({"forwarded_allow_ips": "10.0.0.0/33"})


def test_configured_number_of_trusted_hops() -> None:
    two_hops = Trust(("10.0.0.0/8",), unix_trusted=False, hops=2)
    e = env(x_forwarded_for="6.6.6.6, 198.51.100.4, 172.16.0.9")  # cloud LB + our nginx
    apply_forwarded(e, two_hops, trusted_peer=True)
    assert e["REMOTE_ADDR"] == "198.51.100.4", "anything left of the N-th is the client's word"
    e = env(x_forwarded_for="198.51.100.4")
    apply_forwarded(e, two_hops, trusted_peer=True)
    assert e["REMOTE_ADDR"] == "198.51.100.4"
