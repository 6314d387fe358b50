"""Translation paths end to end: the official SDKs → proxy → the devstack mock provider speaking the
*other* API format, usage events read back from JetStream; translation errors; fallback from a
failing OpenAI deployment to an Anthropic one (with translation)."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest

from conftest import ANTHROPIC_KEY, OPENAI_KEY

CLAUDE = "claude-sonnet-4-5-20250929"
GPT = "gpt-4o-mini"
MSG = [{"role": "user", "content": "Say hello to the gateway test"}]

WEATHER_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}
WEATHER_ANTHROPIC = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
}


def oai(proxy, secret) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key=secret, max_retries=0)


def ant(proxy, secret) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.url, api_key=secret, max_retries=0)


def assert_tokens(event, usage: dict) -> None:
    """The usage event carries the provider's counts, normalised (CONTRACT.md)."""
    assert usage is not None and usage["total_tokens"] > 0
    for field in ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "cache_write_tokens"):
        assert getattr(event, field) == usage[field], field


# --- OpenAI SDK → Anthropic model ---------------------------------------------------------------


def test_openai_sdk_calls_claude_non_stream(proxy, mock, keysvc, key):
    secret, record = key
    since = mock.last_seq()
    raw = oai(proxy, secret).chat.completions.with_raw_response.create(
        model=CLAUDE, messages=[{"role": "system", "content": "Be brief."}, *MSG], temperature=1.7, max_tokens=50,
        stop=["\n\n"],
    )
    completion = raw.parse()
    assert completion.object == "chat.completion" and completion.model == CLAUDE
    assert completion.id.startswith("chatcmpl-")
    assert completion.choices[0].message.content.startswith("Hello!")
    assert completion.choices[0].finish_reason == "stop"
    assert raw.headers["content-type"].startswith("application/json")
    (call,) = mock.calls(since)
    assert call["path"] == "/v1/messages" and call["provider"] == "anthropic"
    assert call["api_key"] == ANTHROPIC_KEY and secret not in json.dumps(call)
    assert call["headers"]["anthropic-version"] == "2023-06-01"
    body = call["body"]
    assert body["model"] == CLAUDE and body["system"] == "Be brief." and body["messages"] == MSG
    assert body["max_tokens"] == 50 and body["temperature"] == 1.0 and body["stop_sequences"] == ["\n\n"]
    u = completion.usage
    assert (u.prompt_tokens, u.completion_tokens) == (call["usage"]["prompt_tokens"], call["usage"]["completion_tokens"])
    (event,) = keysvc.wait_usage(record.id, 1)
    assert (event.model, event.upstream_model, event.provider) == (CLAUDE, CLAUDE, "anthropic")
    assert event.deployment == f"anthropic/{CLAUDE}" and event.endpoint == "/v1/chat/completions"
    assert event.status == "ok" and event.attempts == 1 and not event.streamed and not event.cached
    assert_tokens(event, call["usage"])


def test_openai_sdk_calls_claude_stream_without_usage(proxy, mock, keysvc, key):
    secret, record = key
    since = mock.last_seq()
    chunks = list(oai(proxy, secret).chat.completions.create(model=CLAUDE, messages=MSG, stream=True))
    assert all(c.object == "chat.completion.chunk" and c.model == CLAUDE for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Hello!")
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None and c.choices for c in chunks)  # the client did not ask for usage
    (call,) = mock.calls(since)
    assert call["path"] == "/v1/messages" and call["stream"] is True
    (event,) = keysvc.wait_usage(record.id, 1)
    assert event.streamed and event.status == "ok" and event.provider == "anthropic"
    assert event.ttfb_ms is not None and event.ttfb_ms <= event.latency_ms
    assert_tokens(event, call["usage"])  # metered although the client got no usage chunk


def test_openai_sdk_calls_claude_stream_with_tool_calls_and_usage(proxy, mock, keysvc, key):
    secret, record = key
    since = mock.last_seq()
    with oai(proxy, secret).chat.completions.stream(
        model=CLAUDE, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER_OPENAI],
        tool_choice="required", stream_options={"include_usage": True},
    ) as stream:
        chunks = [event.chunk for event in stream if event.type == "chunk"]
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    (tool_call,) = choice.message.tool_calls
    assert tool_call.function.name == "get_weather" and json.loads(tool_call.function.arguments) == {"location": "mock"}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None  # the usage chunk it asked for
    (call,) = mock.calls(since)
    assert call["body"]["tool_choice"] == {"type": "any"}
    assert call["body"]["tools"][0]["input_schema"] == WEATHER_OPENAI["function"]["parameters"]
    assert final.usage.prompt_tokens == call["usage"]["prompt_tokens"]
    assert final.usage.completion_tokens == call["usage"]["completion_tokens"]
    (event,) = keysvc.wait_usage(record.id, 1)
    assert event.streamed and event.provider == "anthropic"
    assert_tokens(event, call["usage"])


def test_openai_tool_round_trip_to_claude(proxy, mock, keysvc, key):
    """Tool results and assistant tool calls from an OpenAI conversation reach Claude translated."""
    secret, _ = key
    since = mock.last_seq()
    completion = oai(proxy, secret).chat.completions.create(
        model=CLAUDE,
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees"},
        ],
        tools=[WEATHER_OPENAI], tool_choice="none",
    )
    assert completion.choices[0].message.content.startswith("Hello!")
    (call,) = mock.calls(since)
    messages = call["body"]["messages"]
    assert messages[1]["content"] == [{"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}}]
    assert messages[2]["content"][0] == {"type": "tool_result", "tool_use_id": "call_1", "content": "18 degrees"}


# --- Anthropic SDK → OpenAI model ---------------------------------------------------------------


def test_anthropic_sdk_calls_gpt_non_stream(proxy, mock, keysvc, key):
    secret, record = key
    since = mock.last_seq()
    message = ant(proxy, secret).messages.create(
        model=GPT, max_tokens=100, system="Be brief.", messages=MSG, extra_headers={"anthropic-beta": "some-beta-2025"}
    )
    assert message.type == "message" and message.role == "assistant" and message.model == GPT
    assert message.content[0].type == "text" and message.content[0].text.startswith("Hello!")
    assert message.stop_reason == "end_turn"
    (call,) = mock.calls(since)
    assert call["path"] == "/v1/chat/completions" and call["provider"] == "openai"
    assert call["api_key"] == OPENAI_KEY
    # the caller's Anthropic headers are not sent to OpenAI
    assert not any(name.startswith("anthropic-") for name in call["headers"])
    body = call["body"]
    assert body["model"] == GPT and body["max_completion_tokens"] == 100
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, *MSG]
    assert message.usage.input_tokens == call["usage"]["prompt_tokens"] - call["usage"]["cached_tokens"]
    assert message.usage.output_tokens == call["usage"]["completion_tokens"]
    (event,) = keysvc.wait_usage(record.id, 1)
    assert (event.model, event.provider, event.deployment) == (GPT, "openai", f"openai/{GPT}")
    assert event.endpoint == "/v1/messages" and event.status == "ok" and not event.streamed
    assert_tokens(event, call["usage"])


def test_anthropic_sdk_calls_gpt_stream_with_tool_use(proxy, mock, keysvc, key):
    secret, record = key
    since = mock.last_seq()
    with ant(proxy, secret).messages.stream(
        model=GPT, max_tokens=200, messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_ANTHROPIC], tool_choice={"type": "tool", "name": "get_weather"},
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and "message_stop" in kinds
    assert final.stop_reason == "tool_use" and final.model == GPT
    (block,) = [b for b in final.content if b.type == "tool_use"]
    assert block.name == "get_weather" and block.input == {"location": "mock"}
    (call,) = mock.calls(since)
    assert call["path"] == "/v1/chat/completions" and call["stream"] is True
    assert call["body"]["stream_options"] == {"include_usage": True}
    assert call["body"]["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert final.usage.output_tokens == call["usage"]["completion_tokens"]
    (event,) = keysvc.wait_usage(record.id, 1)
    assert event.streamed and event.status == "ok" and event.provider == "openai"
    assert_tokens(event, call["usage"])


def test_anthropic_sdk_text_stream_from_gpt(proxy, mock, keysvc, key):
    secret, record = key
    with ant(proxy, secret).messages.stream(model=GPT, max_tokens=100, messages=MSG) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith("Hello!") and final.stop_reason == "end_turn"
    (event,) = keysvc.wait_usage(record.id, 1)
    assert event.completion_tokens == final.usage.output_tokens > 0


# --- errors ------------------------------------------------------------------------------------------


def test_translation_error_is_a_400_in_each_dialect_without_upstream_call(proxy, mock, keysvc, key):
    secret, record = key
    since = mock.last_seq()
    with pytest.raises(openai.BadRequestError) as exc:
        oai(proxy, secret).chat.completions.create(model=CLAUDE, messages=MSG, logit_bias={"50256": -100})
    assert exc.value.body["code"] == "unsupported_parameter" and exc.value.body["param"] == "logit_bias"
    assert exc.value.body["type"] == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError) as exc2:
        ant(proxy, secret).messages.create(model=GPT, max_tokens=10, messages=MSG, extra_body={"top_k": 5})
    assert exc2.value.body["type"] == "error"
    assert exc2.value.body["error"]["type"] == "invalid_request_error" and "top_k" in exc2.value.body["error"]["message"]
    assert mock.calls(since) == []  # nothing reached a provider
    # and no usage event: the next (successful) request is the only one recorded
    oai(proxy, secret).chat.completions.create(model=CLAUDE, messages=MSG)
    events = keysvc.wait_usage(record.id, 1)
    assert len(events) == 1 and events[0].status == "ok"


def test_upstream_errors_come_back_in_the_callers_dialect(proxy, mock, key):
    secret, _ = key
    mock.set_fault("status", status=400, model="claude-bad-request", count=1, message="messages: bad thing")
    with pytest.raises(openai.BadRequestError) as exc:
        oai(proxy, secret).chat.completions.create(model="claude-bad-request", messages=MSG)
    assert exc.value.body["type"] == "invalid_request_error" and "bad thing" in exc.value.body["message"]
    mock.set_fault("status", status=429, model="gpt-limited", count=3, retry_after=0)
    with pytest.raises(anthropic.RateLimitError) as exc2:
        ant(proxy, secret).messages.create(model="gpt-limited", max_tokens=10, messages=MSG)
    assert exc2.value.body["type"] == "error" and exc2.value.body["error"]["type"] == "rate_limit_error"


def test_translated_stream_cut_by_upstream_ends_with_an_error_event(proxy, mock, keysvc, key):
    secret, record = key
    mock.set_fault("reset_mid_stream", model="claude-cut-stream", stream=True, after_chunks=3, count=1)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in oai(proxy, secret).chat.completions.create(model="claude-cut-stream", messages=MSG, stream=True):
            received.append(chunk)
    assert received  # what arrived before the cut was relayed
    (event,) = keysvc.wait_usage(record.id, 1)
    assert event.status == "incomplete" and event.error_type == "upstream_disconnect"
    assert event.prompt_tokens > 0  # message_start was seen


# --- fallback across providers ---------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_fallback_from_failing_openai_deployment_to_anthropic_with_translation(proxy, mock, keysvc, key, stream):
    secret, record = key
    mock.set_fault("status", status=500, model="xfb-gpt-4o", path="/v1/chat/completions", count=3)
    since = mock.last_seq()
    if stream:
        chunks = list(oai(proxy, secret).chat.completions.create(
            model="xfb-gpt-4o", messages=MSG, stream=True, stream_options={"include_usage": True}
        ))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        usage = chunks[-1].usage
        assert all(c.model == "xfb-gpt-4o" for c in chunks)
    else:
        completion = oai(proxy, secret).chat.completions.create(model="xfb-gpt-4o", messages=MSG)
        text, usage = completion.choices[0].message.content, completion.usage
        assert completion.model == "xfb-gpt-4o" and completion.object == "chat.completion"
    assert text.startswith("Hello!")
    calls = mock.calls(since)
    assert [(c["path"], c["status"]) for c in calls] == [("/v1/chat/completions", 500)] * 3 + [("/v1/messages", 200)]
    assert calls[-1]["body"]["model"] == "claude-sonnet-4-5" and calls[-1]["api_key"] == ANTHROPIC_KEY
    assert usage.prompt_tokens == calls[-1]["usage"]["prompt_tokens"]
    (event,) = keysvc.wait_usage(record.id, 1)
    assert event.attempts == 4 and event.status == "ok" and event.streamed is stream
    assert (event.provider, event.deployment, event.upstream_model) == (
        "anthropic", "anthropic/claude-sonnet-4-5", "claude-sonnet-4-5"
    )
    assert event.model == "xfb-gpt-4o"
    assert_tokens(event, calls[-1]["usage"])


def test_same_provider_call_on_a_mixed_route_stays_untouched(proxy, mock, key):
    """The first (OpenAI) deployment of the mixed route answers: original bytes, no translation."""
    secret, _ = key
    since = mock.last_seq()
    raw = b'{"model": "xfb-gpt-4o",  "messages": [{"role": "user", "content": "hi"}], "logit_bias": {"1": 2}}'
    r = httpx.post(
        proxy.url + "/v1/chat/completions", content=raw,
        headers={"authorization": f"Bearer {secret}", "content-type": "application/json"},
    )
    assert r.status_code == 200, r.text
    (call,) = mock.calls(since)
    assert call["path"] == "/v1/chat/completions" and call["body"]["logit_bias"] == {"1": 2}


def test_fallback_skips_a_deployment_the_request_cannot_be_translated_for(proxy, mock, key):
    """logit_bias has no Anthropic equivalent: when the OpenAI deployment fails, the client gets its
    error (the translated fallback cannot take the request) — never a silently changed request."""
    secret, _ = key
    mock.set_fault("status", status=500, model="xfb-gpt-4o", path="/v1/chat/completions", count=3)
    since = mock.last_seq()
    r = httpx.post(
        proxy.url + "/v1/chat/completions",
        json={"model": "xfb-gpt-4o", "messages": MSG, "logit_bias": {"1": 2}},
        headers={"authorization": f"Bearer {secret}"},
    )
    assert r.status_code == 500  # the provider's own last answer
    assert [c["path"] for c in mock.calls(since)] == ["/v1/chat/completions"] * 3


# --- robustness of the glue (no 5xx of the proxy's own for a shape the translator did not expect) ---


def test_unexpected_translator_failures_are_answered_not_crashed():
    import dataclasses

    from llmgw_proxy.domain import errors, translated
    from llmgw_proxy.domain.translation import OPENAI_CALLER_TO_ANTHROPIC

    def boom(*_args, **_kwargs):
        raise TypeError("unhashable type: 'list'")

    broken = dataclasses.replace(OPENAI_CALLER_TO_ANTHROPIC, request=boom, upstream_error=boom, response=boom)
    with pytest.raises(errors.ProxyError) as exc:
        translated.request_body(broken, {"model": "x", "messages": []}, "claude")
    assert exc.value.status == 400 and exc.value.code == "untranslatable_request"
    # an upstream error body of an unexpected shape keeps its status, with a body in the caller's dialect
    assert json.loads(translated.response_body(broken, 503, b"[1]", "x"))["error"]["type"] == "api_error"
    with pytest.raises(errors.ProxyError) as exc2:
        translated.response_body(broken, 200, b"{}", "x")
    assert exc2.value.status == 502 and exc2.value.code == "upstream_invalid_response"
    # a stream event the translator chokes on ends the caller's stream with an error event
    relay = translated.TranslatedSSE(OPENAI_CALLER_TO_ANTHROPIC.new_stream("m", False), "openai")
    start = b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":3}}}\n\n'
    assert relay.feed(start).startswith(b"data: ")
    bad = b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":{"x":1}}}\n\n'
    out = relay.feed(bad)
    assert json.loads(out[len(b"data: "):])["error"]["code"] == "upstream_invalid_response"
    assert relay.error_seen and relay.tokens.prompt == 3 and relay.feed(b"more") == b"" and relay.finish() == b""
