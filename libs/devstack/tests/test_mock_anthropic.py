"""The mock provider's Anthropic dialect, driven by the official anthropic SDK."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from llmgw_devstack.mock_provider import DEFAULT_ANSWER
from llmgw_devstack.mock_provider.config import MOCK_ANTHROPIC_KEY

MODEL = "claude-sonnet-4-6"
MESSAGES = [{"role": "user", "content": "hi"}]  # 3 + 4 + ceil(6/4) = 9
WORDS = len(DEFAULT_ANSWER.split())
TOOL = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city"],
    },
}
HEADERS = {"x-api-key": MOCK_ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}


def test_message_non_streaming(ant, mock_provider):
    raw = ant.messages.with_raw_response.create(
        model=MODEL, max_tokens=100, messages=MESSAGES, extra_headers={"anthropic-beta": "some-beta-2025"}
    )
    assert raw.headers["request-id"].startswith("req_")
    assert raw.headers["x-request-id"] == raw.headers["request-id"]
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant" and message.model == MODEL
    assert message.content[0].type == "text" and message.content[0].text == DEFAULT_ANSWER
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 9
    assert message.usage.output_tokens == WORDS
    assert message.usage.cache_read_input_tokens == 0 and message.usage.cache_creation_input_tokens == 0

    (call,) = mock_provider.calls()
    assert call["provider"] == "anthropic"
    assert call["api_key"] == MOCK_ANTHROPIC_KEY
    assert call["headers"]["anthropic-version"]  # whatever the SDK sends, recorded as sent
    assert call["headers"]["anthropic-beta"] == "some-beta-2025"
    assert "x-api-key" not in call["headers"]
    assert call["usage"] == {
        "prompt_tokens": 9,
        "completion_tokens": WORDS,
        "total_tokens": 9 + WORDS,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
    }


def test_stream_final_message_usage_equals_non_stream(ant, mock_provider):
    plain = ant.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)
    with ant.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == DEFAULT_ANSWER
    assert final.content[0].text == DEFAULT_ANSWER
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == plain.usage.input_tokens
    assert final.usage.output_tokens == plain.usage.output_tokens
    plain_call, stream_call = mock_provider.calls()
    assert stream_call["stream"] is True
    assert stream_call["usage"] == plain_call["usage"]


def test_stream_event_sequence(mock_provider):
    body = {"model": MODEL, "max_tokens": 100, "messages": MESSAGES, "stream": True}
    with httpx.stream("POST", f"{mock_provider.anthropic_base_url}/v1/messages", json=body, headers=HEADERS) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = []
    for block in filter(None, raw.split("\n\n")):
        name_line, data_line = block.split("\n")
        name = name_line.removeprefix("event: ")
        data = json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        events.append(data)
    names = [e["type"] for e in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    start_usage = events[0]["message"]["usage"]
    assert start_usage["input_tokens"] == 9
    delta = events[-2]
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["output_tokens"] == WORDS


def test_max_tokens_truncates_and_is_required(ant, mock_provider):
    message = ant.messages.create(model=MODEL, max_tokens=2, messages=MESSAGES)
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 2
    with ant.messages.stream(model=MODEL, max_tokens=2, messages=MESSAGES) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 2
    response = httpx.post(
        f"{mock_provider.anthropic_base_url}/v1/messages", json={"model": MODEL, "messages": MESSAGES}, headers=HEADERS
    )
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]


def test_cache_control_usage(ant, mock_provider):
    system = [{"type": "text", "text": "You are terse. " * 50, "cache_control": {"type": "ephemeral"}}]
    total = ant.messages.count_tokens(model=MODEL, system=system, messages=MESSAGES).input_tokens
    message = ant.messages.create(model=MODEL, max_tokens=100, system=system, messages=MESSAGES)
    usage = message.usage
    assert usage.cache_read_input_tokens == total // 2 > 0
    assert usage.cache_creation_input_tokens == total // 4 > 0
    assert usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens == total
    with ant.messages.stream(model=MODEL, max_tokens=100, system=system, messages=MESSAGES) as stream:
        final = stream.get_final_message()
    assert final.usage.cache_read_input_tokens == usage.cache_read_input_tokens
    assert final.usage.cache_creation_input_tokens == usage.cache_creation_input_tokens
    recorded = mock_provider.calls()[-1]["usage"]
    assert recorded["prompt_tokens"] == total
    assert recorded["cached_tokens"] == usage.cache_read_input_tokens
    assert recorded["cache_write_tokens"] == usage.cache_creation_input_tokens


def test_count_tokens(ant, mock_provider):
    counted = ant.messages.count_tokens(model=MODEL, messages=MESSAGES)
    assert counted.input_tokens == 9
    with_tools = ant.messages.count_tokens(model=MODEL, messages=MESSAGES, tools=[TOOL])
    message = ant.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES, tools=[TOOL])
    assert with_tools.input_tokens == message.usage.input_tokens > 9
    assert mock_provider.calls()[0]["path"] == "/v1/messages/count_tokens"
    assert mock_provider.calls()[0]["usage"] is None


def test_tool_use(ant):
    message = ant.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, tools=[TOOL])
    assert message.stop_reason == "tool_use"
    (block,) = message.content
    assert block.type == "tool_use" and block.name == "get_weather" and block.id.startswith("toolu_")
    assert block.input == {"city": "mock", "unit": "c"}

    partials = []
    with ant.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES, tools=[TOOL]) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                partials.append(event.delta.partial_json)
        final = stream.get_final_message()
    assert len(partials) > 2
    assert json.loads("".join(partials)) == {"city": "mock", "unit": "c"}
    assert final.content[0].input == {"city": "mock", "unit": "c"}
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens == message.usage.output_tokens

    none = ant.messages.create(
        model=MODEL, max_tokens=100, messages=MESSAGES, tools=[TOOL], tool_choice={"type": "none"}
    )
    assert none.content[0].type == "text"


def test_models_shapes(ant, mock_provider):
    page = ant.models.list()
    assert page.data[0].type == "model" and page.data[0].display_name.startswith("Claude")
    assert MODEL in [m.id for m in page.data]
    assert ant.models.retrieve(MODEL).id == MODEL
    with pytest.raises(anthropic.NotFoundError):
        ant.models.retrieve("claude-nope")
    raw = httpx.get(f"{mock_provider.url}/v1/models", headers=HEADERS).json()
    assert raw["has_more"] is False and raw["first_id"] == raw["data"][0]["id"]
    assert raw["last_id"] == raw["data"][-1]["id"]
    limited = httpx.get(f"{mock_provider.url}/v1/models?limit=1", headers=HEADERS).json()
    assert len(limited["data"]) == 1 and limited["has_more"] is True
    # without anthropic-version the same path is OpenAI's
    openai_shape = httpx.get(
        f"{mock_provider.url}/v1/models", headers={"authorization": "Bearer sk-mock-openai-0123456789abcdef"}
    ).json()
    assert openai_shape["object"] == "list" and openai_shape["data"][0]["object"] == "model"


def test_auth(mock_provider):
    bad = anthropic.Anthropic(base_url=mock_provider.anthropic_base_url, api_key="sk-ant-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as exc:
        bad.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
    assert exc.value.body["type"] == "error"
    assert exc.value.body["error"]["type"] == "authentication_error"
    assert mock_provider.calls()[-1]["api_key"] == "sk-ant-wrong"
    assert mock_provider.calls()[-1]["status"] == 401

    bearer = anthropic.Anthropic(
        base_url=mock_provider.anthropic_base_url, api_key=None, auth_token=MOCK_ANTHROPIC_KEY, max_retries=0
    )
    assert bearer.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES).content
    assert mock_provider.calls()[-1]["api_key"] == MOCK_ANTHROPIC_KEY
