"""Virtual keys: unknown/revoked/expired keys, the allow-list, the cache and key-service outages."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import openai
import pytest

from harness import ProxyServer, wait_until
from conftest import proxy_settings
from llmgw_common import contract

MSG = [{"role": "user", "content": "hi"}]
BODY = {"model": "gpt-4o-mini", "messages": MSG}


def chat(proxy, secret, body=BODY, **headers):
    if secret is not None:
        headers.setdefault("authorization", f"Bearer {secret}")
    return httpx.post(proxy.url + "/v1/chat/completions", json=body, headers=headers)


def test_missing_and_unknown_key_401_openai_shape(proxy, mock):
    since = mock.last_seq()
    r = chat(proxy, None)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert r.headers["x-request-id"] and "x-llmgw-overhead-ms" in r.headers
    r = chat(proxy, "sk-llmgw-unknown")
    assert r.status_code == 401
    assert r.json() == {"error": {"message": "Invalid API key.", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-llmgw-unknown", max_retries=0).models.list()
    assert mock.calls(since) == []


def test_unknown_keys_are_negatively_cached(proxy, keysvc):
    before = keysvc.lookups
    for _ in range(5):
        assert chat(proxy, "sk-llmgw-flood").status_code == 401
    assert keysvc.lookups - before == 1


def test_revocation_is_honoured_within_a_second(proxy, keysvc, key):
    secret, record = key
    assert chat(proxy, secret).status_code == 200  # now cached
    key_hash = contract.hash_secret(secret)
    keysvc.keys[key_hash] = contract.KeyRecord(id=record.id, name=record.name, project=record.project, status="revoked")
    revoked_at = time.monotonic()
    keysvc.publish_change(contract.KeyChanged(action="revoked", key_id=record.id, key_hashes=[key_hash]))
    wait_until(lambda: chat(proxy, secret).status_code == 401, timeout=1.0, interval=0.02, what="revocation")
    assert time.monotonic() - revoked_at < 1.0
    r = chat(proxy, secret)
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]


def test_change_without_hashes_drops_every_cached_key(proxy, keysvc, key):
    secret, record = key
    assert chat(proxy, secret).status_code == 200
    keysvc.keys[contract.hash_secret(secret)] = contract.KeyRecord(id=record.id, name="x", project="p", status="revoked")
    keysvc.publish_change(contract.KeyChanged(action="routes"))
    wait_until(lambda: chat(proxy, secret).status_code == 401, timeout=1.0, interval=0.02, what="cache drop")


def test_expired_and_grace_period(proxy, keysvc):
    past = datetime.now(UTC) - timedelta(seconds=1)
    secret, _ = keysvc.add_key(expires_at=past)
    r = chat(proxy, secret)
    assert r.status_code == 401 and "expired" in r.json()["error"]["message"]
    # expiry is enforced locally too: a key cached while valid stops at its expires_at
    soon = datetime.now(UTC) + timedelta(seconds=0.6)
    secret2, _ = keysvc.add_key(expires_at=soon)
    assert chat(proxy, secret2).status_code == 200
    wait_until(lambda: chat(proxy, secret2).status_code == 401, timeout=3, interval=0.05, what="local expiry")
    # a rotated-out secret works until grace_until
    secret3, _ = keysvc.add_key(grace_until=datetime.now(UTC) + timedelta(seconds=0.6))
    assert chat(proxy, secret3).status_code == 200
    wait_until(lambda: chat(proxy, secret3).status_code == 401, timeout=3, interval=0.05, what="grace end")
    assert "rotated" in chat(proxy, secret3).json()["error"]["message"]


def test_model_not_allowed_403_both_dialects(proxy, mock, keysvc):
    secret, _ = keysvc.add_key(models=["gpt-4o-mini", "claude-haiku-*"])
    since = mock.last_seq()
    r = chat(proxy, secret, {"model": "gpt-4o", "messages": MSG})
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    r = httpx.post(
        proxy.url + "/v1/messages",
        json={"model": "claude-sonnet-4-5-20250929", "max_tokens": 5, "messages": MSG},
        headers={"x-api-key": secret},
    )
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    assert mock.calls(since) == []
    assert chat(proxy, secret).status_code == 200
    r = httpx.post(
        proxy.url + "/v1/messages",
        json={"model": "claude-haiku-4-5-20251001", "max_tokens": 5, "messages": MSG},
        headers={"x-api-key": secret},
    )
    assert r.status_code == 200


def test_key_service_down_cached_key_works_unknown_key_503(tmp_path_factory, nats_url, keysvc):
    # a proxy whose cache TTL is tiny, so the cached key is past its TTL while key-service is away
    server = ProxyServer(proxy_settings(tmp_path_factory, nats_url, key_cache_ttl=0.05, key_lookup_timeout=0.3)).start()
    try:
        secret, _ = keysvc.add_key()
        assert chat(server, secret).status_code == 200
        keysvc.stop_answering()
        try:
            time.sleep(0.1)
            for _ in range(3):
                assert chat(server, secret).status_code == 200  # known key keeps working (stale)
            r = chat(server, "sk-llmgw-never-seen")
            assert r.status_code == 503 and r.json()["error"]["code"] == "key_service_unavailable"
            r = httpx.post(server.url + "/v1/messages", json={"model": "claude-x", "max_tokens": 1, "messages": MSG},
                           headers={"x-api-key": "sk-llmgw-never-seen-2"})
            assert r.status_code == 503 and r.json()["type"] == "error"
            assert httpx.get(server.url + "/readyz").status_code == 503
            # what the k8s readinessProbe asks: this replica still serves (cached keys), stay in the Service
            degraded = httpx.get(server.url + "/readyz?degraded=ok")
            assert degraded.status_code == 200 and degraded.json()["status"] == "degraded", degraded.text
        finally:
            keysvc.start_answering()
        wait_until(lambda: httpx.get(server.url + "/readyz").status_code == 200, timeout=5, what="ready again")
        metrics = httpx.get(server.url + "/metrics").text
        assert 'llmgw_proxy_key_cache_lookups_total{result="stale"}' in metrics
    finally:
        server.stop()
