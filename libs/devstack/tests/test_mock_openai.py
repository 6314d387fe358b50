"""The mock provider's OpenAI dialect, driven by the official openai SDK."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from llmgw_devstack.mock_provider import DEFAULT_ANSWER
from llmgw_devstack.mock_provider.config import MOCK_OPENAI_KEY

MESSAGES = [{"role": "user", "content": "hi"}]  # chars("user") + chars("hi") = 6 -> 3 + 4 + 2 = 9
WORDS = len(DEFAULT_ANSWER.split())
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city"],
        },
    },
}
EXPECTED_ARGS = {"city": "mock", "unit": "celsius", "days": 1}


def test_chat_non_streaming(oai, mock_provider):
    raw = oai.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES, extra_headers={"x-request-id": "client-rid-1", "x-trace-me": "yes"}
    )
    assert raw.headers["x-request-id"].startswith("req_")
    assert int(raw.headers["openai-processing-ms"]) >= 0
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o"
    assert completion.choices[0].message.content == DEFAULT_ANSWER
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (9, WORDS, 9 + WORDS)
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details.reasoning_tokens == 0

    (call,) = mock_provider.calls()
    assert call["path"] == "/v1/chat/completions"
    assert call["provider"] == "openai"
    assert call["api_key"] == MOCK_OPENAI_KEY
    assert call["model"] == "gpt-4o"
    assert call["stream"] is False
    assert call["status"] == 200
    assert call["request_id"] == "client-rid-1"
    assert call["headers"]["x-trace-me"] == "yes"
    assert "authorization" not in call["headers"]
    assert call["body"]["messages"] == MESSAGES
    assert call["usage"] == {
        "prompt_tokens": 9,
        "completion_tokens": WORDS,
        "total_tokens": 9 + WORDS,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
    }


def test_chat_stream_with_usage_matches_non_stream(oai, mock_provider):
    plain = oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == DEFAULT_ANSWER
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage == plain.usage
    assert all(c.usage is None for c in chunks[:-1])
    stream_call = mock_provider.calls()[-1]
    assert stream_call["stream"] is True
    assert stream_call["usage"] == mock_provider.calls()[0]["usage"]


def test_chat_stream_without_usage_sends_no_usage_chunk(oai, mock_provider):
    chunks = list(oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == DEFAULT_ANSWER
    assert mock_provider.calls()[-1]["usage"] is None  # the client was told no usage


def test_chat_stream_wire_format(mock_provider):
    body = {"model": "gpt-4o", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream(
        "POST",
        f"{mock_provider.openai_base_url}/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {MOCK_OPENAI_KEY}"},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    usage_chunk = json.loads(events[-2][len("data: ") :])
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["prompt_tokens"] == 9
    first = json.loads(events[0][len("data: ") :])
    assert first["usage"] is None  # present-and-null on every chunk when include_usage is set


def test_max_tokens_truncates(oai):
    completion = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_completion_tokens=3)
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == " ".join(DEFAULT_ANSWER.split()[:3])
    assert completion.usage.completion_tokens == 3
    chunks = list(oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=3, stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["length"]


def test_reasoning_and_cached_tokens(oai):
    reasoning = oai.chat.completions.create(model="o4-mini", messages=MESSAGES, prompt_cache_key="k1")
    assert reasoning.usage.completion_tokens_details.reasoning_tokens == 32
    assert reasoning.usage.completion_tokens == WORDS + 32
    assert reasoning.usage.prompt_tokens_details.cached_tokens == reasoning.usage.prompt_tokens // 2 > 0

    long_system = [{"role": "system", "content": "x" * 1001}, *MESSAGES]
    cached = oai.chat.completions.create(model="gpt-4o", messages=long_system)
    assert cached.usage.prompt_tokens_details.cached_tokens == cached.usage.prompt_tokens // 2 > 0
    short_system = [{"role": "system", "content": "x" * 1000}, *MESSAGES]
    uncached = oai.chat.completions.create(model="gpt-5-mini", messages=short_system)
    assert uncached.usage.prompt_tokens_details.cached_tokens == 0
    assert uncached.usage.completion_tokens_details.reasoning_tokens == 32


def test_same_request_same_usage(oai):
    messages = [{"role": "user", "content": [{"type": "text", "text": "a longer prompt " * 20}]}]
    first = oai.chat.completions.create(model="gpt-4o", messages=messages)
    second = oai.chat.completions.create(model="gpt-4.1", messages=messages, temperature=0.1)
    assert first.usage == second.usage
    assert first.usage.prompt_tokens > 9


def test_tool_call_non_streaming(oai, mock_provider):
    completion = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=[WEATHER_TOOL])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (tool_call,) = choice.message.tool_calls
    assert tool_call.id.startswith("call_")
    assert tool_call.function.name == "get_weather"
    assert json.loads(tool_call.function.arguments) == EXPECTED_ARGS
    assert mock_provider.calls()[-1]["usage"]["completion_tokens"] == completion.usage.completion_tokens


def test_tool_call_streaming(oai):
    plain = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice="required")
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            tools=[WEATHER_TOOL],
            tool_choice="required",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].index == 0 and deltas[0].id.startswith("call_")
    assert deltas[0].function.name == "get_weather"
    assert len(deltas) > 2  # arguments arrive in pieces
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert json.loads(arguments) == EXPECTED_ARGS
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    assert chunks[-1].usage == plain.usage


def test_tool_choice_none_answers_text(oai):
    completion = oai.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert completion.choices[0].message.content == DEFAULT_ANSWER
    assert completion.choices[0].message.tool_calls is None


def test_stream_helper_accumulates_tool_call(oai):
    with oai.chat.completions.stream(model="gpt-4o", messages=MESSAGES, tools=[WEATHER_TOOL]) as stream:
        final = stream.get_final_completion()
    assert json.loads(final.choices[0].message.tool_calls[0].function.arguments) == EXPECTED_ARGS


def test_legacy_completions(oai):
    completion = oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
    assert completion.choices[0].text == DEFAULT_ANSWER
    assert completion.usage.prompt_tokens == 2
    chunks = list(
        oai.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="Say hi", stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == DEFAULT_ANSWER
    assert chunks[-1].usage == completion.usage


def test_embeddings_float_and_base64(oai, mock_provider):
    # the SDK asks for base64 by default and decodes it to floats
    default = oai.embeddings.create(model="text-embedding-3-small", input=["hello", "world"])
    floats = oai.embeddings.create(model="text-embedding-3-small", input=["hello", "world"], encoding_format="float")
    assert [d.index for d in default.data] == [0, 1]
    assert len(default.data[0].embedding) == 1536
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding)
    assert default.data[0].embedding != default.data[1].embedding
    assert default.usage.prompt_tokens == 4 and default.usage.total_tokens == 4
    small = oai.embeddings.create(model="text-embedding-3-large", input="hello", dimensions=8, encoding_format="float")
    assert len(small.data[0].embedding) == 8
    assert sum(v * v for v in small.data[0].embedding) == pytest.approx(1.0, rel=1e-4)
    assert mock_provider.calls()[0]["body"]["encoding_format"] == "base64"


def test_responses_non_streaming(oai, mock_provider):
    response = oai.responses.create(model="gpt-4o", input="hello", instructions="be brief")
    assert response.object == "response" and response.status == "completed"
    assert response.output_text == DEFAULT_ANSWER
    usage = response.usage
    assert usage.input_tokens == 3 + 4 + 2 + 2  # input "hello" + instructions "be brief"
    assert usage.output_tokens == WORDS
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0
    assert mock_provider.calls()[-1]["usage"]["prompt_tokens"] == usage.input_tokens

    truncated = oai.responses.create(model="o3", input="hello", max_output_tokens=4)
    assert truncated.status == "incomplete"
    assert truncated.incomplete_details.reason == "max_output_tokens"
    assert truncated.usage.output_tokens == 4 + 32
    assert truncated.usage.output_tokens_details.reasoning_tokens == 32


def test_responses_streaming(oai):
    plain = oai.responses.create(model="gpt-4o", input=[{"role": "user", "content": "hello"}])
    types = []
    deltas = []
    with oai.responses.stream(model="gpt-4o", input=[{"role": "user", "content": "hello"}]) as stream:
        for event in stream:
            types.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert "response.output_item.added" in types and "response.output_text.done" in types
    assert "".join(deltas) == DEFAULT_ANSWER
    assert final.output_text == DEFAULT_ANSWER
    assert final.usage == plain.usage

    raw = list(oai.responses.create(model="gpt-4o", input="hello", stream=True))
    assert [e.sequence_number for e in raw] == list(range(len(raw)))


def test_responses_function_call(oai):
    tool = {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}
    response = oai.responses.create(model="gpt-4o", input="find", tools=[tool])
    (item,) = response.output
    assert item.type == "function_call" and item.name == "lookup"
    assert json.loads(item.arguments) == {"q": "mock"}
    with oai.responses.stream(model="gpt-4o", input="find", tools=[tool]) as stream:
        final = stream.get_final_response()
    assert json.loads(final.output[0].arguments) == {"q": "mock"}
    assert final.usage == response.usage


def test_models(oai, mock_provider):
    ids = [m.id for m in oai.models.list()]
    assert "gpt-4o" in ids and "text-embedding-3-small" in ids
    assert oai.models.retrieve("gpt-4o").id == "gpt-4o"
    with pytest.raises(openai.NotFoundError) as exc:
        oai.models.retrieve("no-such-model")
    assert exc.value.code == "model_not_found"
    assert mock_provider.calls()[-1]["status"] == 404


def test_unknown_path_is_openai_404(mock_provider):
    response = httpx.post(
        f"{mock_provider.openai_base_url}/assistants/x", json={}, headers={"authorization": f"Bearer {MOCK_OPENAI_KEY}"}
    )
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "Invalid URL (POST /v1/assistants/x)",
            "type": "invalid_request_error",
            "param": None,
            "code": "unknown_url",
        }
    }
    assert response.headers["x-request-id"].startswith("req_")
    assert mock_provider.calls()[-1]["path"] == "/v1/assistants/x"


def test_wrong_key_is_401(mock_provider):
    client = openai.OpenAI(base_url=mock_provider.openai_base_url, api_key="sk-wrong-key-123456", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as exc:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert exc.value.code == "invalid_api_key"
    assert exc.value.type == "invalid_request_error"
    assert "sk-wrong-key-123456" not in exc.value.message  # masked
    (call,) = mock_provider.calls()
    assert (call["status"], call["api_key"], call["usage"]) == (401, "sk-wrong-key-123456", None)


def test_validation_errors(oai, mock_provider):
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(model="gpt-4o", messages="not a list")
    assert exc.value.param == "messages"
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, extra_body={"stream": "yes"})
    response = httpx.post(
        f"{mock_provider.openai_base_url}/chat/completions",
        content=b"{not json",
        headers={"authorization": f"Bearer {MOCK_OPENAI_KEY}", "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    no_model = httpx.post(
        f"{mock_provider.openai_base_url}/chat/completions",
        json={"messages": MESSAGES},
        headers={"authorization": f"Bearer {MOCK_OPENAI_KEY}"},
    )
    assert no_model.status_code == 400
    assert [c["status"] for c in mock_provider.calls()] == [400, 400, 400, 400]


def test_moderations_pass_through_target(oai, mock_provider):
    result = oai.moderations.create(input=["one", "two"])
    assert len(result.results) == 2 and result.results[0].flagged is False
    assert result.model == "omni-moderation-latest"
    (call,) = mock_provider.calls()
    assert (call["path"], call["status"], call["usage"]) == ("/v1/moderations", 200, None)
