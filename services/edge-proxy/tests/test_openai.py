"""OpenAI dialect end to end: the official openai SDK (sync and async) → proxy → mock provider,
usage events read back from JetStream."""

from __future__ import annotations

import httpx
import openai
import pytest

from conftest import OPENAI_KEY

MSG = [{"role": "user", "content": "Say hello to the gateway test"}]


def client(proxy, secret, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key=secret, max_retries=0, **kw)


def mock_usage(call) -> dict:
    return call["usage"]


def assert_tokens(event, usage: dict) -> None:
    assert event.prompt_tokens == usage["prompt_tokens"]
    assert event.completion_tokens == usage["completion_tokens"]
    assert event.total_tokens == usage["total_tokens"]
    assert event.cached_tokens == usage["cached_tokens"]
    assert event.reasoning_tokens == usage["reasoning_tokens"]


def test_chat_non_stream_real_key_and_usage(proxy, mock, keysvc, key):
    secret, record = key
    since = mock.last_seq()
    raw = client(proxy, secret).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MSG, extra_headers={"x-request-id": "req-test-123"}
    )
    completion = raw.parse()
    assert completion.choices[0].message.content.startswith("Hello!")
    assert raw.headers["x-request-id"] == "req-test-123"
    assert float(raw.headers["x-llmgw-overhead-ms"]) >= 0
    assert "openai-organization" not in raw.headers
    (call,) = mock.calls(since)
    assert call["api_key"] == OPENAI_KEY  # the real provider key reached the provider
    assert secret not in str(call)  # and the virtual key did not
    assert call["request_id"] == "req-test-123"
    (event,) = keysvc.wait_usage(record.id, 1)
    assert event.request_id == "req-test-123"
    assert (event.model, event.upstream_model, event.provider) == ("gpt-4o-mini", "gpt-4o-mini", "openai")
    assert event.endpoint == "/v1/chat/completions" and not event.streamed and event.status == "ok"
    assert event.attempts == 1 and event.deployment == "openai/gpt-4o-mini"
    assert_tokens(event, mock_usage(call))
    assert event.total_tokens == completion.usage.total_tokens > 0
    assert event.latency_ms > 0 and event.upstream_latency_ms > 0


def test_chat_stream_without_include_usage_hides_usage_chunk(proxy, mock, keysvc, key):
    secret, record = key
    since = mock.last_seq()
    chunks = list(client(proxy, secret).chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Hello!")
    # the client did not ask for usage: no usage-only chunk, no usage field at all
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    (call,) = mock.calls(since)
    assert call["body"]["stream_options"] == {"include_usage": True}  # injected upstream
    (event,) = keysvc.wait_usage(record.id, 1)
    assert event.streamed and event.status == "ok"
    assert_tokens(event, mock_usage(call))
    assert event.completion_tokens == 13
    assert event.ttfb_ms is not None and event.ttfb_ms <= event.latency_ms


def test_chat_stream_raw_bytes_identical_to_provider_without_usage(proxy, mock, key):
    """What the client receives equals what the provider sends a client that asked for no usage."""
    secret, _ = key
    body = {"model": "gpt-4o-mini", "messages": MSG, "stream": True}
    via_proxy = httpx.post(proxy.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {secret}"}).text
    direct = httpx.post(mock.openai_base_url + "/chat/completions", json=body, headers={"authorization": f"Bearer {OPENAI_KEY}"}).text

    def normalise(text):  # ids/timestamps differ between the two calls
        import re

        return re.sub(r'"(id|created)":("[^"]*"|\d+)', "", text)

    assert normalise(via_proxy) == normalise(direct)
    assert '"usage"' not in via_proxy and via_proxy.rstrip().endswith("data: [DONE]")


def test_chat_stream_with_include_usage_passes_it_through(proxy, mock, keysvc, key):
    secret, record = key
    chunks = list(
        client(proxy, secret).chat.completions.create(
            model="gpt-4o-mini", messages=MSG, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    (event,) = keysvc.wait_usage(record.id, 1)
    assert event.total_tokens == chunks[-1].usage.total_tokens
    assert event.prompt_tokens == chunks[-1].usage.prompt_tokens


async def test_async_client_chat_and_stream(proxy, keysvc, key):
    secret, record = key
    aclient = openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=secret, max_retries=0)
    completion = await aclient.chat.completions.create(model="gpt-4o", messages=MSG)
    stream = await aclient.chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
    pieces = [c async for c in stream]
    await aclient.close()
    assert completion.usage.total_tokens > 0
    assert all(c.usage is None for c in pieces)
    events = keysvc.wait_usage(record.id, 2)
    assert sorted(e.streamed for e in events) == [False, True]
    assert {e.total_tokens for e in events} == {completion.usage.total_tokens}


def test_completions_embeddings_responses(proxy, mock, keysvc, key):
    secret, record = key
    c = client(proxy, secret)
    since = mock.last_seq()
    comp = c.completions.create(model="gpt-3.5-turbo-instruct", prompt="Once upon a time", max_tokens=5)
    emb = c.embeddings.create(model="text-embedding-3-small", input=["one", "two words"])
    resp = c.responses.create(model="gpt-4o-mini", input="hello there")
    streamed = list(c.completions.create(model="gpt-3.5-turbo-instruct", prompt="Once", max_tokens=5, stream=True))
    with c.responses.stream(model="o3-mini", input="hello there") as s:
        events_seen = [e.type for e in s]
        final = s.get_final_response()
    assert comp.usage.completion_tokens == 5
    assert len(emb.data) == 2 and emb.usage.prompt_tokens > 0
    assert resp.usage.total_tokens > 0
    assert all(ch.usage is None for ch in streamed)
    assert "response.completed" in events_seen
    calls = mock.calls(since)
    events = keysvc.wait_usage(record.id, 5)
    by_endpoint = {}
    for e in events:
        by_endpoint.setdefault(e.endpoint, []).append(e)
    assert {k: len(v) for k, v in by_endpoint.items()} == {"/v1/completions": 2, "/v1/embeddings": 1, "/v1/responses": 2}
    assert by_endpoint["/v1/embeddings"][0].completion_tokens == 0
    assert by_endpoint["/v1/embeddings"][0].prompt_tokens == emb.usage.prompt_tokens
    responses_events = sorted(by_endpoint["/v1/responses"], key=lambda e: e.streamed)
    assert responses_events[0].total_tokens == resp.usage.total_tokens
    assert responses_events[1].reasoning_tokens == final.usage.output_tokens_details.reasoning_tokens == 32
    assert responses_events[1].total_tokens == final.usage.total_tokens
    # the token sums equal what the provider reported
    reported = sum(call["usage"]["total_tokens"] for call in calls if call["usage"])
    assert sum(e.total_tokens for e in events) == reported


def test_models_list_and_retrieve(proxy, keysvc):
    secret, _ = keysvc.add_key(models=["gpt-4o*", "team-model", "claude-3-5-haiku-20241022"])
    c = client(proxy, secret)
    ids = [m.id for m in c.models.list()]
    assert "gpt-4o" in ids and "gpt-4o-mini" in ids and "team-model" in ids
    assert "claude-3-5-haiku-20241022" in ids
    assert "o3" not in ids and "gpt-5" not in ids  # not allowed for this key
    assert c.models.retrieve("gpt-4o").id == "gpt-4o"
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("o3")  # exists upstream, not allowed
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("gpt-4o-does-not-exist")
    # Anthropic's shape when asked with anthropic-version
    r = httpx.get(proxy.url + "/v1/models", headers={"x-api-key": secret, "anthropic-version": "2023-06-01"})
    assert r.status_code == 200 and r.json()["data"][0]["type"] == "model" and "has_more" in r.json()


def test_model_rename_route_rewrites_only_the_model(proxy, mock, keysvc, key):
    secret, record = key
    since = mock.last_seq()
    client(proxy, secret).chat.completions.create(model="team-model", messages=MSG, temperature=0.25, user="u1")
    (call,) = mock.calls(since)
    assert call["model"] == "gpt-4o-mini"
    assert call["body"]["temperature"] == 0.25 and call["body"]["user"] == "u1" and call["body"]["messages"] == MSG
    (event,) = keysvc.wait_usage(record.id, 1)
    assert (event.model, event.upstream_model) == ("team-model", "gpt-4o-mini")


def test_other_v1_paths_are_forwarded_as_is(proxy, mock, keysvc, key):
    secret, record = key
    since = mock.last_seq()
    r = httpx.get(proxy.url + "/v1/files?limit=2", headers={"authorization": f"Bearer {secret}"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"  # the mock's own answer
    (call,) = mock.calls(since)
    assert call["path"] == "/v1/files" and call["api_key"] == OPENAI_KEY
    (event,) = keysvc.wait_usage(record.id, 1)
    assert event.endpoint == "/v1/files" and event.status_code == 404 and event.status == "error"


def test_key_info(proxy, keysvc):
    secret, record = keysvc.add_key(models=["gpt-4o-mini"], rpm_limit=100, budget_usd=5.0, budget_period="monthly")
    r = httpx.get(proxy.url + "/v1/key/info", headers={"authorization": f"Bearer {secret}"})
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["key_id"] == record.id and info["rpm_limit"] == 100
    assert info["allowed_models"] == ["gpt-4o-mini"]
    assert info["budget"]["budget_usd"] == 5.0 and info["budget"]["remaining_usd"] == 5.0
    assert r.headers["x-request-id"]
