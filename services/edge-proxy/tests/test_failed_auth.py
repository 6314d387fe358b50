"""Virtual-key brute force is rate-limited per client address."""

from __future__ import annotations

import httpx

from conftest import proxy_settings
from harness import ProxyServer

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_too_many_bad_keys_from_one_address_get_429(tmp_path_factory, nats_url, keysvc, mock):
    server = ProxyServer(proxy_settings(tmp_path_factory, nats_url, auth_failures_per_minute=5)).start()
    try:
        secret, _ = keysvc.add_key()
        with httpx.Client(timeout=10) as http:
            url = server.url + "/v1/chat/completions"
            statuses = [http.post(url, json=BODY, headers={"authorization": f"Bearer sk-llmgw-guess-{i}"}).status_code
                        for i in range(8)]
            assert statuses[:5] == [401] * 5 and statuses[5:] == [429] * 3, statuses
            blocked = http.post(url, json=BODY, headers={"authorization": f"Bearer {secret}"})
            # blocked before any key lookup, in the caller's dialect, with Retry-After
            assert blocked.status_code == 429
            assert blocked.json()["error"]["code"] == "too_many_failed_auth_attempts"
            assert 1 <= int(blocked.headers["retry-after"]) <= 60
            anthropic = http.post(server.url + "/v1/messages", json={**BODY, "max_tokens": 5},
                                  headers={"x-api-key": secret, "anthropic-version": "2023-06-01"})
            assert anthropic.status_code == 429 and anthropic.json()["error"]["type"] == "rate_limit_error"
    finally:
        server.stop()


def test_limiter_windows_and_bounded_memory():
    from llmgw_proxy.domain.auth.failed_attempts import FailedAuthLimiter

    limiter = FailedAuthLimiter(per_minute=2, max_addresses=10)
    t = 1_000_020.0
    limiter.record_failure("a", t)
    assert limiter.retry_after("a", t) is None
    limiter.record_failure("a", t + 1)
    assert limiter.retry_after("a", t + 1) is not None
    assert limiter.retry_after("b", t + 1) is None
    assert limiter.retry_after("a", t + 60) is None  # next window
    for i in range(50):
        limiter.record_failure(f"addr{i}", t)
    assert len(limiter._windows) <= 10


def test_revoked_key_rejections_do_not_count_as_guesses(tmp_path_factory, nats_url, keysvc, mock):
    """Clients polling with a key that was revoked get 401s, never the brute-force 429."""
    server = ProxyServer(proxy_settings(tmp_path_factory, nats_url, auth_failures_per_minute=3)).start()
    try:
        secret, record = keysvc.add_key(status="revoked")
        with httpx.Client(timeout=10) as http:
            statuses = [http.post(server.url + "/v1/chat/completions", json=BODY,
                                  headers={"authorization": f"Bearer {secret}"}).status_code for _ in range(6)]
        assert statuses == [401] * 6, statuses
    finally:
        server.stop()


def test_known_keys_keep_working_from_a_blocked_address(tmp_path_factory, nats_url, keysvc, mock):
    server = ProxyServer(proxy_settings(tmp_path_factory, nats_url, auth_failures_per_minute=3)).start()
    try:
        secret, _ = keysvc.add_key()
        with httpx.Client(timeout=10) as http:
            url = server.url + "/v1/chat/completions"
            assert http.post(url, json=BODY, headers={"authorization": f"Bearer {secret}"}).status_code == 200
            for i in range(4):
                http.post(url, json=BODY, headers={"authorization": f"Bearer sk-llmgw-guess-{i}"})
            assert http.post(url, json=BODY, headers={"authorization": "Bearer sk-llmgw-guess-x"}).status_code == 429
            assert http.post(url, json=BODY, headers={"authorization": f"Bearer {secret}"}).status_code == 200
    finally:
        server.stop()
