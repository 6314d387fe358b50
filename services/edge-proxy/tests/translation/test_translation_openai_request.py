"""OpenAI Chat Completions request → Anthropic Messages request (golden tests and refusals)."""

from __future__ import annotations

import copy

import pytest

from llmgw_proxy.domain.translation import DEFAULT_MAX_TOKENS, TranslationError, openai_chat_request_to_anthropic
from llmgw_proxy.domain.translation.openai_caller import JSON_OBJECT_INSTRUCTION

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
    "required": ["city"],
}


def translate(body: dict, **kwargs) -> dict:
    return openai_chat_request_to_anthropic(body, "claude-sonnet-4-5-20250929", **kwargs)


def test_full_conversation_golden() -> None:
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {
                "role": "user",
                "name": "alice",
                "content": [
                    {"type": "text", "text": "What is the weather in these two cities?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/paris.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
                    {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo", "unit": "c"}'}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "3 C, snow"}]},
            {"role": "user", "content": "Which one is warmer?"},
        ],
        "max_completion_tokens": 300,
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": ["\n\nHuman:", "END"],
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [
            {
                "type": "function",
                "function": {"name": "get_weather", "description": "Current weather", "parameters": WEATHER_SCHEMA},
            }
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "user": "user-42",
        "store": False,
        "metadata": {"tag": "x"},
        "seed": 7,
        "n": 1,
        "presence_penalty": 0,
        "logprobs": False,
    }
    original = copy.deepcopy(body)
    assert translate(body) == {
        "model": "claude-sonnet-4-5-20250929",
        "system": [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Use metric units."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is the weather in these two cities?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/paris.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Oslo", "unit": "c"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18 C, sunny"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "3 C, snow"}]},
                    {"type": "text", "text": "Which one is warmer?"},
                ],
            },
        ],
        "max_tokens": 300,
        "temperature": 0.3,
        "top_p": 0.9,
        "stop_sequences": ["\n\nHuman:", "END"],
        "stream": True,
        "tools": [{"name": "get_weather", "description": "Current weather", "input_schema": WEATHER_SCHEMA}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "user-42"},
    }
    assert body == original, "the input must not be modified"


def test_minimal_request_gets_default_max_tokens_and_string_content() -> None:
    out = translate({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]})
    assert out == {
        "model": "claude-sonnet-4-5-20250929",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": DEFAULT_MAX_TOKENS,
    }
    assert translate({"messages": [{"role": "user", "content": "Hi"}]}, default_max_tokens=1000)["max_tokens"] == 1000


def test_max_tokens_legacy_name_and_precedence() -> None:
    msgs = [{"role": "user", "content": "Hi"}]
    assert translate({"messages": msgs, "max_tokens": 50})["max_tokens"] == 50
    assert translate({"messages": msgs, "max_tokens": 50, "max_completion_tokens": 70})["max_tokens"] == 70
    with pytest.raises(TranslationError) as err:
        translate({"messages": msgs, "max_tokens": "many"})
    assert err.value.param == "max_tokens"


@pytest.mark.parametrize(("given", "sent"), [(0, 0), (0.7, 0.7), (1, 1), (1.0, 1.0), (1.5, 1.0), (2, 1.0)])
def test_temperature_is_clamped_to_anthropic_range(given: float, sent: float) -> None:
    out = translate({"messages": [{"role": "user", "content": "Hi"}], "temperature": given})
    assert out["temperature"] == sent


def test_stop_string_and_empty_list() -> None:
    msgs = [{"role": "user", "content": "Hi"}]
    assert translate({"messages": msgs, "stop": "###"})["stop_sequences"] == ["###"]
    assert "stop_sequences" not in translate({"messages": msgs, "stop": []})
    assert "stop_sequences" not in translate({"messages": msgs, "stop": None})


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice_mapping(choice, expected) -> None:
    body = {
        "messages": [{"role": "user", "content": "Weather?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}],
        "tool_choice": choice,
    }
    assert translate(body)["tool_choice"] == expected
    body["parallel_tool_calls"] = False
    if expected["type"] == "none":
        assert translate(body)["tool_choice"] == {"type": "none"}
    else:
        assert translate(body)["tool_choice"] == {**expected, "disable_parallel_tool_use": True}


def test_tools_without_parameters_and_strict() -> None:
    out = translate(
        {
            "messages": [{"role": "user", "content": "Time?"}],
            "tools": [{"type": "function", "function": {"name": "now", "strict": True}}],
        }
    )
    assert out["tools"] == [{"name": "now", "input_schema": {"type": "object", "properties": {}}, "strict": True}]
    assert "tool_choice" not in out


def test_tool_choice_without_tools() -> None:
    msgs = [{"role": "user", "content": "Hi"}]
    assert "tool_choice" not in translate({"messages": msgs, "tool_choice": "none"})
    assert "tool_choice" not in translate({"messages": msgs, "tool_choice": "auto"})
    with pytest.raises(TranslationError, match="requires 'tools'"):
        translate({"messages": msgs, "tool_choice": "required"})


def test_response_format_json_schema_and_json_object() -> None:
    msgs = [{"role": "system", "content": "Extract."}, {"role": "user", "content": "Bob is 3"}]
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"], "additionalProperties": False}
    out = translate(
        {"messages": msgs, "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}}}
    )
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert out["system"] == "Extract."

    out = translate({"messages": msgs, "response_format": {"type": "json_object"}})
    assert "output_config" not in out
    assert out["system"] == [{"type": "text", "text": "Extract."}, {"type": "text", "text": JSON_OBJECT_INSTRUCTION}]

    assert "output_config" not in translate({"messages": msgs, "response_format": {"type": "text"}})
    with pytest.raises(TranslationError) as err:
        translate({"messages": msgs, "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}})
    assert err.value.param == "response_format.json_schema.schema"


@pytest.mark.parametrize(("effort", "sent"), [("minimal", "low"), ("low", "low"), ("medium", "medium"), ("high", "high"), ("xhigh", "xhigh")])
def test_reasoning_effort(effort: str, sent: str) -> None:
    out = translate({"messages": [{"role": "user", "content": "Hi"}], "reasoning_effort": effort})
    assert out["output_config"] == {"effort": sent}


def test_safety_identifier_becomes_user_id() -> None:
    out = translate({"messages": [{"role": "user", "content": "Hi"}], "safety_identifier": "hash-1"})
    assert out["metadata"] == {"user_id": "hash-1"}


def test_consecutive_same_role_messages_are_merged_and_empty_ones_dropped() -> None:
    out = translate(
        {
            "messages": [
                {"role": "user", "content": "one"},
                {"role": "user", "content": [{"type": "text", "text": "two"}]},
                {"role": "assistant", "content": ""},
                {"role": "assistant", "content": "three"},
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
            ]
        }
    )
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "three"}, {"type": "text", "text": "no"}]},
    ]


def test_tool_result_goes_before_text_of_the_same_turn() -> None:
    out = translate(
        {
            "messages": [
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": ""}}]},
                {"role": "user", "content": "(thinking of Paris)"},
                {"role": "tool", "tool_call_id": "c1", "content": ""},
            ]
        }
    )
    assert out["messages"][1] == {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "w", "input": {}}]}
    assert out["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "c1"}, {"type": "text", "text": "(thinking of Paris)"}],
    }


def test_tool_call_ids_are_made_anthropic_safe_consistently() -> None:
    out = translate(
        {
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [{"id": "functions.f:0", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "functions.f:0", "content": "ok"},
            ]
        }
    )
    assert out["messages"][1]["content"][0]["id"] == "functions_f_0"
    assert out["messages"][2]["content"][0]["tool_use_id"] == "functions_f_0"


def test_pdf_file_part_and_cache_control() -> None:
    out = translate(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}},
                        {"type": "text", "text": "Summarise", "cache_control": {"type": "ephemeral"}},
                        {"type": "text", "text": "briefly", "prompt_cache_breakpoint": {"mode": "explicit"}},
                    ],
                }
            ]
        }
    )
    assert out["messages"][0]["content"] == [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}, "title": "a.pdf"},
        {"type": "text", "text": "Summarise", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "briefly", "cache_control": {"type": "ephemeral"}},
    ]


def test_jpg_alias_in_data_url() -> None:
    out = translate(
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"data:image/jpg;base64,{PNG_B64}"}}]}]}
    )
    assert out["messages"][0]["content"][0]["source"]["media_type"] == "image/jpeg"


# --- refusals ---------------------------------------------------------------------------------------

USER = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": -1}, "frequency_penalty"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"some_future_param": 1}, "some_future_param"),
        ({"response_format": {"type": "grammar"}}, "response_format.type"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"tool_choice": {"type": "allowed_tools", "allowed_tools": {}}}, "tool_choice"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
        ({"stop": 5}, "stop"),
    ],
)
def test_unmappable_parameters_raise(extra: dict, param: str) -> None:
    with pytest.raises(TranslationError) as err:
        translate({"messages": USER, **extra})
    assert err.value.param == param
    assert err.value.status == 400
    body = err.value.openai_body()
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == param
    assert param in body["error"]["message"]
    assert err.value.anthropic_body()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("neutral", [{"n": 1}, {"n": None}, {"logprobs": False}, {"logit_bias": {}}, {"frequency_penalty": 0.0}, {"modalities": ["text"]}, {"audio": None}])
def test_neutral_values_are_accepted(neutral: dict) -> None:
    translate({"messages": USER, **neutral})


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}, "messages[0].content[0]"),
        ({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}]}, "messages[0].content[0].image_url.url"),
        ({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}]}, "messages[0].content[0].image_url.url"),
        ({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}, "messages[0].content[0].image_url.url"),
        ({"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}, "messages[0].content[0].file"),
        ({"role": "function", "name": "f", "content": "x"}, "messages[0].role"),
        ({"role": "wizard", "content": "x"}, "messages[0].role"),
        ({"role": "assistant", "audio": {"id": "a1"}}, "messages[0].audio"),
        ({"role": "tool", "content": "x"}, "messages[0].tool_call_id"),
        (
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1, 2]"}}]},
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]},
            "messages[0].tool_calls[0].function.arguments",
        ),
        ({"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}, "messages[0].content[0]"),
    ],
)
def test_unmappable_message_content_raises(message: dict, param: str) -> None:
    with pytest.raises(TranslationError) as err:
        translate({"messages": [message, {"role": "user", "content": "go"}]})
    assert err.value.param == param


def test_messages_required() -> None:
    for body in ({}, {"messages": []}, {"messages": "hi"}, {"messages": [{"role": "system", "content": "only system"}]}):
        with pytest.raises(TranslationError) as err:
            translate(body)
        assert err.value.param == "messages"
