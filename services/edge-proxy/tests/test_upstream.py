"""Upstream failures: retries with backoff, fallback, circuit breaker, timeouts, resets, cut streams,
client disconnects."""

from __future__ import annotations

import socket
import time

import httpx
import openai
import pytest

from conftest import proxy_settings
from harness import ProxyServer, wait_until

MSG = [{"role": "user", "content": "hi"}]


def chat(proxy, secret, model="gpt-4o-mini", **extra):
    return httpx.post(
        proxy.url + "/v1/chat/completions",
        json={"model": model, "messages": MSG, **extra},
        headers={"authorization": f"Bearer {secret}"},
        timeout=30,
    )


@pytest.fixture(scope="module")
def impatient(tmp_path_factory, nats_url, keysvc):
    """A proxy with a short read timeout and two attempts per deployment."""
    server = ProxyServer(proxy_settings(tmp_path_factory, nats_url, upstream_read_timeout=0.5, upstream_max_attempts=2)).start()
    yield server
    server.stop()


def test_upstream_429_is_retried(proxy, mock, keysvc, key):
    secret, record = key
    mock.set_fault("status", status=429, model="gpt-4o-retry-429", count=1, retry_after=0.05)
    since = mock.last_seq()
    r = chat(proxy, secret, "gpt-4o-retry-429")
    assert r.status_code == 200
    assert [c["status"] for c in mock.calls(since)] == [429, 200]
    (event,) = keysvc.wait_usage(record.id, 1)
    assert event.attempts == 2 and event.status == "ok" and event.total_tokens > 0


def test_upstream_500_retried_then_falls_back_to_next_deployment(proxy, mock, mock_backup, keysvc, key):
    secret, record = key
    mock.set_fault("status", status=500, model="fallback-model", count=3)
    since, since_b = mock.last_seq(), mock_backup.last_seq()
    r = chat(proxy, secret, "fallback-model")
    assert r.status_code == 200, r.text
    assert [c["status"] for c in mock.calls(since)] == [500, 500, 500]  # 3 attempts on the primary
    assert [c["status"] for c in mock_backup.calls(since_b)] == [200]  # then the priority-1 deployment
    (event,) = keysvc.wait_usage(record.id, 1)
    assert event.attempts == 4 and event.deployment == "backup/fallback-model" and event.provider == "backup"


def test_upstream_401_is_the_gateways_credential_problem_not_the_clients(proxy, mock, keysvc, key):
    """A provider refusing the gateway's key: 502 written by the gateway (never the provider's 401, which
    quotes the end of the real key and reads as "your key is wrong"), and no retry of the same key."""
    secret, record = key
    mock.set_fault("status", status=401, model="gpt-4o-badcred", count=5)
    since = mock.last_seq()
    r = chat(proxy, secret, "gpt-4o-badcred")
    assert r.status_code == 502, r.text
    error = r.json()["error"]
    assert error["code"] == "upstream_auth_error" and "gateway's credentials" in error["message"]
    assert [c["status"] for c in mock.calls(since)] == [401]  # not retried
    (event,) = keysvc.wait_usage(record.id, 1)
    assert event.attempts == 1 and event.status == "error" and event.error_type == "upstream_auth_error"
    anthropic_shape = httpx.post(
        proxy.url + "/v1/messages", json={"model": "gpt-4o-badcred", "max_tokens": 5, "messages": MSG},
        headers={"x-api-key": secret, "anthropic-version": "2023-06-01"}, timeout=30,
    )
    # an Anthropic-dialect caller of the same (translated) deployment: the same answer in its dialect
    assert anthropic_shape.status_code == 502, anthropic_shape.text
    assert anthropic_shape.json()["type"] == "error" and anthropic_shape.json()["error"]["type"] == "api_error"
    assert "sk-" not in anthropic_shape.text and "sk-" not in r.text
    mock.clear_faults()


def test_persistent_upstream_error_is_relayed_as_is(proxy, mock, keysvc, key):
    secret, record = key
    mock.set_fault("status", status=503, model="gpt-4o-down", count=3)
    r = chat(proxy, secret, "gpt-4o-down")
    assert r.status_code == 503 and "error" in r.json()  # the provider's own error body
    (event,) = keysvc.wait_usage(record.id, 1)
    assert event.attempts == 3 and event.status == "error" and event.status_code == 503
    with pytest.raises(openai.RateLimitError):  # and an SDK sees the provider's error as it would directly
        mock.set_fault("status", status=429, model="gpt-4o-down", count=3, retry_after=0)
        openai.OpenAI(base_url=proxy.url + "/v1", api_key=secret, max_retries=0).chat.completions.create(
            model="gpt-4o-down", messages=MSG
        )


def test_upstream_timeout_504(impatient, mock, keysvc, key):
    secret, record = key
    mock.set_fault("hang", model="gpt-4o-hang", count=2)
    started = time.monotonic()
    r = chat(impatient, secret, "gpt-4o-hang")
    assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 5
    (event,) = keysvc.wait_usage(record.id, 1)
    assert event.attempts == 2 and event.status == "error" and event.status_code == 504
    assert not event.streamed
    # a stream request that never got a byte is still recorded as a streamed request
    mock.set_fault("hang", model="gpt-4o-hang", count=2)
    r = chat(impatient, secret, "gpt-4o-hang", stream=True)
    assert r.status_code == 504
    _, event = keysvc.wait_usage(record.id, 2)
    assert event.streamed and event.status_code == 504
    mock.set_fault("hang", model="claude-haiku-4-5-20251001", count=2)
    r = httpx.post(impatient.url + "/v1/messages", headers={"x-api-key": secret},
                   json={"model": "claude-haiku-4-5-20251001", "max_tokens": 5, "messages": MSG}, timeout=30)
    assert r.status_code == 504 and r.json()["error"]["type"] == "timeout_error"


def test_connection_reset_502_after_retries(impatient, mock, keysvc, key):
    secret, record = key
    mock.set_fault("reset", model="gpt-4o-reset", count=2)
    r = chat(impatient, secret, "gpt-4o-reset")
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_error"
    (event,) = keysvc.wait_usage(record.id, 1)
    assert event.attempts == 2 and event.status_code == 502


def test_reset_mid_stream_gives_incomplete_usage_event(proxy, mock, keysvc, key):
    secret, record = key
    mock.set_fault("reset_mid_stream", model="gpt-4o-cut", stream=True, after_chunks=3, count=1)
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key=secret, max_retries=0)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(model="gpt-4o-cut", messages=MSG, stream=True):
            received.append(chunk)
    assert received  # the first chunks were relayed before the cut
    (event,) = keysvc.wait_usage(record.id, 1)
    assert event.status == "incomplete" and event.error_type == "upstream_disconnect" and event.streamed
    assert event.attempts == 1  # never retried once streaming started


def test_anthropic_stream_cut_keeps_input_usage(proxy, mock, keysvc, key):
    secret, record = key
    mock.set_fault("reset_mid_stream", model="claude-sonnet-4-5-20250929", stream=True, after_chunks=3, count=1)
    r = httpx.post(proxy.url + "/v1/messages", headers={"x-api-key": secret},
                   json={"model": "claude-sonnet-4-5-20250929", "max_tokens": 50, "messages": MSG, "stream": True})
    assert "event: error" in r.text
    (event,) = keysvc.wait_usage(record.id, 1)
    assert event.status == "incomplete" and event.prompt_tokens > 0  # message_start was seen


def test_client_disconnect_cancels_upstream_and_records_incomplete(proxy, mock, keysvc, key):
    secret, record = key
    mock.configure(chunk_delay_ms=100)
    try:
        since = mock.last_seq()
        sock = socket.create_connection(("127.0.0.1", proxy.port))
        body = b'{"model":"gpt-4o-slow-stream","messages":[{"role":"user","content":"hi"}],"stream":true}'
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            + f"authorization: Bearer {secret}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body
        )
        sock.settimeout(5)
        assert b"200 OK" in sock.recv(4096)
        sock.close()  # gone after the first chunk(s)
        (event,) = keysvc.wait_usage(record.id, 1)
        assert event.status == "incomplete" and event.error_type == "client_disconnect" and event.status_code == 499
        (call,) = mock.wait_for_calls(1, since=since)
        assert call["cut"]  # the upstream stream was aborted, not read to its end
    finally:
        mock.configure(chunk_delay_ms=0)


def test_circuit_breaker_skips_a_failing_deployment(tmp_path_factory, nats_url, mock, mock_backup, keysvc, key):
    server = ProxyServer(proxy_settings(tmp_path_factory, nats_url, breaker_failures=2, breaker_cooldown=0.5,
                                        upstream_max_attempts=1)).start()
    try:
        secret, record = key
        mock.set_fault("status", status=500, model="fallback-breaker")
        try:
            for _ in range(2):
                assert chat(server, secret, "fallback-breaker").status_code == 200  # via the backup
            since = mock.last_seq()
            assert chat(server, secret, "fallback-breaker").status_code == 200
            assert mock.calls(since) == []  # the primary is cooling down: not tried at all
            metrics = httpx.get(server.url + "/metrics").text
            assert 'llmgw_proxy_circuit_breaker_opened_total{deployment="openai/fallback-breaker"}' in metrics
        finally:
            mock.clear_faults()
        # after the cool-down one probe goes to the primary again, succeeds, and closes the breaker
        time.sleep(0.6)
        since = mock.last_seq()
        assert chat(server, secret, "fallback-breaker").status_code == 200
        assert [c["status"] for c in mock.calls(since)] == [200]
    finally:
        server.stop()
