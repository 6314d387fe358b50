"""OpenAI wire format: chat completions, completions, embeddings, Responses API, models."""

from __future__ import annotations

import base64
import hashlib
import random
import struct
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .base import SSE_DONE, ApiError, Reply, encode, sse, sse_event
from .tokens import (
    chat_prompt_tokens,
    completion_prompt_tokens,
    ceil4,
    is_reasoning_model,
    openai_cache_hit,
    responses_prompt_tokens,
    sample_object,
    split_pieces,
    tool_tokens,
)

if TYPE_CHECKING:
    from .app import Call, MockApp

FINGERPRINT = "fp_llmgw_mock"
MODEL_CREATED = 1_700_000_000


# --- validation -------------------------------------------------------------------------------------


def require_model(data: dict[str, Any]) -> str:
    model = data.get("model")
    if model is None:
        raise ApiError(400, "you must provide a model parameter", type="invalid_request_error")
    if not isinstance(model, str):
        raise ApiError(
            400,
            f"Invalid type for 'model': expected a string, but got {type(model).__name__} instead.",
            param="model",
            code="invalid_type",
        )
    return model


def check_stream(data: dict[str, Any]) -> bool:
    stream = data.get("stream", False)
    if stream is None:
        return False
    if not isinstance(stream, bool):
        raise ApiError(
            400,
            "Invalid type for 'stream': expected a boolean, but got a value of another type instead.",
            param="stream",
            code="invalid_type",
        )
    return stream


def _limit(data: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = data.get(name)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ApiError(
                    400,
                    f"Invalid '{name}': integer below minimum value. Expected a value >= 1.",
                    param=name,
                    code="integer_below_min_value",
                )
            return value
    return None


def _include_usage(data: dict[str, Any]) -> bool:
    options = data.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


# --- usage ------------------------------------------------------------------------------------------


def _usage(prompt: int, completion: int, cached: int, reasoning: int) -> tuple[dict, dict]:
    """(chat/completions usage object, normalized usage)."""
    wire = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    return wire, normalized(prompt, completion, cached, 0, reasoning)


def normalized(prompt: int, completion: int, cached: int, cache_write: int, reasoning: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cached_tokens": cached,
        "cache_write_tokens": cache_write,
        "reasoning_tokens": reasoning,
    }


def _pick_chat_tool(data: dict[str, Any]) -> tuple[str, dict] | None:
    tools = data.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    choice = data.get("tool_choice")
    if choice == "none":
        return None
    functions = [
        t["function"]
        for t in tools
        if isinstance(t, dict) and t.get("type", "function") == "function" and isinstance(t.get("function"), dict)
    ]
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        for fn in functions:
            if fn.get("name") == wanted:
                return str(fn.get("name")), fn.get("parameters") or {}
    if functions:
        fn = functions[0]
        return str(fn.get("name", "tool")), fn.get("parameters") or {}
    return None


# --- chat completions -------------------------------------------------------------------------------
# The hot path of benchmarks: the JSON is assembled from pre-encoded pieces (same bytes msgspec would
# produce for the equivalent dicts, key order included).

_USAGE_FMT = (
    b'{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,'
    b'"prompt_tokens_details":{"cached_tokens":%d,"audio_tokens":0},'
    b'"completion_tokens_details":{"reasoning_tokens":%d,"audio_tokens":0,'
    b'"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}'
)
_TAIL = b',"service_tier":"default","system_fingerprint":"' + FINGERPRINT.encode() + b'"'
_FINISH = {
    reason: b',"logprobs":null,"finish_reason":' + encode(reason) + b"}]"
    for reason in (None, "stop", "length", "tool_calls")
}


def _usage_bytes(prompt: int, completion: int, cached: int, reasoning: int) -> bytes:
    return _USAGE_FMT % (prompt, completion, prompt + completion, cached, reasoning)


def chat_completions(app: MockApp, call: Call, data: dict[str, Any]) -> Reply:
    model = call.model
    messages = data.get("messages")
    if not isinstance(messages, list):
        raise ApiError(
            400, "Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter"
        )
    prompt = chat_prompt_tokens(data)
    cached = prompt // 2 if openai_cache_hit(data) else 0
    reasoning = app.config.reasoning_tokens if is_reasoning_model(model) else 0
    limit = _limit(data, "max_completion_tokens", "max_tokens")
    tool = _pick_chat_tool(data)
    if tool is not None:
        name, params = tool
        arguments = encode(sample_object(params)).decode()
        completion = tool_tokens(name, arguments) + reasoning
        finish = "tool_calls"
    else:
        n_words, truncated = app.answer_length(limit)
        completion = n_words + reasoning
        finish = "length" if truncated else "stop"
    usage = normalized(prompt, completion, cached, 0, reasoning)
    usage_json = _usage_bytes(prompt, completion, cached, reasoning)
    head = (
        b'{"id":"chatcmpl-'
        + app.new_id().encode()
        + (b'","object":"chat.completion.chunk","created":' if call.stream else b'","object":"chat.completion","created":')
        + str(int(time.time())).encode()
        + b',"model":'
        + encode(model)
    )

    if not call.stream:
        if tool is not None:
            message = encode(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_" + app.new_id(),
                            "type": "function",
                            "function": {"name": name, "arguments": arguments},
                        }
                    ],
                    "refusal": None,
                    "annotations": [],
                }
            )
        else:
            message = app.cached(("chat-message", n_words), lambda: encode(
                {"role": "assistant", "content": app.text(n_words), "refusal": None, "annotations": []}
            ))
        body = b"".join(
            (
                head,
                b',"choices":[{"index":0,"message":',
                message,
                _FINISH[finish],
                b',"usage":',
                usage_json,
                _TAIL,
                b"}",
            )
        )
        return Reply(body=body, usage=usage)

    include_usage = _include_usage(data)
    prefix = b"data: " + head + _TAIL + b',"choices":[{"index":0,"delta":'
    usage_null = b',"usage":null}\n\n' if include_usage else b"}\n\n"
    middle = _FINISH[None] + usage_null
    if tool is not None:
        first = encode(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_" + app.new_id(),
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }
                ],
                "refusal": None,
            }
        )
        deltas = [first] + [
            encode({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            for piece in split_pieces(arguments, app.config.stream_chunks or 4)
        ]
    else:
        deltas = app.cached(
            ("chat-deltas", n_words, app.config.stream_chunks),
            lambda: [b'{"role":"assistant","content":"","refusal":null}']
            + [encode({"content": piece}) for piece in app.pieces(n_words)],
        )
    events = [prefix + delta + middle for delta in deltas]
    events.append(prefix + b"{}" + _FINISH[finish] + usage_null)
    if include_usage:
        events.append(b"data: " + head + _TAIL + b',"choices":[],"usage":' + usage_json + b"}\n\n")
    events.append(SSE_DONE)
    # The client sees usage only when it asked for it; record what was reported.
    return Reply(events=events, usage=usage if include_usage else None)


# --- legacy completions -----------------------------------------------------------------------------


def completions(app: MockApp, call: Call, data: dict[str, Any]) -> Reply:
    model = call.model
    if "prompt" not in data:
        raise ApiError(400, "Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter")
    prompt = completion_prompt_tokens(data)
    cached = prompt // 2 if openai_cache_hit(data) else 0
    limit = _limit(data, "max_tokens")
    n_words, truncated = app.answer_length(limit if limit is not None else 16)
    finish = "length" if truncated else "stop"
    wire_usage, usage = _usage(prompt, n_words, cached, 0)
    cid = "cmpl-" + app.new_id()
    created = int(time.time())
    if not call.stream:
        body = {
            "id": cid,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{"text": app.text(n_words), "index": 0, "logprobs": None, "finish_reason": finish}],
            "usage": wire_usage,
            "system_fingerprint": FINGERPRINT,
        }
        return Reply(body=encode(body), usage=usage)
    include_usage = _include_usage(data)
    base = {"id": cid, "object": "text_completion", "created": created, "model": model}

    def chunk(text: str, finish_reason: str | None) -> bytes:
        item = dict(base)
        item["choices"] = [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}]
        item["system_fingerprint"] = FINGERPRINT
        if include_usage:
            item["usage"] = None
        return sse(item)

    events = [chunk(piece, None) for piece in app.pieces(n_words)]
    events.append(chunk("", finish))
    if include_usage:
        item = dict(base)
        item["choices"] = []
        item["system_fingerprint"] = FINGERPRINT
        item["usage"] = wire_usage
        events.append(sse(item))
    events.append(SSE_DONE)
    return Reply(events=events, usage=usage if include_usage else None)


# --- embeddings -------------------------------------------------------------------------------------


@lru_cache(maxsize=2048)
def _vector(text: str, dims: int) -> tuple[list[float], str]:
    seed = int.from_bytes(hashlib.blake2b(f"{dims}:{text}".encode(), digest_size=8).digest(), "big")
    rng = random.Random(seed)
    values = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    packed = struct.pack(f"<{dims}f", *(v / norm for v in values))
    floats = list(struct.unpack(f"<{dims}f", packed))
    return floats, base64.b64encode(packed).decode()


def embeddings(app: MockApp, call: Call, data: dict[str, Any]) -> Reply:
    model = call.model
    value = data.get("input")
    if value is None or value == "" or value == []:
        raise ApiError(400, "'input' : input must be a non-empty string or array", param="input")
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list) and all(isinstance(v, int) for v in value):
        items = [value]
    elif isinstance(value, list):
        items = value
    else:
        raise ApiError(400, "'input' : input must be a string or an array", param="input")
    dims = data.get("dimensions")
    if dims is None:
        dims = 3072 if "large" in model else 1536
    if not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= 8192:
        raise ApiError(400, "Invalid 'dimensions'.", param="dimensions")
    fmt = data.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise ApiError(400, "Invalid 'encoding_format': must be 'float' or 'base64'.", param="encoding_format")
    prompt = 0
    out = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            key = item
            prompt += max(1, ceil4(len(item)))
        elif isinstance(item, list):
            key = encode(item).decode()
            prompt += max(1, len(item))
        else:
            raise ApiError(400, f"'input' : item {index} must be a string or an array of tokens", param="input")
        floats, b64 = _vector(key, dims)
        out.append({"object": "embedding", "index": index, "embedding": b64 if fmt == "base64" else floats})
    body = {"object": "list", "data": out, "model": model, "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}
    return Reply(body=encode(body), usage=normalized(prompt, 0, 0, 0, 0))


# --- Responses API ----------------------------------------------------------------------------------


def _pick_responses_tool(data: dict[str, Any]) -> tuple[str, dict] | None:
    tools = data.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    choice = data.get("tool_choice")
    if choice == "none":
        return None
    functions = [t for t in tools if isinstance(t, dict) and t.get("type") == "function"]
    if isinstance(choice, dict) and choice.get("type") == "function":
        for fn in functions:
            if fn.get("name") == choice.get("name"):
                return str(fn.get("name")), fn.get("parameters") or {}
    if functions:
        return str(functions[0].get("name", "tool")), functions[0].get("parameters") or {}
    return None


def responses(app: MockApp, call: Call, data: dict[str, Any]) -> Reply:
    model = call.model
    prompt = responses_prompt_tokens(data)
    cached = prompt // 2 if openai_cache_hit(data) else 0
    reasoning = app.config.reasoning_tokens if is_reasoning_model(model) else 0
    limit = _limit(data, "max_output_tokens")
    tool = _pick_responses_tool(data)
    truncated = False
    if tool is not None:
        name, params = tool
        arguments = encode(sample_object(params)).decode()
        completion = tool_tokens(name, arguments) + reasoning
    else:
        n_words, truncated = app.answer_length(limit)
        completion = n_words + reasoning
    usage_wire = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }
    usage = normalized(prompt, completion, cached, 0, reasoning)
    rid = "resp_" + app.new_id()
    created = int(time.time())
    status = "incomplete" if truncated else "completed"

    def response_object(state: str, output: list, with_usage: bool) -> dict:
        return {
            "id": rid,
            "object": "response",
            "created_at": created,
            "status": state,
            "background": False,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if state == "incomplete" else None,
            "instructions": data.get("instructions"),
            "max_output_tokens": data.get("max_output_tokens"),
            "max_tool_calls": None,
            "model": model,
            "output": output,
            "parallel_tool_calls": data.get("parallel_tool_calls", True),
            "previous_response_id": data.get("previous_response_id"),
            "prompt_cache_key": data.get("prompt_cache_key"),
            "reasoning": {"effort": None, "summary": None},
            "safety_identifier": None,
            "service_tier": "default",
            "store": data.get("store", True),
            "temperature": data.get("temperature", 1.0),
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": data.get("tool_choice", "auto"),
            "tools": data.get("tools") or [],
            "top_logprobs": 0,
            "top_p": data.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": usage_wire if with_usage else None,
            "user": None,
            "metadata": data.get("metadata") or {},
        }

    if tool is not None:
        item_id = "fc_" + app.new_id()
        call_id = "call_" + app.new_id()
        item = {
            "id": item_id,
            "type": "function_call",
            "status": "completed",
            "arguments": arguments,
            "call_id": call_id,
            "name": name,
        }
    else:
        item_id = "msg_" + app.new_id()
        text = app.text(n_words)
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
        item = {
            "id": item_id,
            "type": "message",
            "status": "incomplete" if truncated else "completed",
            "content": [part],
            "role": "assistant",
        }

    if not call.stream:
        return Reply(body=encode(response_object(status, [item], True)), usage=usage)

    seq = 0
    events: list[bytes] = []

    def emit(kind: str, payload: dict) -> None:
        nonlocal seq
        payload = {"type": kind, **payload, "sequence_number": seq}
        seq += 1
        events.append(sse_event(kind, payload))

    emit("response.created", {"response": response_object("in_progress", [], False)})
    emit("response.in_progress", {"response": response_object("in_progress", [], False)})
    if tool is not None:
        emit(
            "response.output_item.added",
            {"output_index": 0, "item": {**item, "status": "in_progress", "arguments": ""}},
        )
        for piece in split_pieces(arguments, app.config.stream_chunks or 4):
            emit(
                "response.function_call_arguments.delta",
                {"item_id": item_id, "output_index": 0, "delta": piece},
            )
        emit(
            "response.function_call_arguments.done",
            {"item_id": item_id, "output_index": 0, "name": name, "arguments": arguments},
        )
    else:
        emit(
            "response.output_item.added",
            {"output_index": 0, "item": {**item, "status": "in_progress", "content": []}},
        )
        empty_part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
        emit(
            "response.content_part.added",
            {"item_id": item_id, "output_index": 0, "content_index": 0, "part": empty_part},
        )
        for piece in app.pieces(n_words):
            emit(
                "response.output_text.delta",
                {"item_id": item_id, "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []},
            )
        emit(
            "response.output_text.done",
            {"item_id": item_id, "output_index": 0, "content_index": 0, "text": text, "logprobs": []},
        )
        emit(
            "response.content_part.done",
            {"item_id": item_id, "output_index": 0, "content_index": 0, "part": part},
        )
    emit("response.output_item.done", {"output_index": 0, "item": item})
    final = "response.incomplete" if truncated else "response.completed"
    emit(final, {"response": response_object(status, [item], True)})
    return Reply(events=events, usage=usage)


# --- moderations (a plain pass-through target: no usage) ---------------------------------------------

_MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)


def moderations(app: MockApp, call: Call, data: dict[str, Any]) -> Reply:
    value = data.get("input")
    if value is None:
        raise ApiError(400, "Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    count = len(value) if isinstance(value, list) and value and isinstance(value[0], str) else 1
    result = {
        "flagged": False,
        "categories": dict.fromkeys(_MODERATION_CATEGORIES, False),
        "category_scores": dict.fromkeys(_MODERATION_CATEGORIES, 0.0001),
        "category_applied_input_types": {c: ["text"] for c in _MODERATION_CATEGORIES},
    }
    body = {"id": "modr-" + app.new_id(), "model": call.model, "results": [result] * count}
    return Reply(body=encode(body))


# --- models -----------------------------------------------------------------------------------------


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": MODEL_CREATED, "owned_by": "system"}


def list_models(app: MockApp, call: Call, data: Any) -> Reply:
    return Reply(body=encode({"object": "list", "data": [_model(m) for m in app.config.openai_models]}))


def get_model(app: MockApp, call: Call, model_id: str) -> Reply:
    if model_id not in app.config.openai_models:
        raise ApiError(
            404,
            f"The model '{model_id}' does not exist or you do not have access to it.",
            code="model_not_found",
        )
    return Reply(body=encode(_model(model_id)))
