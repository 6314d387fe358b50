"""Anthropic dialect end to end with the official anthropic SDK (sync and async)."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from conftest import ANTHROPIC_KEY

MODEL = "claude-haiku-4-5-20251001"
MSG = [{"role": "user", "content": "Hello Claude, this is a gateway test"}]


def client(proxy, secret) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.url, api_key=secret, max_retries=0)


def test_messages_non_stream_with_bearer_key(proxy, mock, keysvc, key):
    """anthropic SDK 2.x sends the key as Authorization: Bearer."""
    secret, record = key
    since = mock.last_seq()
    raw = client(proxy, secret).messages.with_raw_response.create(model=MODEL, max_tokens=100, messages=MSG)
    message = raw.parse()
    assert message.content[0].text.startswith("Hello!")
    assert raw.headers["x-request-id"] and "x-llmgw-overhead-ms" in raw.headers
    (call,) = mock.calls(since)
    assert call["api_key"] == ANTHROPIC_KEY and secret not in str(call)
    assert call["headers"].get("anthropic-version")  # forwarded (the SDK sends one)
    (event,) = keysvc.wait_usage(record.id, 1)
    assert (event.provider, event.endpoint, event.status) == ("anthropic", "/v1/messages", "ok")
    assert event.prompt_tokens == message.usage.input_tokens == call["usage"]["prompt_tokens"]
    assert event.completion_tokens == message.usage.output_tokens


def test_messages_with_x_api_key_and_cache_tokens_normalised(proxy, mock, keysvc, key):
    secret, record = key
    body = {
        "model": MODEL,
        "max_tokens": 50,
        "system": [{"type": "text", "text": "You are terse. " * 20, "cache_control": {"type": "ephemeral"}}],
        "messages": MSG,
    }
    r = httpx.post(
        proxy.url + "/v1/messages", json=body, headers={"x-api-key": secret, "anthropic-version": "2023-06-01"}
    )
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    assert usage["cache_read_input_tokens"] > 0 and usage["cache_creation_input_tokens"] > 0
    (event,) = keysvc.wait_usage(record.id, 1)
    assert event.prompt_tokens == usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]
    assert event.cached_tokens == usage["cache_read_input_tokens"]
    assert event.cache_write_tokens == usage["cache_creation_input_tokens"]
    assert event.total_tokens == event.prompt_tokens + event.completion_tokens


def test_messages_stream(proxy, mock, keysvc, key):
    secret, record = key
    since = mock.last_seq()
    with client(proxy, secret).messages.stream(model=MODEL, max_tokens=100, messages=MSG) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith("Hello!")
    (call,) = mock.calls(since)
    (event,) = keysvc.wait_usage(record.id, 1)
    assert event.streamed and event.status == "ok"
    assert event.completion_tokens == final.usage.output_tokens == 13  # message_delta, not the placeholder 1
    assert event.prompt_tokens == call["usage"]["prompt_tokens"]


async def test_async_messages_and_count_tokens(proxy, keysvc, key):
    secret, record = key
    aclient = anthropic.AsyncAnthropic(base_url=proxy.url, api_key=secret, max_retries=0)
    message = await aclient.messages.create(model=MODEL, max_tokens=20, messages=MSG)
    count = await aclient.messages.count_tokens(model=MODEL, messages=MSG)
    stream = await aclient.messages.create(model=MODEL, max_tokens=20, messages=MSG, stream=True)
    kinds = [event.type async for event in stream]
    await aclient.close()
    assert count.input_tokens == message.usage.input_tokens
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    events = keysvc.wait_usage(record.id, 3)
    counted = [e for e in events if e.endpoint == "/v1/messages/count_tokens"]
    assert len(counted) == 1 and counted[0].total_tokens == 0  # counting costs nothing


def test_endpoints_without_a_counterpart_are_not_translated(proxy, mock, key):
    """Only /v1/chat/completions ⇄ /v1/messages translate; the others answer a clear 400 (no upstream call)."""
    secret, _ = key
    since = mock.last_seq()
    with pytest.raises(openai.BadRequestError) as exc:
        openai.OpenAI(base_url=proxy.url + "/v1", api_key=secret, max_retries=0).embeddings.create(
            model=MODEL, input="hello"
        )
    assert exc.value.body["code"] == "translation_not_supported"
    assert "/v1/chat/completions" in exc.value.body["message"]
    with pytest.raises(anthropic.BadRequestError) as exc2:
        client(proxy, secret).messages.count_tokens(model="gpt-4o", messages=MSG)
    assert exc2.value.body["error"]["type"] == "invalid_request_error"
    assert "translated" in exc2.value.body["error"]["message"]
    assert mock.calls(since) == []


def test_anthropic_errors_in_anthropic_shape(proxy):
    r = httpx.post(proxy.url + "/v1/messages", json={"model": MODEL, "messages": MSG, "max_tokens": 5},
                   headers={"x-api-key": "sk-llmgw-nope"})
    assert r.status_code == 401
    assert r.json() == {"type": "error", "error": {"type": "authentication_error", "message": "Invalid API key."}}
    with pytest.raises(anthropic.AuthenticationError):
        client(proxy, "sk-llmgw-nope").messages.create(model=MODEL, max_tokens=10, messages=MSG)


def test_models_listing_paginates_like_anthropic(proxy, key):
    """The anthropic SDK's auto-pagination walks ``after_id`` pages of ``limit``; every page is a
    proper slice and the walk sees every allowed model exactly once."""
    secret, _ = key
    sdk = client(proxy, secret)
    everything = [m.id for m in sdk.models.list(limit=1000)]
    assert len(everything) >= 3
    first = sdk.models.list(limit=2)
    assert [m.id for m in first.data] == everything[:2] and first.has_more is True
    walked = [m.id for m in sdk.models.list(limit=2)]  # iterating follows after_id to the end
    assert walked == everything
    before = sdk.models.list(limit=2, before_id=everything[3] if len(everything) > 3 else everything[-1])
    assert [m.id for m in before.data] == everything[1:3] if len(everything) > 3 else everything[-3:-1]
    bad = httpx.get(proxy.url + "/v1/models?limit=0", headers={"x-api-key": secret, "anthropic-version": "2023-06-01"})
    assert bad.status_code == 400 and bad.json()["type"] == "error"
