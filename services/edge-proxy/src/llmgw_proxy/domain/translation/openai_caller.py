"""OpenAI-dialect caller, Anthropic upstream: ``POST /v1/chat/completions`` served by a Claude model.

- :func:`openai_chat_request_to_anthropic` — Chat Completions request body → Messages request body.
- :func:`anthropic_response_to_openai_chat` — Messages response → ``chat.completion``.
- :class:`AnthropicToOpenAIStream` — Messages SSE stream → ``chat.completion.chunk`` SSE stream.

Field-by-field table and known gaps: docs/translation.md.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from llmgw_proxy.domain.translation._common import (
    ANTHROPIC_IMAGE_TYPES,
    SSE_DONE,
    SSEDecoder,
    anthropic_stop_reason_to_openai,
    anthropic_tool_id,
    anthropic_usage_to_openai,
    as_int,
    dumps,
    loads,
    normalized_usage,
    parse_data_url,
    sse_data,
    strip_prefix,
)
from llmgw_proxy.domain.translation.errors import TranslationError, anthropic_error_to_openai

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "JSON_OBJECT_INSTRUCTION",
    "AnthropicToOpenAIStream",
    "anthropic_response_to_openai_chat",
    "openai_chat_request_to_anthropic",
]

#: ``max_tokens`` sent to Anthropic (which requires it) when the OpenAI request sets neither
#: ``max_completion_tokens`` nor ``max_tokens``. 4096 is accepted by every Claude model.
DEFAULT_MAX_TOKENS = 4096

#: System-prompt text added for ``response_format: {"type": "json_object"}`` (best effort: Claude
#: has no schema-less JSON mode).
JSON_OBJECT_INSTRUCTION = (
    "Respond only with a single valid JSON object. Do not wrap it in Markdown code fences and do not "
    "add any text before or after it."
)

# Accepted and dropped on purpose (documented in docs/translation.md).
_IGNORED = frozenset(
    {
        "stream_options",  # the proxy reads it; ``include_usage`` is an argument of AnthropicToOpenAIStream
        "store",
        "metadata",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "seed",
        "prediction",
        "verbosity",
    }
)
_HANDLED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "stream",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "user",
        "safety_identifier",
        "response_format",
        "reasoning_effort",
    }
)
# Accepted only with a neutral value (the OpenAI default); anything else is a TranslationError.
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "n": (None, 1),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "logit_bias": (None, {}),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "audio": (None,),
    "modalities": (None, ["text"]),
    "functions": (None, []),
    "function_call": (None,),
    "web_search_options": (None,),
    "moderation": (None,),
}
_NEUTRAL_WHY = {
    "n": "Anthropic models return exactly one choice; send n=1 or omit it.",
    "logprobs": "Anthropic models do not return log probabilities.",
    "top_logprobs": "Anthropic models do not return log probabilities.",
    "logit_bias": "Anthropic models do not support logit bias.",
    "presence_penalty": "Anthropic models have no presence penalty.",
    "frequency_penalty": "Anthropic models have no frequency penalty.",
    "audio": "audio output is not available on Anthropic models.",
    "modalities": "Anthropic models produce text only.",
    "functions": "the legacy 'functions' API is not translated; use 'tools'.",
    "function_call": "the legacy 'function_call' API is not translated; use 'tool_choice'.",
    "web_search_options": "web search is not available through translation.",
    "moderation": "OpenAI moderation is not available on Anthropic models.",
}
_EFFORTS = {"none": "low", "minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "max"}


# =====================================================================================================
# request
# =====================================================================================================


def openai_chat_request_to_anthropic(
    body: dict[str, Any], upstream_model: str, *, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> dict[str, Any]:
    """Translate an OpenAI Chat Completions request body into an Anthropic Messages request body.

    ``upstream_model`` replaces ``model``. Raises :class:`TranslationError` for a parameter that
    cannot be mapped (see docs/translation.md for the full table). The input is not modified.
    """
    if not isinstance(body, dict):
        raise TranslationError("body", "must be a JSON object.")
    for key, value in body.items():
        if key in _HANDLED or key in _IGNORED:
            continue
        neutral = _NEUTRAL.get(key)
        if neutral is None:
            raise TranslationError(key, "has no equivalent on Anthropic models.")
        if not _is_neutral(value, neutral):
            raise TranslationError(key, _NEUTRAL_WHY[key])

    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise TranslationError("messages", "must be a non-empty list.")
    system, converted = _convert_messages(messages)

    out: dict[str, Any] = {"model": upstream_model}

    response_format = body.get("response_format")
    output_config: dict[str, Any] = {}
    if response_format is not None:
        fmt = _response_format(response_format)
        if fmt == "json_object":
            system.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})
        elif fmt is not None:
            output_config["format"] = fmt

    if system:
        if len(system) == 1 and "cache_control" not in system[0]:
            out["system"] = system[0]["text"]
        else:
            out["system"] = system
    out["messages"] = converted

    max_tokens = body.get("max_completion_tokens")
    param = "max_completion_tokens"
    if max_tokens is None:
        max_tokens, param = body.get("max_tokens"), "max_tokens"
    if max_tokens is None:
        max_tokens = default_max_tokens
    elif not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        raise TranslationError(param, "must be an integer.")
    out["max_tokens"] = max_tokens

    temperature = body.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool):
            raise TranslationError("temperature", "must be a number.")
        # OpenAI accepts 0..2, Anthropic 0..1: values above 1 are clamped to Anthropic's maximum.
        out["temperature"] = 1.0 if temperature > 1 else temperature
    top_p = body.get("top_p")
    if top_p is not None:
        out["top_p"] = top_p

    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list):
        if not all(isinstance(s, str) for s in stop):
            raise TranslationError("stop", "must be a string or a list of strings.")
        if stop:
            out["stop_sequences"] = list(stop)
    elif stop is not None:
        raise TranslationError("stop", "must be a string or a list of strings.")

    stream = body.get("stream")
    if stream:
        out["stream"] = True

    tools, tool_choice = _tools(body)
    if tools:
        out["tools"] = tools
    if tool_choice is not None:
        out["tool_choice"] = tool_choice

    user = body.get("user") or body.get("safety_identifier")
    if user is not None:
        if not isinstance(user, str):
            raise TranslationError("user", "must be a string.")
        out["metadata"] = {"user_id": user}

    effort = body.get("reasoning_effort")
    if effort is not None:
        if not isinstance(effort, str) or effort not in _EFFORTS:
            raise TranslationError("reasoning_effort", f"unknown value {effort!r}.")
        output_config["effort"] = _EFFORTS[effort]
    if output_config:
        out["output_config"] = output_config
    return out


def _is_neutral(value: Any, neutral: tuple[Any, ...]) -> bool:
    for n in neutral:
        if value is n or (type(value) is not bool and type(n) is not bool and value == n):
            return True
    return False


def _response_format(value: Any) -> dict[str, Any] | str | None:
    if not isinstance(value, dict):
        raise TranslationError("response_format", "must be an object.")
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return "json_object"
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise TranslationError("response_format.json_schema.schema", "a JSON schema object is required.")
        return {"type": "json_schema", "schema": schema}
    raise TranslationError("response_format.type", f"{kind!r} cannot be translated (use text, json_object or json_schema).")


def _cache_control(part: dict[str, Any], block: dict[str, Any]) -> dict[str, Any]:
    """Carry a prompt-caching marker over: ``cache_control`` (kept as is) or OpenAI's
    ``prompt_cache_breakpoint`` (→ ``{"type": "ephemeral"}``)."""
    cc = part.get("cache_control")
    if isinstance(cc, dict):
        block["cache_control"] = cc
    elif isinstance(part.get("prompt_cache_breakpoint"), dict):
        block["cache_control"] = {"type": "ephemeral"}
    return block


def _text_blocks(content: Any, param: str, *, allow_refusal: bool = False) -> list[dict[str, Any]]:
    """String or list of text parts → Anthropic text blocks (empty strings dropped)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise TranslationError(param, "must be a string or a list of content parts.")
    blocks = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                blocks.append(_cache_control(part, {"type": "text", "text": part["text"]}))
        elif kind == "refusal" and allow_refusal and isinstance(part.get("refusal"), str):
            if part["refusal"]:
                blocks.append({"type": "text", "text": part["refusal"]})
        else:
            raise TranslationError(f"{param}[{j}]", f"content part of type {kind!r} is not allowed here.")
    return blocks


def _image_block(part: dict[str, Any], param: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise TranslationError(f"{param}.image_url.url", "is required.")
    if url.startswith("data:"):
        media_type, data = parse_data_url(url, f"{param}.image_url.url")
        if media_type not in ANTHROPIC_IMAGE_TYPES:
            raise TranslationError(
                f"{param}.image_url.url", f"image type {media_type!r} is not supported (jpeg, png, gif, webp)."
            )
        source = {"type": "base64", "media_type": media_type, "data": data}
    elif url.startswith(("https://", "http://")):
        source = {"type": "url", "url": url}
    else:
        raise TranslationError(f"{param}.image_url.url", "must be an http(s) URL or a base64 data URL.")
    return _cache_control(part, {"type": "image", "source": source})


def _file_block(part: dict[str, Any], param: str) -> dict[str, Any]:
    file = part.get("file")
    if not isinstance(file, dict):
        raise TranslationError(f"{param}.file", "is required.")
    data = file.get("file_data")
    if not isinstance(data, str) or not data:
        raise TranslationError(f"{param}.file", "only inline 'file_data' (base64 PDF) can be translated, not 'file_id'.")
    if data.startswith("data:"):
        media_type, data = parse_data_url(data, f"{param}.file.file_data")
    else:
        media_type = "application/pdf"
    if media_type != "application/pdf":
        raise TranslationError(f"{param}.file.file_data", f"file type {media_type!r} is not supported (PDF only).")
    block: dict[str, Any] = {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if isinstance(file.get("filename"), str) and file["filename"]:
        block["title"] = file["filename"]
    return _cache_control(part, block)


def _user_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return _text_blocks(content, param)
    if not isinstance(content, list):
        raise TranslationError(f"{param}.content", "must be a string or a list of content parts.")
    blocks = []
    for j, part in enumerate(content):
        p = f"{param}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks.extend(_text_blocks([part], f"{param}.content"))
        elif kind == "image_url":
            blocks.append(_image_block(part, p))
        elif kind == "file":
            blocks.append(_file_block(part, p))
        elif kind == "input_audio":
            raise TranslationError(p, "audio input is not supported by Anthropic models.")
        else:
            raise TranslationError(p, f"content part of type {kind!r} cannot be translated.")
    return blocks


def _tool_use_block(call: Any, param: str) -> dict[str, Any]:
    if not isinstance(call, dict):
        raise TranslationError(param, "must be an object.")
    if call.get("type", "function") != "function":
        raise TranslationError(f"{param}.type", f"tool calls of type {call.get('type')!r} cannot be translated.")
    fn = call.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise TranslationError(f"{param}.function.name", "is required.")
    arguments = fn.get("arguments")
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        args: Any = {}
    elif isinstance(arguments, str):
        try:
            args = loads(arguments)
        except msgspec.DecodeError:
            args = None
    else:
        args = arguments
    if not isinstance(args, dict):
        raise TranslationError(
            f"{param}.function.arguments", "must be a JSON object (Anthropic tool inputs are objects)."
        )
    call_id = call.get("id")
    return {
        "type": "tool_use",
        "id": anthropic_tool_id(call_id if isinstance(call_id, str) else ""),
        "name": fn["name"],
        "input": args,
    }


def _convert_messages(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []

    def append(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})

    for i, msg in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise TranslationError(param, "must be an object.")
        role = msg.get("role")
        content = msg.get("content")
        if role in ("system", "developer"):
            system.extend(_text_blocks(content, f"{param}.content"))
        elif role == "user":
            append("user", _user_blocks(content, param))
        elif role == "assistant":
            if msg.get("audio") is not None:
                raise TranslationError(f"{param}.audio", "audio output is not supported by Anthropic models.")
            if msg.get("function_call") is not None:
                raise TranslationError(f"{param}.function_call", "the legacy function-call API is not translated; use tool_calls.")
            blocks = _text_blocks(content, f"{param}.content", allow_refusal=True)
            refusal = msg.get("refusal")
            if isinstance(refusal, str) and refusal:
                blocks.append({"type": "text", "text": refusal})
            calls = msg.get("tool_calls")
            if calls:
                if not isinstance(calls, list):
                    raise TranslationError(f"{param}.tool_calls", "must be a list.")
                blocks.extend(_tool_use_block(c, f"{param}.tool_calls[{j}]") for j, c in enumerate(calls))
            append("assistant", blocks)
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise TranslationError(f"{param}.tool_call_id", "is required.")
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": anthropic_tool_id(call_id)}
            if isinstance(content, str):
                if content:
                    result["content"] = content
            else:
                blocks = _text_blocks(content, f"{param}.content")
                if blocks:
                    result["content"] = blocks
            out_blocks = [result]
            # tool_result blocks must come first in their user turn: a tool answer that follows a
            # user message of the same turn is placed before that message's blocks.
            if out and out[-1]["role"] == "user" and any(b.get("type") != "tool_result" for b in out[-1]["content"]):
                prev = out[-1]["content"]
                k = next(idx for idx, b in enumerate(prev) if b.get("type") != "tool_result")
                prev.insert(k, result)
            else:
                append("user", out_blocks)
        elif role == "function":
            raise TranslationError(f"{param}.role", "the legacy 'function' role is not translated; use 'tool'.")
        else:
            raise TranslationError(f"{param}.role", f"unknown role {role!r}.")
    if not out:
        raise TranslationError("messages", "must contain at least one user or assistant message with content.")
    for message in out:  # a lone plain text block is sent in the short string form
        blocks = message["content"]
        if len(blocks) == 1 and blocks[0]["type"] == "text" and len(blocks[0]) == 2:
            message["content"] = blocks[0]["text"]
    return system, out


def _tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    raw_tools = body.get("tools")
    tools: list[dict[str, Any]] = []
    if raw_tools is not None:
        if not isinstance(raw_tools, list):
            raise TranslationError("tools", "must be a list.")
        for i, tool in enumerate(raw_tools):
            p = f"tools[{i}]"
            if not isinstance(tool, dict) or tool.get("type", "function") != "function":
                kind = tool.get("type") if isinstance(tool, dict) else None
                raise TranslationError(f"{p}.type", f"tools of type {kind!r} cannot be translated (function tools only).")
            fn = tool.get("function")
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise TranslationError(f"{p}.function.name", "is required.")
            schema = fn.get("parameters")
            if schema is None:
                schema = {"type": "object", "properties": {}}
            elif not isinstance(schema, dict):
                raise TranslationError(f"{p}.function.parameters", "must be a JSON schema object.")
            out: dict[str, Any] = {"name": fn["name"]}
            if isinstance(fn.get("description"), str) and fn["description"]:
                out["description"] = fn["description"]
            out["input_schema"] = schema
            if fn.get("strict") is True:
                out["strict"] = True
            tools.append(out)

    choice = body.get("tool_choice")
    result: dict[str, Any] | None = None
    if choice is None or choice == "auto":
        result = {"type": "auto"} if tools else None
    elif choice == "none":
        result = {"type": "none"} if tools else None
    elif choice == "required":
        result = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str):
            raise TranslationError("tool_choice.function.name", "is required.")
        result = {"type": "tool", "name": name}
    else:
        kind = choice.get("type") if isinstance(choice, dict) else choice
        raise TranslationError("tool_choice", f"{kind!r} cannot be translated (auto, none, required or a named function).")
    if result is not None and result["type"] in ("any", "tool") and not tools:
        raise TranslationError("tool_choice", "requires 'tools'.")

    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise TranslationError("parallel_tool_calls", "must be a boolean.")
    if parallel is False and result is not None and result["type"] != "none":
        result["disable_parallel_tool_use"] = True
    if result == {"type": "auto"} and choice is None:
        result = None  # Anthropic's default; keep the translated request minimal
    return tools, result


# =====================================================================================================
# response
# =====================================================================================================


def chat_completion_id(message_id: str | None) -> str:
    """``msg_01ABC`` → ``chatcmpl-01ABC``."""
    return "chatcmpl-" + strip_prefix(message_id or "llmgw", "msg_")


def anthropic_response_to_openai_chat(
    body: dict[str, Any], requested_model: str, *, created: int | None = None
) -> dict[str, Any]:
    """Translate an Anthropic Messages response into an OpenAI ``chat.completion`` object.

    ``model`` is ``requested_model`` (the name the client asked for); ``created`` defaults to now.
    Text blocks are concatenated into ``message.content``; ``tool_use`` blocks become
    ``message.tool_calls`` (``arguments`` = the input as a JSON string); thinking and server-tool
    blocks are dropped. Usage: ``prompt_tokens`` = input + cache reads + cache writes.
    """
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in body.get("content") or ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id") or f"call_{len(tool_calls)}",
                    "type": "function",
                    "function": {"name": block.get("name") or "", "arguments": dumps(block.get("input") or {})},
                }
            )
    text = "".join(texts)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not tool_calls else None,
        "refusal": None,
        "annotations": [],
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": chat_completion_id(body.get("id")),
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": requested_model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": anthropic_stop_reason_to_openai(body.get("stop_reason")),
            }
        ],
        "usage": anthropic_usage_to_openai(body.get("usage")),
        "system_fingerprint": None,
    }


# =====================================================================================================
# stream
# =====================================================================================================


class AnthropicToOpenAIStream:
    """Anthropic Messages SSE stream → OpenAI ``chat.completion.chunk`` SSE stream.

    Feed the upstream bytes as they arrive (any chunk boundaries, even one byte at a time); each
    :meth:`feed` returns the OpenAI ``data: {...}\\n\\n`` bytes completed so far (possibly ``b""``).

    Output sequence: a first chunk with ``delta: {"role": "assistant", "content": ""}`` (at
    ``message_start``); ``content`` deltas for text; for each ``tool_use`` block a ``tool_calls``
    delta with ``index`` (0-based among tool calls), ``id``, ``type`` and ``function.name`` then
    ``function.arguments`` fragments from ``input_json_delta``; a chunk with an empty delta and the
    ``finish_reason`` (at ``message_delta``); when ``include_usage``, a ``choices: []`` chunk with
    ``usage`` (and ``"usage": null`` on every other chunk, as OpenAI does); then ``data: [DONE]``.
    Thinking blocks, citations and ``ping`` events produce nothing.

    An Anthropic ``error`` event becomes ``data: {"error": {"message", "type", "param", "code"}}``
    (as OpenAI reports mid-stream errors; the openai SDK raises ``APIError`` on it) and ends the
    translation: later input is ignored and no ``[DONE]`` follows.

    :meth:`close` is for the end of the upstream body: if the stream was cut after the
    ``message_delta`` it completes normally (usage chunk, ``[DONE]``); if it was cut earlier it
    emits an error payload (code ``upstream_stream_incomplete``). It returns ``b""`` when the
    stream already ended.
    """

    __slots__ = (
        "include_usage",
        "model",
        "created",
        "id",
        "error",
        "finish_reason",
        "_sse",
        "_tools",
        "_next_tool",
        "_started",
        "_finish_sent",
        "_done",
        "_usage",
    )

    def __init__(self, requested_model: str, include_usage: bool = False, *, created: int | None = None) -> None:
        self.include_usage = include_usage
        self.model = requested_model
        self.created = created if created is not None else int(time.time())
        #: ``chatcmpl-…`` id (derived from the Anthropic message id at ``message_start``)
        self.id = chat_completion_id(None)
        #: the OpenAI error payload emitted, if the stream failed
        self.error: dict[str, Any] | None = None
        #: the OpenAI ``finish_reason`` once known
        self.finish_reason: str | None = None
        self._sse = SSEDecoder()
        # Anthropic block index → [openai tool index, got argument fragments?, input at block start]
        self._tools: dict[int, list[Any]] = {}
        self._next_tool = 0
        self._started = False
        self._finish_sent = False
        self._done = False
        self._usage: dict[str, Any] = {}

    # --- public ---------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """True once ``[DONE]`` or an error payload was emitted."""
        return self._done

    @property
    def usage(self) -> dict[str, int]:
        """Normalised token counts seen so far (CONTRACT.md usage-event field names:
        ``prompt_tokens`` (input + cache reads + cache writes), ``cached_tokens``,
        ``cache_write_tokens``, ``completion_tokens``, ``reasoning_tokens``, ``total_tokens``)."""
        u = self._usage
        read = as_int(u.get("cache_read_input_tokens"))
        write = as_int(u.get("cache_creation_input_tokens"))
        return normalized_usage(
            prompt=as_int(u.get("input_tokens")) + read + write,
            cached=read,
            cache_write=write,
            completion=as_int(u.get("output_tokens")),
            reasoning=as_int(u.get("thinking_tokens")),
        )

    @property
    def usage_seen(self) -> bool:
        """True once the upstream reported any usage."""
        return bool(self._usage)

    def feed(self, chunk: bytes) -> bytes:
        """Translate the next upstream bytes; returns the OpenAI SSE bytes ready to send."""
        if self._done:
            return b""
        out: list[bytes] = []
        for name, data in self._sse.feed(chunk):
            self._event(name, data, out)
            if self._done:
                break
        return b"".join(out)

    def close(self) -> bytes:
        """End of the upstream body: finish (or fail) the OpenAI stream; see the class docstring."""
        if self._done:
            return b""
        out: list[bytes] = []
        for name, data in self._sse.flush():
            self._event(name, data, out)
            if self._done:
                return b"".join(out)
        if self._finish_sent:
            self._finish(out)
        else:
            self._fail(
                {
                    "message": "The upstream stream ended before the response was complete.",
                    "type": "server_error",
                    "param": None,
                    "code": "upstream_stream_incomplete",
                },
                out,
            )
        return b"".join(out)

    # --- internals ------------------------------------------------------------------------------

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        payload: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self.include_usage:
            payload["usage"] = None
        return sse_data(payload)

    def _start(self, out: list[bytes]) -> None:
        if not self._started:
            self._started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))

    def _record_usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        for field in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
            value = usage.get(field)
            if isinstance(value, int) and not isinstance(value, bool):
                self._usage[field] = value
        details = usage.get("output_tokens_details")
        if isinstance(details, dict) and isinstance(details.get("thinking_tokens"), int):
            self._usage["thinking_tokens"] = details["thinking_tokens"]

    def _event(self, name: str | None, data: bytes, out: list[bytes]) -> None:
        try:
            event = loads(data)
        except msgspec.DecodeError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type") or name
        if kind == "content_block_delta":
            self._delta(event, out)
        elif kind == "content_block_start":
            self._block_start(event, out)
        elif kind == "content_block_stop":
            self._block_stop(event, out)
        elif kind == "message_start":
            message = event.get("message") if isinstance(event.get("message"), dict) else {}
            if isinstance(message.get("id"), str):
                self.id = chat_completion_id(message["id"])
            self._record_usage(message.get("usage"))
            self._start(out)
        elif kind == "message_delta":
            self._record_usage(event.get("usage"))
            delta = event.get("delta") if isinstance(event.get("delta"), dict) else {}
            if not self._finish_sent:
                self._start(out)
                self.finish_reason = anthropic_stop_reason_to_openai(delta.get("stop_reason"))
                self._finish_sent = True
                out.append(self._chunk({}, self.finish_reason))
        elif kind == "message_stop":
            if not self._finish_sent:
                self._start(out)
                self.finish_reason = "stop"
                self._finish_sent = True
                out.append(self._chunk({}, self.finish_reason))
            self._finish(out)
        elif kind == "error":
            self._fail(anthropic_error_to_openai(500, event)["error"], out)
        # ping and unknown events: nothing

    def _block_start(self, event: dict[str, Any], out: list[bytes]) -> None:
        block = event.get("content_block")
        if not isinstance(block, dict):
            return
        kind = block.get("type")
        if kind == "text":
            self._start(out)
            if block.get("text"):
                out.append(self._chunk({"content": block["text"]}))
        elif kind == "tool_use":
            self._start(out)
            index = self._next_tool
            self._next_tool += 1
            self._tools[as_int(event.get("index"))] = [index, False, block.get("input")]
            out.append(
                self._chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": block.get("id") or f"call_{index}",
                                "type": "function",
                                "function": {"name": block.get("name") or "", "arguments": ""},
                            }
                        ]
                    }
                )
            )

    def _delta(self, event: dict[str, Any], out: list[bytes]) -> None:
        delta = event.get("delta")
        if not isinstance(delta, dict):
            return
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            if text:
                self._start(out)
                out.append(self._chunk({"content": text}))
        elif kind == "input_json_delta":
            tool = self._tools.get(as_int(event.get("index")))
            fragment = delta.get("partial_json")
            if tool is not None and fragment:
                tool[1] = True
                out.append(self._chunk({"tool_calls": [{"index": tool[0], "function": {"arguments": fragment}}]}))

    def _block_stop(self, event: dict[str, Any], out: list[bytes]) -> None:
        tool = self._tools.get(as_int(event.get("index")))
        if tool is not None and not tool[1]:
            # no input_json_delta: the whole input came with content_block_start (or it is empty)
            tool[1] = True
            start_input = tool[2] if isinstance(tool[2], dict) else {}
            out.append(self._chunk({"tool_calls": [{"index": tool[0], "function": {"arguments": dumps(start_input)}}]}))

    def _finish(self, out: list[bytes]) -> None:
        if self.include_usage:
            raw = dict(self._usage)
            if "thinking_tokens" in raw:
                raw["output_tokens_details"] = {"thinking_tokens": raw.pop("thinking_tokens")}
            usage = anthropic_usage_to_openai(raw)
            out.append(
                sse_data(
                    {
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "system_fingerprint": None,
                        "choices": [],
                        "usage": usage,
                    }
                )
            )
        out.append(SSE_DONE)
        self._done = True

    def _fail(self, error: dict[str, Any], out: list[bytes]) -> None:
        self.error = error
        out.append(sse_data({"error": error}))
        self._done = True
