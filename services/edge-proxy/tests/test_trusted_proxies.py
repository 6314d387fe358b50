"""LLMGW_TRUSTED_PROXIES: behind a reverse proxy the brute-force limit counts per forwarded client,
and a forwarded address is believed only from a trusted peer."""

from __future__ import annotations

import httpx
import pytest

from conftest import proxy_settings
from harness import ProxyServer
from llmgw_proxy.domain.auth.failed_attempts import FailedAuthLimiter, parse_networks
from llmgw_proxy.settings import Settings

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
LIMIT = 3


def _post(http, server, secret, **headers):
    return http.post(server.url + "/v1/chat/completions", json=BODY,
                     headers={"authorization": f"Bearer {secret}", **headers})


def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(tmp_path_factory, nats_url, keysvc, mock):
    # the test client (127.0.0.1) is not a trusted proxy: its X-Forwarded-For means nothing
    server = ProxyServer(proxy_settings(tmp_path_factory, nats_url, auth_failures_per_minute=LIMIT,
                                        trusted_proxies="10.0.0.0/8")).start()
    try:
        with httpx.Client(timeout=10) as http:
            statuses = [_post(http, server, f"sk-llmgw-guess-{i}", **{"x-forwarded-for": f"198.51.100.{i}",
                                                                        "x-real-ip": f"198.51.100.{i}"}).status_code
                        for i in range(LIMIT + 2)]
            assert statuses == [401] * LIMIT + [429] * 2, statuses
            fresh, _ = keysvc.add_key()
            blocked = _post(http, server, fresh, **{"x-forwarded-for": "203.0.113.99"})
            assert blocked.status_code == 429 and blocked.json()["error"]["code"] == "too_many_failed_auth_attempts"
    finally:
        server.stop()


def test_forwarded_clients_behind_a_trusted_proxy_are_limited_separately(tmp_path_factory, nats_url, keysvc, mock):
    server = ProxyServer(proxy_settings(tmp_path_factory, nats_url, auth_failures_per_minute=LIMIT,
                                        trusted_proxies="127.0.0.1/32, 10.0.0.0/8")).start()
    try:
        with httpx.Client(timeout=10) as http:
            # client A guesses; the left-most entry (its own claim) changes every time, the entry
            # the trusted proxies appended does not: A is still A
            for i in range(LIMIT):
                r = _post(http, server, f"sk-llmgw-guess-a{i}",
                          **{"x-forwarded-for": f"192.0.2.{i}, 203.0.113.1, 10.1.2.3"})
                assert r.status_code == 401, r.text
            fresh_a, _ = keysvc.add_key()
            r = _post(http, server, fresh_a, **{"x-forwarded-for": "192.0.2.200, 203.0.113.1, 10.1.2.3"})
            assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_failed_auth_attempts", r.text
            # client B, behind the same proxy, is not affected: new keys work for it
            fresh_b, _ = keysvc.add_key()
            assert _post(http, server, fresh_b, **{"x-forwarded-for": "203.0.113.2"}).status_code == 200
            # and neither is a client named by X-Real-IP only (nginx's other header)
            fresh_c, _ = keysvc.add_key()
            assert _post(http, server, fresh_c, **{"x-real-ip": "203.0.113.3"}).status_code == 200
            # without a forwarded address the peer itself (the proxy) is the client: still separate
            fresh_d, _ = keysvc.add_key()
            assert _post(http, server, fresh_d).status_code == 200
            # B's own guesses fill B's window only
            for i in range(LIMIT):
                assert _post(http, server, f"sk-llmgw-guess-b{i}", **{"x-forwarded-for": "203.0.113.2"}).status_code == 401
            fresh_b2, _ = keysvc.add_key()
            assert _post(http, server, fresh_b2, **{"x-forwarded-for": "203.0.113.2"}).status_code == 429
    finally:
        server.stop()


# --- the address rules, without a server -----------------------------------------------------------
def _limiter(trusted: str) -> FailedAuthLimiter:
    return FailedAuthLimiter(5, trusted_proxies=trusted)


def _addr(limiter, peer, **headers) -> str:
    return limiter.client_address(peer, [(k.encode(), v.encode()) for k, v in headers.items()])


def test_client_address_rules():
    nobody = _limiter("")
    assert _addr(nobody, "10.0.0.5", **{"x-forwarded-for": "1.2.3.4"}) == "10.0.0.5"
    lim = _limiter("10.0.0.0/8,fd00::/8")
    # peer not trusted: headers ignored
    assert _addr(lim, "198.51.100.7", **{"x-forwarded-for": "1.2.3.4", "x-real-ip": "1.2.3.4"}) == "198.51.100.7"
    # right-most untrusted hop
    assert _addr(lim, "10.0.0.5", **{"x-forwarded-for": "6.6.6.6, 1.2.3.4"}) == "1.2.3.4"
    assert _addr(lim, "10.0.0.5", **{"x-forwarded-for": "6.6.6.6, 1.2.3.4, 10.9.9.9"}) == "1.2.3.4"
    # every hop trusted: the left-most one
    assert _addr(lim, "10.0.0.5", **{"x-forwarded-for": "10.1.1.1, 10.2.2.2"}) == "10.1.1.1"
    # garbage written by the client: the last real hop, never the garbage (it would rotate)
    assert _addr(lim, "10.0.0.5", **{"x-forwarded-for": "not-an-ip, 10.2.2.2"}) == "10.2.2.2"
    assert _addr(lim, "10.0.0.5", **{"x-forwarded-for": "zzz"}) == "10.0.0.5"
    # ports, brackets, IPv6, IPv4-mapped peers
    assert _addr(lim, "10.0.0.5", **{"x-forwarded-for": "1.2.3.4:5678"}) == "1.2.3.4"
    assert _addr(lim, "10.0.0.5", **{"x-forwarded-for": "[2001:db8::1]:443"}) == "2001:db8::1"
    assert _addr(lim, "::ffff:10.0.0.5", **{"x-forwarded-for": "2001:db8::2"}) == "2001:db8::2"
    assert _addr(lim, "fd00::1", **{"x-forwarded-for": "1.2.3.4"}) == "1.2.3.4"
    # X-Real-IP when there is no X-Forwarded-For
    assert _addr(lim, "10.0.0.5", **{"x-real-ip": "1.2.3.4"}) == "1.2.3.4"
    assert _addr(lim, "10.0.0.5", **{"x-real-ip": "bogus"}) == "10.0.0.5"
    # several X-Forwarded-For headers are one list, in order
    headers = [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"1.2.3.4")]
    assert lim.client_address("10.0.0.5", headers) == "1.2.3.4"


def test_limiter_is_inactive_until_something_fails():
    lim = _limiter("10.0.0.0/8")
    assert not lim.active
    lim.record_failure("1.2.3.4", 1_000_000.0)
    assert lim.active


def test_trusted_proxies_setting_is_validated_at_start():
    assert Settings(trusted_proxies="10.0.0.0/8, 192.168.1.7,fd00::/8").trusted_proxies
    assert len(parse_networks("10.0.0.0/8, 192.168.1.7,fd00::/8")) == 3
    with pytest.raises(ValueError, match="10.0.0.0/33"):
        Settings(trusted_proxies="10.0.0.0/8,10.0.0.0/33")
