"""The response cache: opt-in per key or per request, shared by proxy replicas through NATS KV, never
used for streams; hits answer without an upstream call and still produce one usage event
(``cached``)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from conftest import proxy_settings
from harness import ProxyServer, wait_until
from llmgw_common import contract

MSG = [{"role": "user", "content": "Say hello to the cache"}]


@pytest.fixture(scope="module")
def replica(tmp_path_factory, nats_url, keysvc, proxy):
    """A second proxy replica on the same NATS as ``proxy``."""
    server = ProxyServer(proxy_settings(tmp_path_factory, nats_url)).start()
    yield server
    server.stop()


def post(proxy, secret, body: bytes | dict, path="/v1/chat/completions", **headers) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        proxy.url + path, content=content, timeout=30,
        headers={"authorization": f"Bearer {secret}", "content-type": "application/json", **headers},
    )


def cache_metric(proxy, result: str) -> float:
    for line in httpx.get(proxy.url + "/metrics").text.splitlines():
        if line.startswith(f'llmgw_proxy_response_cache_total{{result="{result}"}}'):
            return float(line.split()[-1])
    return 0.0


def wait_stored(proxy, before: float) -> None:
    wait_until(lambda: cache_metric(proxy, "store") > before, 5, 0.02, "the answer stored in the cache")


def test_hit_across_two_replicas_without_upstream_call(proxy, replica, mock, keysvc):
    secret, record = keysvc.add_key(metadata={"cache": True})
    stored = cache_metric(proxy, "store")
    since = mock.last_seq()
    first = post(proxy, secret, {"model": "gpt-4o-mini", "messages": MSG, "temperature": 0})
    assert first.status_code == 200 and first.headers["x-llmgw-cache"] == "miss"
    wait_stored(proxy, stored)
    # the same request on the other replica, keys in another order and other whitespace
    raw = b'{ "temperature": 0,\n "messages": [{"content": "Say hello to the cache", "role": "user"}], "model": "gpt-4o-mini"}'
    hits = cache_metric(replica, "hit")
    second = post(replica, secret, raw)
    assert second.status_code == 200 and second.headers["x-llmgw-cache"] == "hit"
    assert second.content == first.content  # the stored answer, byte for byte
    assert second.headers["content-type"].startswith("application/json")
    assert int(second.headers["age"]) >= 0 and "x-request-id" in second.headers
    assert len(mock.calls(since)) == 1  # only the first request reached the provider
    assert cache_metric(replica, "hit") == hits + 1
    events = sorted(keysvc.wait_usage(record.id, 2), key=lambda e: e.cached)
    upstream, cached = events
    assert not upstream.cached and upstream.attempts == 1
    assert cached.cached and cached.attempts == 0 and cached.status == "ok" and cached.status_code == 200
    assert (cached.provider, cached.deployment, cached.upstream_model) == ("openai", "openai/gpt-4o-mini", "gpt-4o-mini")
    for field in ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens"):
        assert getattr(cached, field) == getattr(upstream, field)  # the stored counts (metering prices it at 0)
    assert cached.total_tokens > 0 and cached.upstream_latency_ms is None


def test_per_request_header_opt_in_ttl_and_opt_out(proxy, mock, keysvc):
    secret, record = keysvc.add_key()  # no cache in its metadata
    body = {"model": "gpt-4o-mini", "messages": MSG, "max_tokens": 7}
    off = post(proxy, secret, body)
    assert off.status_code == 200 and "x-llmgw-cache" not in off.headers  # not opted in: not cached
    stored = cache_metric(proxy, "store")
    assert post(proxy, secret, body, **{"x-llmgw-cache": "true", "x-llmgw-cache-ttl": "1"}).headers["x-llmgw-cache"] == "miss"
    wait_stored(proxy, stored)
    since = mock.last_seq()
    assert post(proxy, secret, body, **{"x-llmgw-cache": "true"}).headers["x-llmgw-cache"] == "hit"
    assert post(proxy, secret, body, **{"x-llmgw-cache": "false"}).headers.get("x-llmgw-cache") is None
    assert len(mock.calls(since)) == 1  # the hit did not go upstream, the opted-out request did
    # the 1-second TTL runs out: a miss again (polled: each miss re-stores for another second)
    wait_until(
        lambda: post(proxy, secret, body, **{"x-llmgw-cache": "true"}).headers["x-llmgw-cache"] == "miss",
        5, 0.2, "the entry to expire",
    )


def test_key_metadata_ttl_opts_in_and_projects_do_not_share(proxy, mock, keysvc):
    secret_a, _ = keysvc.add_key(project="team-a", metadata={"cache_ttl_seconds": 600})
    secret_a2, _ = keysvc.add_key(project="team-a")
    secret_b, _ = keysvc.add_key(project="team-b", metadata={"cache": True})
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "projects"}]}
    stored = cache_metric(proxy, "store")
    assert post(proxy, secret_a, body).headers["x-llmgw-cache"] == "miss"
    wait_stored(proxy, stored)
    # another key of the same project shares the entry (when it opts in)...
    assert post(proxy, secret_a2, body, **{"x-llmgw-cache": "true"}).headers["x-llmgw-cache"] == "hit"
    # ...another project does not
    assert post(proxy, secret_b, body).headers["x-llmgw-cache"] == "miss"
    # another endpoint/model/body is another entry
    assert post(proxy, secret_a, {**body, "model": "gpt-4o"}).headers["x-llmgw-cache"] == "miss"


def test_streams_are_never_cached(proxy, mock, keysvc):
    secret, _ = keysvc.add_key(metadata={"cache": True})
    since = mock.last_seq()
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key=secret, max_retries=0)
    for _ in range(2):
        with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=MSG, stream=True
        ) as response:
            assert "x-llmgw-cache" not in response.headers
            assert "".join(response.iter_text())
    assert len(mock.calls(since)) == 2


def test_errors_are_not_cached(proxy, mock, keysvc):
    secret, _ = keysvc.add_key(metadata={"cache": True})
    mock.set_fault("status", status=400, model="gpt-cache-err", count=1)
    body = {"model": "gpt-cache-err", "messages": MSG}
    r = post(proxy, secret, body)
    assert r.status_code == 400 and r.headers["x-llmgw-cache"] == "miss"
    since = mock.last_seq()
    r = post(proxy, secret, body)
    assert r.status_code == 200 and r.headers["x-llmgw-cache"] == "miss"
    assert len(mock.calls(since)) == 1


def test_translated_answers_are_cached_in_the_callers_format(proxy, replica, mock, keysvc):
    secret, record = keysvc.add_key(metadata={"cache": True})
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key=secret, max_retries=0)
    stored = cache_metric(proxy, "store")
    first = client.chat.completions.create(model="claude-haiku-4-5", messages=MSG)
    wait_stored(proxy, stored)
    since = mock.last_seq()
    raw = openai.OpenAI(base_url=replica.url + "/v1", api_key=secret, max_retries=0).chat.completions.with_raw_response.create(
        model="claude-haiku-4-5", messages=MSG
    )
    assert raw.headers["x-llmgw-cache"] == "hit"
    second = raw.parse()
    assert second.object == "chat.completion" and second.id == first.id
    assert second.choices[0].message.content == first.choices[0].message.content
    assert mock.calls(since) == []
    cached = [e for e in keysvc.wait_usage(record.id, 2) if e.cached]
    assert len(cached) == 1 and cached[0].provider == "anthropic" and cached[0].prompt_tokens == first.usage.prompt_tokens


def test_invalid_cache_headers_are_a_400(proxy, keysvc):
    secret, _ = keysvc.add_key()
    body = {"model": "gpt-4o-mini", "messages": MSG}
    r = post(proxy, secret, body, **{"x-llmgw-cache": "maybe"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_cache_header"
    r = post(proxy, secret, body, **{"x-llmgw-cache": "true", "x-llmgw-cache-ttl": "-5"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_cache_ttl"


def test_entries_live_in_the_shared_kv_bucket_under_the_project_token(proxy, keysvc):
    secret, _ = keysvc.add_key(project="kv-check", metadata={"cache": True})
    stored = cache_metric(proxy, "store")
    post(proxy, secret, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "kv"}]})
    wait_stored(proxy, stored)

    async def subjects():
        js = keysvc.js
        info = await js.stream_info(
            contract.kv_stream_name(contract.KV_BUCKET_RESPONSE_CACHE),
            subjects_filter=f"$KV.{contract.KV_BUCKET_RESPONSE_CACHE}.{contract.response_cache_project_token('kv-check')}.>",
        )
        return info.state.subjects or {}, info.config

    found, config = keysvc.lt.run(subjects())
    assert len(found) == 1
    assert config.max_age == proxy.settings.response_cache_max_ttl
    assert config.max_bytes == proxy.settings.response_cache_max_bytes
    assert config.discard == "old"  # a full cache drops its oldest entries
