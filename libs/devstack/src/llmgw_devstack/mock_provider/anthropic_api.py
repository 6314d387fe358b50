"""Anthropic wire format: messages (JSON and SSE), count_tokens, models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import ApiError, Reply, encode, sse_event
from .openai_api import normalized
from .tokens import anthropic_prompt_tokens, anthropic_split, has_cache_control, sample_object, split_pieces, tool_tokens

if TYPE_CHECKING:
    from .app import Call, MockApp

MODEL_CREATED_AT = "2025-01-01T00:00:00Z"
_PING = sse_event("ping", {"type": "ping"})
_STOP = sse_event("message_stop", {"type": "message_stop"})


def _invalid(message: str) -> ApiError:
    return ApiError(400, message, type="invalid_request_error")


def require_model(data: dict[str, Any]) -> str:
    model = data.get("model")
    if model is None:
        raise _invalid("model: Field required")
    if not isinstance(model, str):
        raise _invalid("model: Input should be a valid string")
    return model


def check_stream(data: dict[str, Any]) -> bool:
    stream = data.get("stream", False)
    if stream is None:
        return False
    if not isinstance(stream, bool):
        raise _invalid("stream: Input should be a valid boolean")
    return stream


def _check_messages(data: dict[str, Any]) -> None:
    messages = data.get("messages")
    if messages is None:
        raise _invalid("messages: Field required")
    if not isinstance(messages, list):
        raise _invalid("messages: Input should be a valid list")


def _pick_tool(data: dict[str, Any]) -> tuple[str, dict] | None:
    tools = data.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    choice = data.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "none":
        return None
    custom = [t for t in tools if isinstance(t, dict) and t.get("type", "custom") == "custom" and "name" in t]
    if isinstance(choice, dict) and choice.get("type") == "tool":
        for tool in custom:
            if tool.get("name") == choice.get("name"):
                return str(tool["name"]), tool.get("input_schema") or {}
    if custom:
        return str(custom[0]["name"]), custom[0].get("input_schema") or {}
    return None


def _counts(data: dict[str, Any]) -> tuple[int, int, int, int]:
    total = anthropic_prompt_tokens(data)
    inp, read, creation = anthropic_split(total, has_cache_control(data))
    return total, inp, read, creation


def messages(app: MockApp, call: Call, data: dict[str, Any]) -> Reply:
    model = call.model
    _check_messages(data)
    max_tokens = data.get("max_tokens")
    if max_tokens is None:
        raise _invalid("max_tokens: Field required")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _invalid("max_tokens: Input should be a valid integer greater than or equal to 1")
    total, inp, read, creation = _counts(data)
    tool = _pick_tool(data)
    if tool is not None:
        name, schema = tool
        args = sample_object(schema)
        arguments = encode(args).decode()
        output = tool_tokens(name, arguments)
        stop_reason = "tool_use"
    else:
        n_words, truncated = app.answer_length(max_tokens)
        output = n_words
        stop_reason = "max_tokens" if truncated else "end_turn"
    usage = normalized(total, output, read, creation, 0)
    usage_wire = {
        "input_tokens": inp,
        "cache_creation_input_tokens": creation,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": creation, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output,
        "service_tier": "standard",
    }
    mid = "msg_" + app.new_id()
    tool_id = "toolu_" + app.new_id() if tool is not None else None

    if not call.stream:
        if tool is not None:
            content = [{"type": "tool_use", "id": tool_id, "name": name, "input": args}]
        else:
            content = [{"type": "text", "text": app.text(n_words)}]
        body = {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage_wire,
        }
        return Reply(body=encode(body), usage=usage)

    start_usage = dict(usage_wire)
    start_usage["output_tokens"] = 1  # as the real API does: a placeholder, the final count comes last
    events = [
        sse_event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": mid,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            },
        )
    ]
    if tool is not None:
        block = {"type": "tool_use", "id": tool_id, "name": name, "input": {}}
    else:
        block = {"type": "text", "text": ""}
    events.append(sse_event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}))
    events.append(_PING)
    if tool is not None:
        pieces = [""] + split_pieces(arguments, app.config.stream_chunks or 4)
        for piece in pieces:
            events.append(
                sse_event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": piece}},
                )
            )
    else:
        for piece in app.pieces(n_words):
            events.append(
                sse_event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
                )
            )
    events.append(sse_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(
        sse_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                # cumulative totals, like the real API
                "usage": {
                    "input_tokens": inp,
                    "cache_creation_input_tokens": creation,
                    "cache_read_input_tokens": read,
                    "output_tokens": output,
                },
            },
        )
    )
    events.append(_STOP)
    return Reply(events=events, usage=usage)


def count_tokens(app: MockApp, call: Call, data: dict[str, Any]) -> Reply:
    _check_messages(data)
    total = anthropic_prompt_tokens(data)
    return Reply(body=encode({"input_tokens": total}))


def _model(model_id: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model_id,
        "display_name": _display_name(model_id),
        "created_at": MODEL_CREATED_AT,
        "lifecycle": "active",
    }


def _display_name(model_id: str) -> str:
    """``claude-sonnet-4-5-20250929`` -> ``Claude Sonnet 4.5``."""
    words: list[str] = []
    for part in model_id.split("-"):
        if part.isdigit() and len(part) == 8:
            continue
        if part.isdigit() and words and words[-1][-1].isdigit():
            words[-1] += "." + part
        else:
            words.append(part if part[:1].isdigit() else part.capitalize())
    return " ".join(words)


def list_models(app: MockApp, call: Call, query: dict[str, str]) -> Reply:
    models = list(app.config.anthropic_models)
    after, before = query.get("after_id"), query.get("before_id")
    if after in models:
        models = models[models.index(after) + 1 :]
    if before in models:
        models = models[: models.index(before)]
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        raise _invalid("limit: Input should be a valid integer") from None
    if not 1 <= limit <= 1000:
        raise _invalid("limit: Input should be between 1 and 1000")
    page = models[:limit]
    body = {
        "data": [_model(m) for m in page],
        "has_more": len(models) > limit,
        "first_id": page[0] if page else None,
        "last_id": page[-1] if page else None,
    }
    return Reply(body=encode(body))


def get_model(app: MockApp, call: Call, model_id: str) -> Reply:
    if model_id not in app.config.anthropic_models:
        raise ApiError(404, f"model: {model_id}", type="not_found_error")
    return Reply(body=encode(_model(model_id)))
