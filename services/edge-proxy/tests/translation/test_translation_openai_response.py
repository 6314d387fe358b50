"""Anthropic Messages response / stream → OpenAI chat.completion / chat.completion.chunk stream."""

from __future__ import annotations

import json
import random

import pytest

from llmgw_proxy.domain.translation import AnthropicToOpenAIStream, anthropic_response_to_openai_chat
from translation_golden import ANTHROPIC_TOOL_STREAM as TOOL_STREAM
from translation_golden import sse

MODEL = "gpt-4o"  # the name the client asked for


def parse_openai_sse(data: bytes) -> list:
    """``data:`` payloads of an OpenAI stream: dicts, and the string ``[DONE]``."""
    assert data.endswith(b"\n\n")
    out = []
    for event in data.decode().split("\n\n")[:-1]:
        assert event.startswith("data: "), event
        body = event[len("data: ") :]
        out.append(body if body == "[DONE]" else json.loads(body))
    return out


# --- non-streaming ----------------------------------------------------------------------------------


def test_response_with_text_and_tool_calls() -> None:
    body = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "Checking "},
            {"type": "text", "text": "both."},
            {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 100,
            "cache_creation_input_tokens": 20,
            "cache_read_input_tokens": 30,
            "output_tokens": 40,
            "service_tier": "standard",
        },
    }
    assert anthropic_response_to_openai_chat(body, MODEL, created=1700000000) == {
        "id": "chatcmpl-01XFDUDYJgAACzvnptvVoYEL",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Checking both.",
                    "refusal": None,
                    "annotations": [],
                    "tool_calls": [
                        {"id": "toolu_01A", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
                        {"id": "toolu_01B", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 150,
            "completion_tokens": 40,
            "total_tokens": 190,
            "prompt_tokens_details": {"cached_tokens": 30, "cache_write_tokens": 20},
        },
        "system_fingerprint": None,
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
        (None, "stop"),
    ],
)
def test_finish_reason_mapping(stop_reason, finish_reason) -> None:
    body = {"id": "msg_1", "content": [{"type": "text", "text": "x"}], "stop_reason": stop_reason, "usage": {"input_tokens": 1, "output_tokens": 1}}
    out = anthropic_response_to_openai_chat(body, MODEL)
    assert out["choices"][0]["finish_reason"] == finish_reason
    assert isinstance(out["created"], int)


def test_tool_only_response_has_null_content_and_thinking_tokens_are_reasoning() -> None:
    body = {
        "id": "msg_2",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": [1, "é"]}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 5, "output_tokens": 9, "output_tokens_details": {"thinking_tokens": 4}},
    }
    out = anthropic_response_to_openai_chat(body, MODEL)
    assert out["choices"][0]["message"]["content"] is None
    assert json.loads(out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]) == {"a": [1, "é"]}
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": 4}
    empty = anthropic_response_to_openai_chat({"id": "msg_3", "content": [], "stop_reason": "end_turn", "usage": {}}, MODEL)
    assert empty["choices"][0]["message"]["content"] == ""
    assert empty["usage"]["total_tokens"] == 0


# --- streaming --------------------------------------------------------------------------------------

def _chunk(delta: dict | None, finish: str | None = None, *, usage_null: bool = True) -> dict:
    out = {
        "id": "chatcmpl-014p7gG3wDgGV9EUtLvnow3U",
        "object": "chat.completion.chunk",
        "created": 1234,
        "model": MODEL,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if usage_null:
        out["usage"] = None
    return out


def expected_tool_stream(include_usage: bool) -> list:
    u = include_usage
    chunks = [
        _chunk({"role": "assistant", "content": ""}, usage_null=u),
        _chunk({"content": "Okay, let's check "}, usage_null=u),
        _chunk({"content": "the weather — ☀️"}, usage_null=u),
        _chunk(
            {"tool_calls": [{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]},
            usage_null=u,
        ),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"location":'}}]}, usage_null=u),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "San Francisco, CA"}'}}]}, usage_null=u),
        _chunk({"tool_calls": [{"index": 1, "id": "toolu_02", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}, usage_null=u),
        _chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}, usage_null=u),
        _chunk({}, "tool_calls", usage_null=u),
    ]
    if include_usage:
        final = _chunk(None)
        final["choices"] = []
        final["usage"] = {
            "prompt_tokens": 580,
            "completion_tokens": 89,
            "total_tokens": 669,
            "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 8},
        }
        chunks.append(final)
    return [*chunks, "[DONE]"]


def run(stream: AnthropicToOpenAIStream, pieces: list[bytes]) -> bytes:
    return b"".join(stream.feed(p) for p in pieces) + stream.close()


@pytest.mark.parametrize("include_usage", [True, False])
def test_tool_stream_golden(include_usage: bool) -> None:
    stream = AnthropicToOpenAIStream(MODEL, include_usage, created=1234)
    out = run(stream, [TOOL_STREAM])
    assert parse_openai_sse(out) == expected_tool_stream(include_usage)
    assert stream.done and stream.finish_reason == "tool_calls" and stream.error is None
    assert stream.usage == {
        "prompt_tokens": 580,
        "cached_tokens": 100,
        "cache_write_tokens": 8,
        "completion_tokens": 89,
        "reasoning_tokens": 0,
        "total_tokens": 669,
    }
    assert stream.close() == b"" and stream.feed(b"data: {}\n\n") == b""


def test_tool_stream_fed_one_byte_at_a_time_gives_identical_output() -> None:
    whole = run(AnthropicToOpenAIStream(MODEL, True, created=1234), [TOOL_STREAM])
    stream = AnthropicToOpenAIStream(MODEL, True, created=1234)
    one_by_one = run(stream, [TOOL_STREAM[i : i + 1] for i in range(len(TOOL_STREAM))])
    assert one_by_one == whole


@pytest.mark.parametrize("seed", range(5))
def test_tool_stream_random_boundaries_and_crlf(seed: int) -> None:
    whole = run(AnthropicToOpenAIStream(MODEL, True, created=1234), [TOOL_STREAM])
    data = TOOL_STREAM.replace(b"\n", b"\r\n") if seed % 2 else TOOL_STREAM
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), 60))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    assert run(AnthropicToOpenAIStream(MODEL, True, created=1234), pieces) == whole


def test_usage_is_available_while_streaming() -> None:
    stream = AnthropicToOpenAIStream(MODEL, False)
    first_event_end = TOOL_STREAM.index(b"\n\n") + 2
    stream.feed(TOOL_STREAM[:first_event_end])
    assert stream.usage_seen
    assert stream.usage["prompt_tokens"] == 580 and stream.usage["completion_tokens"] == 2


def test_error_event_mid_stream() -> None:
    data = TOOL_STREAM.split(b"event: content_block_stop")[0] + sse(
        "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    stream = AnthropicToOpenAIStream(MODEL, True, created=1234)
    events = parse_openai_sse(run(stream, [data, TOOL_STREAM]))
    assert events[-1] == {"error": {"message": "Overloaded", "type": "server_error", "param": None, "code": "overloaded"}}
    assert "[DONE]" not in events
    assert stream.done and stream.error["code"] == "overloaded"


def test_cut_stream_before_message_delta_reports_an_error() -> None:
    data = TOOL_STREAM[: TOOL_STREAM.index(b"event: content_block_start") + 30]
    stream = AnthropicToOpenAIStream(MODEL, False, created=1234)
    out = stream.feed(data)
    assert parse_openai_sse(out) == [_chunk({"role": "assistant", "content": ""}, usage_null=False)]
    tail = parse_openai_sse(stream.close())
    assert tail == [
        {
            "error": {
                "message": "The upstream stream ended before the response was complete.",
                "type": "server_error",
                "param": None,
                "code": "upstream_stream_incomplete",
            }
        }
    ]


def test_cut_stream_after_message_delta_completes() -> None:
    data = TOOL_STREAM.split(b"event: message_stop")[0]
    stream = AnthropicToOpenAIStream(MODEL, True, created=1234)
    events = parse_openai_sse(run(stream, [data]))
    assert events == expected_tool_stream(True)


def test_last_event_without_trailing_blank_line_is_processed_on_close() -> None:
    data = TOOL_STREAM.rstrip(b"\n")
    stream = AnthropicToOpenAIStream(MODEL, False, created=1234)
    assert parse_openai_sse(run(stream, [data])) == expected_tool_stream(False)


def test_refusal_and_max_tokens_finish_reasons_in_stream() -> None:
    for stop_reason, finish in (("refusal", "content_filter"), ("max_tokens", "length"), ("end_turn", "stop")):
        data = (
            sse("message_start", {"type": "message_start", "message": {"id": "msg_x", "usage": {"input_tokens": 3, "output_tokens": 1}}})
            + sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "Hi"}})
            + sse("content_block_stop", {"type": "content_block_stop", "index": 0})
            + sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason}, "usage": {"output_tokens": 5}})
            + sse("message_stop", {"type": "message_stop"})
        )
        stream = AnthropicToOpenAIStream(MODEL, False, created=1)
        events = parse_openai_sse(run(stream, [data]))
        assert [e["choices"][0]["delta"] for e in events[:-1]] == [{"role": "assistant", "content": ""}, {"content": "Hi"}, {}]
        assert events[-2]["choices"][0]["finish_reason"] == finish
        assert events[-1] == "[DONE]"
        assert stream.usage["total_tokens"] == 8


def test_tool_use_input_given_whole_at_block_start() -> None:
    data = (
        sse("message_start", {"type": "message_start", "message": {"id": "msg_y", "usage": {"input_tokens": 1, "output_tokens": 1}}})
        + sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t1", "name": "f", "input": {"q": 1}}})
        + sse("content_block_stop", {"type": "content_block_stop", "index": 0})
        + sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}})
        + sse("message_stop", {"type": "message_stop"})
    )
    events = parse_openai_sse(run(AnthropicToOpenAIStream(MODEL, False), [data]))
    assert events[2]["choices"][0]["delta"] == {"tool_calls": [{"index": 0, "function": {"arguments": '{"q":1}'}}]}
