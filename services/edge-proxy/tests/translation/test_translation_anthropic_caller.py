"""Anthropic Messages request → OpenAI Chat Completions request; chat.completion (stream) → Messages."""

from __future__ import annotations

import copy
import json
import random

import pytest

from llmgw_proxy.domain.translation import (
    OpenAIToAnthropicStream,
    TranslationError,
    anthropic_request_to_openai_chat,
    openai_chat_response_to_anthropic,
)
from translation_golden import OPENAI_TOOL_STREAM, chunk

MODEL = "claude-sonnet-4-5"  # the name the client asked for
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
SCHEMA = {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}


def translate(body: dict, **kwargs) -> dict:
    return anthropic_request_to_openai_chat(body, "gpt-4o", **kwargs)


# --- request ----------------------------------------------------------------------------------------


def test_full_conversation_golden() -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [
            {"type": "text", "text": "You are a weather bot.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Be brief."},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/sky.jpg"}},
                    {"type": "text", "text": "What's the weather where these were taken?"},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Need the tool.", "signature": "sig"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"location": "Paris"}},
                    {"type": "tool_use", "id": "toolu_01B", "name": "get_weather", "input": {"location": "Oslo"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "18 C"},
                    {"type": "tool_result", "tool_use_id": "toolu_01B", "content": [{"type": "text", "text": "Timeout"}], "is_error": True},
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
        "temperature": 0.5,
        "top_p": 0.8,
        "stop_sequences": ["END"],
        "stream": True,
        "tools": [
            {"name": "get_weather", "description": "Weather by city", "input_schema": SCHEMA, "cache_control": {"type": "ephemeral"}},
        ],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "u-1"},
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "service_tier": "auto",
    }
    original = copy.deepcopy(body)
    assert translate(body) == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a weather bot.\n\nBe brief."},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/sky.jpg"}},
                    {"type": "text", "text": "What's the weather where these were taken?"},
                ],
            },
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {"id": "toolu_01A09q90qw90lq917835lq9", "type": "function", "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'}},
                    {"id": "toolu_01B", "type": "function", "function": {"name": "get_weather", "arguments": '{"location":"Oslo"}'}},
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_01A09q90qw90lq917835lq9", "content": "18 C"},
            {"role": "tool", "tool_call_id": "toolu_01B", "content": "Error: Timeout"},
            {"role": "user", "content": "And tomorrow?"},
        ],
        "max_completion_tokens": 1024,
        "temperature": 0.5,
        "top_p": 0.8,
        "stop": ["END"],
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather by city", "parameters": SCHEMA}}],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "user": "u-1",
    }
    assert body == original, "the input must not be modified"


def test_minimal_request_and_max_tokens_field() -> None:
    body = {"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}
    assert translate(body) == {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "max_completion_tokens": 10}
    assert translate(body, max_tokens_field="max_tokens")["max_tokens"] == 10
    assert "stream" not in translate({**body, "stream": False})


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_tool_choice_mapping(choice: dict, expected) -> None:
    body = {"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [{"name": "get_weather", "input_schema": SCHEMA}], "tool_choice": choice}
    out = translate(body)
    assert out["tool_choice"] == expected
    assert "parallel_tool_calls" not in out


def test_tool_choice_without_tools() -> None:
    body = {"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    assert "tool_choice" not in translate({**body, "tool_choice": {"type": "auto"}})
    with pytest.raises(TranslationError, match="requires 'tools'"):
        translate({**body, "tool_choice": {"type": "any"}})


def test_output_config_format_and_effort() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": False}
    out = translate(
        {
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}],
            "output_config": {"format": {"type": "json_schema", "schema": schema}, "effort": "medium"},
        }
    )
    assert out["response_format"] == {"type": "json_schema", "json_schema": {"name": "response", "schema": schema, "strict": True}}
    assert out["reasoning_effort"] == "medium"


def test_documents_and_strict_tools() -> None:
    out = translate(
        {
            "max_tokens": 5,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}, "title": "r.pdf"},
                        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain notes"}},
                        {"type": "text", "text": "Compare"},
                    ],
                }
            ],
            "tools": [{"type": "custom", "name": "f", "input_schema": SCHEMA, "strict": True}],
        }
    )
    assert out["messages"][0]["content"] == [
        {"type": "file", "file": {"filename": "r.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}},
        {"type": "text", "text": "plain notes"},
        {"type": "text", "text": "Compare"},
    ]
    assert out["tools"] == [{"type": "function", "function": {"name": "f", "parameters": SCHEMA, "strict": True}}]


def test_long_tool_ids_are_shortened_consistently() -> None:
    long_id = "toolu_" + "x" * 60
    out = translate(
        {
            "max_tokens": 5,
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": long_id, "name": "f", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": long_id}]},
            ],
        }
    )
    call_id = out["messages"][1]["tool_calls"][0]["id"]
    assert len(call_id) <= 40 and call_id.startswith("call_")
    assert out["messages"][1]["content"] is None
    assert out["messages"][2] == {"role": "tool", "tool_call_id": call_id, "content": ""}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"top_k": 40}, "top_k"),
        ({"container": "cnt_1"}, "container"),
        ({"mcp_servers": [{"type": "url", "url": "https://mcp", "name": "m"}]}, "mcp_servers"),
        ({"inference_geo": "eu"}, "inference_geo"),
        ({"a_future_param": True}, "a_future_param"),
        ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        ({"tool_choice": {"type": "sometimes"}, "tools": [{"name": "f", "input_schema": SCHEMA}]}, "tool_choice"),
        ({"output_config": {"effort": "ludicrous"}}, "output_config.effort"),
        ({"output_config": {"format": {"type": "regex"}}}, "output_config.format"),
        ({"system": [{"type": "image", "source": {}}]}, "system[0]"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_unmappable_parameters_raise(extra: dict, param: str) -> None:
    body = {"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], **extra}
    with pytest.raises(TranslationError) as err:
        translate(body)
    assert err.value.param == param
    assert err.value.anthropic_body() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": err.value.description},
    }
    assert param in err.value.description


@pytest.mark.parametrize(
    ("content", "param"),
    [
        ([{"type": "image", "source": {"type": "file", "file_id": "file_1"}}], "messages[0].content[0].source"),
        ([{"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}], "messages[0].content[0].source"),
        ([{"type": "search_result", "source": "s", "title": "t", "content": []}], "messages[0].content[0]"),
        (
            [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {"type": "url", "url": "https://x"}}]}],
            "messages[0].content[0].content[0]",
        ),
    ],
)
def test_unmappable_content_raises(content: list, param: str) -> None:
    with pytest.raises(TranslationError) as err:
        translate({"max_tokens": 5, "messages": [{"role": "user", "content": content}]})
    assert err.value.param == param


def test_server_tool_blocks_in_history_raise() -> None:
    with pytest.raises(TranslationError) as err:
        translate(
            {
                "max_tokens": 5,
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "assistant", "content": [{"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}]},
                ],
            }
        )
    assert err.value.param == "messages[1].content[0]"


# --- response ---------------------------------------------------------------------------------------


def test_response_golden() -> None:
    body = {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion",
        "created": 1741570283,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me look.",
                    "refusal": None,
                    "annotations": [],
                    "tool_calls": [
                        {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}},
                        {"id": "call_def", "type": "function", "function": {"name": "broken", "arguments": '{"a": '}},
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 1117,
            "completion_tokens": 46,
            "total_tokens": 1163,
            "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_fc9f1d7035",
    }
    assert openai_chat_response_to_anthropic(body, MODEL) == {
        "id": "msg_B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {"location": "Paris"}},
            {"type": "tool_use", "id": "call_def", "name": "broken", "input": {"_raw_arguments": '{"a": '}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 93, "output_tokens": 46, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1024},
    }


@pytest.mark.parametrize(
    ("finish", "stop"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"), ("function_call", "tool_use"), ("content_filter", "refusal"), (None, "end_turn")],
)
def test_stop_reason_mapping(finish, stop) -> None:
    body = {"id": "chatcmpl-1", "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": finish}]}
    assert openai_chat_response_to_anthropic(body, MODEL)["stop_reason"] == stop


def test_refusal_response_and_reasoning_tokens() -> None:
    body = {
        "id": "chatcmpl-2",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "refusal": "I can't help with that."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 50, "total_tokens": 60, "completion_tokens_details": {"reasoning_tokens": 40}},
    }
    out = openai_chat_response_to_anthropic(body, MODEL)
    assert out["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert out["stop_reason"] == "refusal"
    assert out["usage"]["output_tokens_details"] == {"thinking_tokens": 40}


# --- stream -----------------------------------------------------------------------------------------


def parse_anthropic_sse(data: bytes) -> list[tuple[str, dict]]:
    assert data.endswith(b"\n\n")
    out = []
    for event in data.decode().split("\n\n")[:-1]:
        name_line, data_line = event.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        payload = json.loads(data_line[len("data: ") :])
        assert payload["type"] == name_line[len("event: ") :]
        out.append((payload["type"], payload))
    return out


EXPECTED_TOOL_EVENTS = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_Abc123",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Sure, "}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "checking ✓"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "call_A", "name": "get_weather", "input": {}}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"loc'}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": 'ation": "Paris"}'}},
    {"type": "content_block_stop", "index": 1},
    {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "call_B", "name": "get_time", "input": {}}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
    {"type": "content_block_stop", "index": 2},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"input_tokens": 72, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 128, "output_tokens": 30},
    },
    {"type": "message_stop"},
]


def run(stream: OpenAIToAnthropicStream, pieces: list[bytes]) -> bytes:
    return b"".join(stream.feed(p) for p in pieces) + stream.close()


def test_tool_stream_golden() -> None:
    stream = OpenAIToAnthropicStream(MODEL)
    events = parse_anthropic_sse(run(stream, [OPENAI_TOOL_STREAM]))
    assert [payload for _, payload in events] == EXPECTED_TOOL_EVENTS
    assert stream.done and stream.stop_reason == "tool_use"
    assert stream.usage == {
        "prompt_tokens": 200,
        "cached_tokens": 128,
        "cache_write_tokens": 0,
        "completion_tokens": 30,
        "reasoning_tokens": 0,
        "total_tokens": 230,
    }


def test_tool_stream_one_byte_at_a_time_and_random_boundaries() -> None:
    whole = run(OpenAIToAnthropicStream(MODEL), [OPENAI_TOOL_STREAM])
    bytewise = run(OpenAIToAnthropicStream(MODEL), [OPENAI_TOOL_STREAM[i : i + 1] for i in range(len(OPENAI_TOOL_STREAM))])
    assert bytewise == whole
    for seed in range(4):
        data = OPENAI_TOOL_STREAM.replace(b"\n", b"\r\n") if seed % 2 else OPENAI_TOOL_STREAM
        rng = random.Random(seed)
        cuts = sorted(rng.sample(range(1, len(data)), 40))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
        assert run(OpenAIToAnthropicStream(MODEL), pieces) == whole


def test_text_stream_without_usage_and_refusal() -> None:
    data = chunk({"role": "assistant", "content": ""}) + chunk({"refusal": "No."}) + chunk({}, "stop") + b"data: [DONE]\n\n"
    events = parse_anthropic_sse(run(OpenAIToAnthropicStream(MODEL), [data]))
    assert [t for t, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[4][1]["delta"]["stop_reason"] == "refusal"
    assert events[4][1]["usage"]["output_tokens"] == 0


def test_error_payload_mid_stream() -> None:
    data = chunk({"role": "assistant", "content": "Hi"}) + b'data: {"error": {"message": "The server had an error", "type": "server_error", "param": null, "code": null}}\n\n'
    stream = OpenAIToAnthropicStream(MODEL)
    events = parse_anthropic_sse(run(stream, [data, OPENAI_TOOL_STREAM]))
    assert events[-1] == ("error", {"type": "error", "error": {"type": "api_error", "message": "The server had an error"}})
    assert "message_stop" not in [t for t, _ in events]
    assert stream.error == {"type": "api_error", "message": "The server had an error"}


def test_cut_stream() -> None:
    stream = OpenAIToAnthropicStream(MODEL)
    head = OPENAI_TOOL_STREAM[: OPENAI_TOOL_STREAM.index(b"checking")]
    events = parse_anthropic_sse(run(stream, [head]))
    assert events[-1] == ("error", {"type": "error", "error": {"type": "api_error", "message": "The upstream stream ended before the response was complete."}})
    # cut after the finish_reason (and the usage chunk) but before [DONE]: completes normally
    tail_cut = OPENAI_TOOL_STREAM[: OPENAI_TOOL_STREAM.index(b"data: [DONE]")]
    assert [p for _, p in parse_anthropic_sse(run(OpenAIToAnthropicStream(MODEL), [tail_cut]))] == EXPECTED_TOOL_EVENTS


def test_interleaved_tool_fragments_fail_clearly() -> None:
    data = (
        chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{"}}]})
        + chunk({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{"}}]})
        + chunk({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]})
    )
    stream = OpenAIToAnthropicStream(MODEL)
    events = parse_anthropic_sse(run(stream, [data]))
    assert events[-1][0] == "error" and stream.done
