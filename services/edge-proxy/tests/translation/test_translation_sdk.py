"""The official SDKs as clients of translated answers, over real HTTP.

A tiny local HTTP server plays a translating gateway: it translates the SDK's request with the
library, gets the upstream answer (a golden recording, or the devstack mock provider — the one
fake the house rules allow — reached in-process through its ASGI app), translates the answer back
and streams it to the SDK in small pieces. The SDKs' own parsers (``chat.completions.stream``
accumulation, ``messages.stream`` event accumulation, error classes) then judge the result.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from llmgw_devstack.mock_provider.app import create_app as create_mock_provider
from translation_golden import ANTHROPIC_TOOL_STREAM, OPENAI_TOOL_STREAM
from translation_helpers import Answer, SDKServer, split_every

from llmgw_proxy.domain.translation import (
    ANTHROPIC_CALLER_TO_OPENAI,
    ANTHROPIC_VERSION,
    OPENAI_CALLER_TO_ANTHROPIC,
    StreamTranslator,
    Translation,
    TranslationError,
)

ANTHROPIC_UPSTREAM_MODEL = "claude-sonnet-4-5-20250929"
OPENAI_UPSTREAM_MODEL = "gpt-4o"
SSE = "text/event-stream"
JSON = "application/json"

WEATHER_TOOL_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}
WEATHER_TOOL_ANTHROPIC = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
}

# upstream(path, translated body) -> (status, body bytes)
Upstream = Callable[[str, dict[str, Any]], tuple[int, bytes]]


def translating_gateway(upstream: Upstream, piece_size: int = 7) -> Callable[[str, dict[str, Any], dict[str, str]], Answer]:
    """A handler for SDKServer doing what the proxy does on a translation path."""
    routes: dict[str, tuple[Translation, str]] = {
        "/v1/chat/completions": (OPENAI_CALLER_TO_ANTHROPIC, ANTHROPIC_UPSTREAM_MODEL),
        "/v1/messages": (ANTHROPIC_CALLER_TO_OPENAI, OPENAI_UPSTREAM_MODEL),
    }

    def handle(path: str, body: dict[str, Any], headers: dict[str, str]) -> Answer:
        if path not in routes:
            return Answer(404, JSON, [b'{"error": {"message": "no route"}}'])
        translation, upstream_model = routes[path]
        requested = body.get("model", "")
        try:
            upstream_body = translation.request(body, upstream_model)
        except TranslationError as exc:
            return Answer(exc.status, JSON, [json.dumps(translation.error_body(exc)).encode()])
        status, raw = upstream(translation.upstream_path, upstream_body)
        if status != 200:
            return Answer(status, JSON, [json.dumps(translation.upstream_error(status, raw)).encode()])
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return Answer(200, SSE, _relay(translation.new_stream(requested, include_usage), raw, piece_size))
        return Answer(200, JSON, [json.dumps(translation.response(json.loads(raw), requested)).encode()])

    return handle


def _relay(stream: StreamTranslator, raw: bytes, size: int) -> Iterator[bytes]:
    for piece in split_every(raw, size):
        yield stream.feed(piece)
    yield stream.close()


def recorded(status: int, body: bytes, seen: list[dict[str, Any]] | None = None) -> Upstream:
    def upstream(path: str, translated: dict[str, Any]) -> tuple[int, bytes]:
        if seen is not None:
            seen.append(translated)
        return status, body

    return upstream


@pytest.fixture(scope="module")
def mock_provider():
    return create_mock_provider()


@pytest.fixture
def via_mock_provider(mock_provider) -> Upstream:
    """Upstream = the devstack mock provider (Anthropic and OpenAI wire formats), in-process."""
    mock_provider.reset()

    async def call(path: str, translated: dict[str, Any]) -> tuple[int, bytes]:
        transport = httpx.ASGITransport(app=mock_provider)
        async with httpx.AsyncClient(transport=transport, base_url="http://mock") as client:
            headers = {"anthropic-version": ANTHROPIC_VERSION} if path == "/v1/messages" else {}
            response = await client.post(path, json=translated, headers=headers)
            return response.status_code, response.content

    return lambda path, translated: asyncio.run(call(path, translated))


def openai_client(server: SDKServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-llmgw-test", max_retries=0, timeout=10)


def anthropic_client(server: SDKServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="sk-llmgw-test", max_retries=0, timeout=10)


# --- OpenAI SDK, Anthropic upstream -----------------------------------------------------------------


def test_openai_sdk_streams_recorded_tool_calls(sdk_server: SDKServer) -> None:
    seen: list[dict[str, Any]] = []
    sdk_server.handler = translating_gateway(recorded(200, ANTHROPIC_TOOL_STREAM, seen), piece_size=3)
    with openai_client(sdk_server).chat.completions.stream(
        model="my-claude",
        messages=[{"role": "user", "content": "Weather in SF?"}],
        tools=[WEATHER_TOOL_OPENAI],
        stream_options={"include_usage": True},
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_completion()
    assert "content.delta" in kinds and "tool_calls.function.arguments.done" in kinds
    assert seen[0]["stream"] is True and seen[0]["tools"][0]["name"] == "get_weather"
    choice = final.choices[0]
    assert final.model == "my-claude" and final.id == "chatcmpl-014p7gG3wDgGV9EUtLvnow3U"
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Okay, let's check the weather — ☀️"
    calls = choice.message.tool_calls
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", {"location": "San Francisco, CA"}),
        ("toolu_02", "get_time", {}),
    ]
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens, final.usage.total_tokens) == (580, 89, 669)
    assert final.usage.prompt_tokens_details.cached_tokens == 100


def test_openai_sdk_raw_chunks_without_usage(sdk_server: SDKServer) -> None:
    sdk_server.handler = translating_gateway(recorded(200, ANTHROPIC_TOOL_STREAM), piece_size=1)
    chunks = list(
        openai_client(sdk_server).chat.completions.create(
            model="my-claude", messages=[{"role": "user", "content": "x"}], tools=[WEATHER_TOOL_OPENAI], stream=True
        )
    )
    assert all(c.object == "chat.completion.chunk" and c.usage is None for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_openai_sdk_sees_a_mid_stream_error(sdk_server: SDKServer) -> None:
    cut = ANTHROPIC_TOOL_STREAM.split(b"event: content_block_stop")[0]
    error = b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n'
    sdk_server.handler = translating_gateway(recorded(200, cut + error))
    stream = openai_client(sdk_server).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True)
    with pytest.raises(openai.APIError, match="Overloaded"):
        list(stream)


def test_openai_sdk_gets_upstream_errors_in_its_dialect(sdk_server: SDKServer) -> None:
    body = b'{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}'
    sdk_server.handler = translating_gateway(recorded(429, body))
    with pytest.raises(openai.RateLimitError) as err:
        openai_client(sdk_server).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert err.value.code == "rate_limit_exceeded"
    assert "per-minute rate limit" in err.value.message


def test_openai_sdk_gets_a_400_for_an_unmappable_parameter(sdk_server: SDKServer) -> None:
    sdk_server.handler = translating_gateway(recorded(200, b"{}"))
    with pytest.raises(openai.BadRequestError) as err:
        openai_client(sdk_server).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], logit_bias={"1": 5})
    assert err.value.param == "logit_bias" and err.value.code == "unsupported_parameter"


@pytest.mark.parametrize("stream", [False, True])
def test_openai_sdk_against_the_mock_anthropic_provider(sdk_server: SDKServer, via_mock_provider: Upstream, mock_provider, stream: bool) -> None:
    sdk_server.handler = translating_gateway(via_mock_provider)
    client = openai_client(sdk_server)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Oslo?"}]
    if stream:
        with client.chat.completions.stream(
            model="claude-via-openai", messages=messages, tools=[WEATHER_TOOL_OPENAI], tool_choice="required", stream_options={"include_usage": True}
        ) as s:
            completion = s.get_final_completion()
    else:
        completion = client.chat.completions.create(model="claude-via-openai", messages=messages, tools=[WEATHER_TOOL_OPENAI], tool_choice="required")
    call = mock_provider.calls()[-1]
    assert call["path"] == "/v1/messages" and call["status"] == 200
    assert call["model"] == ANTHROPIC_UPSTREAM_MODEL
    choice = completion.choices[0]
    assert completion.model == "claude-via-openai"
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].function.name == "get_weather"
    assert isinstance(json.loads(choice.message.tool_calls[0].function.arguments), dict)
    usage = call["usage"]
    assert completion.usage.prompt_tokens == usage["prompt_tokens"]
    assert completion.usage.completion_tokens == usage["completion_tokens"]

    # a second turn with the tool result goes through as well (text answer this time)
    tool_call = choice.message.tool_calls[0]
    follow_up = client.chat.completions.create(
        model="claude-via-openai",
        messages=[
            *messages,
            {"role": "assistant", "content": None, "tool_calls": [tool_call.model_dump()]},
            {"role": "tool", "tool_call_id": tool_call.id, "content": "3 C, snow"},
        ],
        max_tokens=20,
    )
    sent = mock_provider.calls()[-1]["body"]
    assert sent["messages"][-1]["content"][0] == {"type": "tool_result", "tool_use_id": tool_call.id, "content": "3 C, snow"}
    assert follow_up.choices[0].message.content and follow_up.choices[0].finish_reason in ("stop", "length")


# --- Anthropic SDK, OpenAI upstream -----------------------------------------------------------------


def test_anthropic_sdk_streams_recorded_tool_calls(sdk_server: SDKServer) -> None:
    seen: list[dict[str, Any]] = []
    sdk_server.handler = translating_gateway(recorded(200, OPENAI_TOOL_STREAM, seen), piece_size=2)
    with anthropic_client(sdk_server).messages.stream(
        model="my-gpt",
        max_tokens=256,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL_ANTHROPIC],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert seen[0]["stream_options"] == {"include_usage": True}
    assert text == "Sure, checking ✓"
    assert final.id == "msg_Abc123" and final.model == "my-gpt"
    assert final.stop_reason == "tool_use"
    assert [(b.type, getattr(b, "name", None), getattr(b, "input", None)) for b in final.content] == [
        ("text", None, None),
        ("tool_use", "get_weather", {"location": "Paris"}),
        ("tool_use", "get_time", {}),
    ]
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens, final.usage.output_tokens) == (72, 128, 30)


def test_anthropic_sdk_sees_a_mid_stream_error(sdk_server: SDKServer) -> None:
    head = OPENAI_TOOL_STREAM[: OPENAI_TOOL_STREAM.index(b"data:", 10)]
    error = b'data: {"error": {"message": "The server had an error processing your request.", "type": "server_error", "param": null, "code": null}}\n\n'
    sdk_server.handler = translating_gateway(recorded(200, head + error))
    with pytest.raises(anthropic.APIStatusError, match="server had an error"):
        with anthropic_client(sdk_server).messages.stream(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]) as stream:
            stream.get_final_message()


def test_anthropic_sdk_gets_upstream_errors_in_its_dialect(sdk_server: SDKServer) -> None:
    body = b'{"error": {"message": "Incorrect API key provided: sk-...", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}'
    sdk_server.handler = translating_gateway(recorded(401, body))
    with pytest.raises(anthropic.AuthenticationError) as err:
        anthropic_client(sdk_server).messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert err.value.body == {"type": "error", "error": {"type": "authentication_error", "message": "Incorrect API key provided: sk-..."}}


def test_anthropic_sdk_gets_a_400_for_an_unmappable_parameter(sdk_server: SDKServer) -> None:
    sdk_server.handler = translating_gateway(recorded(200, b"{}"))
    with pytest.raises(anthropic.BadRequestError) as err:
        anthropic_client(sdk_server).messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}], extra_body={"top_k": 5}
        )
    assert "top_k" in err.value.message


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk_against_the_mock_openai_provider(sdk_server: SDKServer, via_mock_provider: Upstream, mock_provider, stream: bool) -> None:
    sdk_server.handler = translating_gateway(via_mock_provider)
    client = anthropic_client(sdk_server)
    kwargs: dict[str, Any] = {
        "model": "gpt-via-anthropic",
        "max_tokens": 200,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Weather in Oslo?"}],
        "tools": [WEATHER_TOOL_ANTHROPIC],
        "tool_choice": {"type": "any"},
    }
    if stream:
        with client.messages.stream(**kwargs) as s:
            message = s.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    call = mock_provider.calls()[-1]
    assert call["path"] == "/v1/chat/completions" and call["status"] == 200 and call["model"] == OPENAI_UPSTREAM_MODEL
    assert message.model == "gpt-via-anthropic" and message.stop_reason == "tool_use"
    tool_use = message.content[-1]
    assert tool_use.type == "tool_use" and tool_use.name == "get_weather" and isinstance(tool_use.input, dict)
    usage = call["usage"]
    assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) == usage["prompt_tokens"]
    assert message.usage.output_tokens == usage["completion_tokens"]

    # second turn: the tool result goes back as an OpenAI tool message
    answer = client.messages.create(
        model="gpt-via-anthropic",
        max_tokens=50,
        messages=[
            *kwargs["messages"],
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "3 C, snow"}]},
        ],
    )
    sent = mock_provider.calls()[-1]["body"]
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": tool_use.id, "content": "3 C, snow"}
    assert answer.content[0].type == "text" and answer.stop_reason in ("end_turn", "max_tokens")
