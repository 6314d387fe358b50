"""Anthropic-dialect caller, OpenAI upstream: ``POST /v1/messages`` served by an OpenAI model.

- :func:`anthropic_request_to_openai_chat` — Messages request body → Chat Completions request body.
- :func:`openai_chat_response_to_anthropic` — ``chat.completion`` → Messages response.
- :class:`OpenAIToAnthropicStream` — ``chat.completion.chunk`` SSE stream → Messages SSE events.

Field-by-field table and known gaps: docs/translation.md.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from llmgw_proxy.domain.translation._common import (
    SSEDecoder,
    as_int,
    dumps,
    loads,
    normalized_usage,
    openai_finish_reason_to_anthropic,
    openai_tool_id,
    openai_usage_parts,
    openai_usage_to_anthropic,
    sse_event,
    strip_prefix,
)
from llmgw_proxy.domain.translation.errors import MissingParameterError, TranslationError, openai_error_to_anthropic

__all__ = [
    "OPENAI_MAX_STOP_SEQUENCES",
    "OpenAIToAnthropicStream",
    "anthropic_request_to_openai_chat",
    "openai_chat_response_to_anthropic",
]

#: Chat Completions accepts at most four stop sequences.
OPENAI_MAX_STOP_SEQUENCES = 4

# Accepted and dropped on purpose (documented in docs/translation.md).
_IGNORED = frozenset(
    {"cache_control", "service_tier", "speed", "diagnostics", "thinking", "user_profile_id", "workspace_id"}
)
_HANDLED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "output_config",
    }
)
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "top_k": (None,),
    "container": (None,),
    "mcp_servers": (None, []),
    "context_management": (None,),
    "inference_geo": (None,),
}
_NEUTRAL_WHY = {
    "top_k": "OpenAI models have no top_k sampling parameter.",
    "container": "code-execution containers are not available on OpenAI models.",
    "mcp_servers": "the MCP connector is not available through translation.",
    "context_management": "context management is not available on OpenAI models.",
    "inference_geo": "inference geography cannot be guaranteed on an OpenAI deployment.",
}
_EFFORTS = ("low", "medium", "high", "xhigh", "max")


# =====================================================================================================
# request
# =====================================================================================================


def anthropic_request_to_openai_chat(
    body: dict[str, Any],
    upstream_model: str,
    *,
    max_tokens_field: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens",
) -> dict[str, Any]:
    """Translate an Anthropic Messages request body into an OpenAI Chat Completions request body.

    ``upstream_model`` replaces ``model``. ``max_tokens`` is required, as by the Messages API
    (:class:`MissingParameterError`, 400 ``max_tokens: Field required``, when it is absent); it is sent as ``max_completion_tokens`` (what
    current OpenAI models, reasoning models included, accept) unless ``max_tokens_field`` says
    ``"max_tokens"`` (for OpenAI-compatible servers that only know the older name). A streaming
    request also gets ``stream_options: {"include_usage": true}`` so usage can be reported at the end.
    Raises :class:`TranslationError` for a parameter that cannot be mapped. The input is not modified.
    """
    if not isinstance(body, dict):
        raise TranslationError("body", "must be a JSON object.")
    if "max_tokens" not in body:
        # required by the Messages API: Anthropic answers 400, so does the translation (an OpenAI
        # model would otherwise run without any limit)
        raise MissingParameterError("max_tokens")
    for key, value in body.items():
        if key in _HANDLED or key in _IGNORED:
            continue
        neutral = _NEUTRAL.get(key)
        if neutral is None:
            raise TranslationError(key, "has no equivalent on OpenAI models.")
        if not any(value is n or (value == n and not isinstance(value, bool)) for n in neutral):
            raise TranslationError(key, _NEUTRAL_WHY[key])

    out: dict[str, Any] = {"model": upstream_model}
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None:
        text = _system_text(system)
        if text:
            messages.append({"role": "system", "content": text})
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise TranslationError("messages", "must be a non-empty list.")
    for i, msg in enumerate(raw_messages):
        messages.extend(_convert_message(msg, f"messages[{i}]"))
    out["messages"] = messages

    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        raise TranslationError("max_tokens", "must be an integer.")
    out[max_tokens_field] = max_tokens

    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]

    stop = body.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise TranslationError("stop_sequences", "must be a list of strings.")
        if len(stop) > OPENAI_MAX_STOP_SEQUENCES:
            raise TranslationError("stop_sequences", f"OpenAI models accept at most {OPENAI_MAX_STOP_SEQUENCES} stop sequences.")
        if stop:
            out["stop"] = list(stop)

    if body.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    elif body.get("stream") not in (None, False):
        raise TranslationError("stream", "must be a boolean.")

    tools = _tools(body.get("tools"))
    if tools:
        out["tools"] = tools
    choice = body.get("tool_choice")
    if choice is not None:
        _tool_choice(choice, tools, out)

    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str) and metadata["user_id"]:
        out["user"] = metadata["user_id"]
    elif metadata is not None and not isinstance(metadata, dict):
        raise TranslationError("metadata", "must be an object.")

    config = body.get("output_config")
    if config is not None:
        if not isinstance(config, dict):
            raise TranslationError("output_config", "must be an object.")
        for key, value in config.items():
            if value is None:
                continue
            if key == "format":
                schema = value.get("schema") if isinstance(value, dict) else None
                if not isinstance(value, dict) or value.get("type") != "json_schema" or not isinstance(schema, dict):
                    raise TranslationError("output_config.format", "only {'type': 'json_schema', 'schema': {...}} can be translated.")
                out["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "response", "schema": schema, "strict": True},
                }
            elif key == "effort":
                if value not in _EFFORTS:
                    raise TranslationError("output_config.effort", f"unknown value {value!r}.")
                out["reasoning_effort"] = value
            else:
                raise TranslationError(f"output_config.{key}", "has no equivalent on OpenAI models.")
    return out


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    if not isinstance(system, list):
        raise TranslationError("system", "must be a string or a list of text blocks.")
    parts = []
    for j, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise TranslationError(f"system[{j}]", "only text blocks can be translated.")
        if block["text"]:
            parts.append(block["text"])
    return "\n\n".join(parts)


def _image_part(block: dict[str, Any], param: str) -> dict[str, Any]:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64":
        url = f"data:{source.get('media_type') or 'image/png'};base64,{source.get('data') or ''}"
    elif kind == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise TranslationError(f"{param}.source", f"image sources of type {kind!r} cannot be translated (base64 or url).")
    return {"type": "image_url", "image_url": {"url": url}}


def _document_part(block: dict[str, Any], param: str) -> dict[str, Any]:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64" and source.get("media_type") == "application/pdf":
        title = block.get("title")
        return {
            "type": "file",
            "file": {
                "filename": title if isinstance(title, str) and title else "document.pdf",
                "file_data": f"data:application/pdf;base64,{source.get('data') or ''}",
            },
        }
    if kind == "text" and isinstance(source.get("data"), str):
        return {"type": "text", "text": source["data"]}
    raise TranslationError(f"{param}.source", f"document sources of type {kind!r} cannot be translated (base64 PDF or text).")


def _tool_result_text(block: dict[str, Any], param: str) -> str:
    content = block.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts = []
        for j, item in enumerate(content):
            if isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str):
                texts.append(item["text"])
            else:
                kind = item.get("type") if isinstance(item, dict) else None
                raise TranslationError(
                    f"{param}.content[{j}]", f"tool results with {kind!r} content cannot be translated (OpenAI tool messages are text only)."
                )
        text = "\n\n".join(texts)
    else:
        raise TranslationError(f"{param}.content", "must be a string or a list of content blocks.")
    if block.get("is_error") is True:
        text = f"Error: {text}" if text else "Error"
    return text


def _convert_message(msg: Any, param: str) -> list[dict[str, Any]]:
    if not isinstance(msg, dict):
        raise TranslationError(param, "must be an object.")
    role = msg.get("role")
    content = msg.get("content")
    if role not in ("user", "assistant"):
        raise TranslationError(f"{param}.role", f"unknown role {role!r}.")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise TranslationError(f"{param}.content", "must be a string or a list of content blocks.")

    if role == "assistant":
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for j, block in enumerate(content):
            p = f"{param}.content[{j}]"
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                texts.append(block.get("text") or "")
            elif kind == "tool_use":
                if not isinstance(block.get("name"), str):
                    raise TranslationError(f"{p}.name", "is required.")
                calls.append(
                    {
                        "id": openai_tool_id(block.get("id") or ""),
                        "type": "function",
                        "function": {"name": block["name"], "arguments": dumps(block.get("input") or {})},
                    }
                )
            elif kind in ("thinking", "redacted_thinking"):
                continue  # OpenAI chat has no way to replay reasoning
            else:
                raise TranslationError(p, f"assistant content of type {kind!r} cannot be translated.")
        text = "".join(texts)
        message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
        if calls:
            message["tool_calls"] = calls
        return [message] if text or calls else []

    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        p = f"{param}.content[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            if block.get("text"):
                parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image_part(block, p))
        elif kind == "document":
            parts.append(_document_part(block, p))
        elif kind == "tool_result":
            tool_messages.append(
                {
                    "role": "tool",
                    "tool_call_id": openai_tool_id(block.get("tool_use_id") or ""),
                    "content": _tool_result_text(block, p),
                }
            )
        else:
            raise TranslationError(p, f"user content of type {kind!r} cannot be translated.")
    out = tool_messages  # tool answers must directly follow the assistant's tool calls
    if parts:
        if all(part["type"] == "text" for part in parts) and len(parts) == 1:
            out.append({"role": "user", "content": parts[0]["text"]})
        else:
            out.append({"role": "user", "content": parts})
    return out


def _tools(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise TranslationError("tools", "must be a list.")
    tools = []
    for i, tool in enumerate(raw):
        p = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise TranslationError(p, "must be an object.")
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise TranslationError(f"{p}.type", f"server tool {kind!r} is not available on OpenAI models (custom tools only).")
        if not isinstance(tool.get("name"), str):
            raise TranslationError(f"{p}.name", "is required.")
        schema = tool.get("input_schema")
        if schema is None:
            schema = {"type": "object", "properties": {}}
        elif not isinstance(schema, dict):
            raise TranslationError(f"{p}.input_schema", "must be a JSON schema object.")
        fn: dict[str, Any] = {"name": tool["name"]}
        if isinstance(tool.get("description"), str) and tool["description"]:
            fn["description"] = tool["description"]
        fn["parameters"] = schema
        if tool.get("strict") is True:
            fn["strict"] = True
        tools.append({"type": "function", "function": fn})
    return tools


def _tool_choice(choice: Any, tools: list[dict[str, Any]], out: dict[str, Any]) -> None:
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "auto":
        value: Any = "auto"
    elif kind == "any":
        value = "required"
    elif kind == "none":
        value = "none"
    elif kind == "tool":
        if not isinstance(choice.get("name"), str):
            raise TranslationError("tool_choice.name", "is required.")
        value = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise TranslationError("tool_choice", f"{kind!r} cannot be translated (auto, any, tool or none).")
    if not tools:
        if kind in ("any", "tool"):
            raise TranslationError("tool_choice", "requires 'tools'.")
        return
    out["tool_choice"] = value
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        out["parallel_tool_calls"] = False


# =====================================================================================================
# response
# =====================================================================================================


def message_id(completion_id: str | None) -> str:
    """``chatcmpl-AbC`` → ``msg_AbC``."""
    return "msg_" + strip_prefix(completion_id or "llmgw", "chatcmpl-")


def _tool_input(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        value = loads(arguments)
    except msgspec.DecodeError:
        value = None
    # Anthropic tool inputs are objects: anything else is handed over verbatim under one key.
    return value if isinstance(value, dict) else {"_raw_arguments": arguments}


def openai_chat_response_to_anthropic(body: dict[str, Any], requested_model: str) -> dict[str, Any]:
    """Translate an OpenAI ``chat.completion`` into an Anthropic Messages response (``type: message``).

    ``model`` is ``requested_model``. ``choices[0].message.content`` becomes one text block,
    ``refusal`` a text block (and ``stop_reason: "refusal"``), ``tool_calls`` ``tool_use`` blocks
    (``arguments`` parsed; a non-object is kept under ``_raw_arguments``). Usage: ``input_tokens`` =
    prompt − cached − cache writes, ``cache_read_input_tokens`` = cached.
    """
    choices = body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, list):  # some compatible servers answer with parts
        text = "".join(p.get("text") or "" for p in text if isinstance(p, dict))
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        content.append({"type": "text", "text": refusal})
    for k, call in enumerate(message.get("tool_calls") or ()):
        if not isinstance(call, dict):
            continue
        fn = call.get("function") if isinstance(call.get("function"), dict) else {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{k}",
                "name": fn.get("name") or "",
                "input": _tool_input(fn.get("arguments")),
            }
        )
    stop_reason = "refusal" if refusal else openai_finish_reason_to_anthropic(choice.get("finish_reason"))
    return {
        "id": message_id(body.get("id")),
        "type": "message",
        "role": "assistant",
        "model": requested_model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": openai_usage_to_anthropic(body.get("usage")),
    }


# =====================================================================================================
# stream
# =====================================================================================================


class OpenAIToAnthropicStream:
    """OpenAI ``chat.completion.chunk`` SSE stream → Anthropic Messages SSE events.

    Feed the upstream bytes as they arrive (any chunk boundaries); each :meth:`feed` returns the
    Anthropic ``event: …\\ndata: {...}\\n\\n`` bytes completed so far. Event sequence:

    ``message_start`` (at the first chunk; ``usage`` has zero input tokens because OpenAI reports
    usage only at the end) → per content block ``content_block_start`` / ``content_block_delta``
    (``text_delta`` for ``content`` and ``refusal``; ``input_json_delta`` with the ``arguments``
    fragments for each tool call, whose block starts with ``{"type": "tool_use", "id", "name",
    "input": {}}``) / ``content_block_stop`` → at ``[DONE]``: ``message_delta`` (``stop_reason``;
    ``usage`` with the final ``output_tokens`` *and* ``input_tokens`` / cache counts from the usage
    chunk — cumulative, as Anthropic's ``message_delta`` usage is) → ``message_stop``.

    An OpenAI error payload (``data: {"error": …}``) becomes an ``event: error`` and ends the
    translation. :meth:`close` (end of the upstream body): completes the message if the
    ``finish_reason`` was seen, otherwise emits an ``error`` event (``api_error``: stream ended
    early). Tool calls are expected one after another, as OpenAI streams them; a fragment for a tool
    call whose block was already closed is an ``error`` event.
    """

    __slots__ = (
        "model",
        "id",
        "error",
        "stop_reason",
        "_sse",
        "_started",
        "_next_block",
        "_open",
        "_tool_blocks",
        "_refusal",
        "_finish_seen",
        "_done",
        "_usage",
    )

    def __init__(self, requested_model: str) -> None:
        self.model = requested_model
        #: ``msg_…`` id (derived from the OpenAI completion id)
        self.id = message_id(None)
        #: the Anthropic error object emitted, if the stream failed
        self.error: dict[str, Any] | None = None
        #: the Anthropic ``stop_reason`` once known
        self.stop_reason: str | None = None
        self._sse = SSEDecoder()
        self._started = False
        self._next_block = 0
        #: (kind, anthropic block index, openai tool index or None) of the open block
        self._open: tuple[str, int, int | None] | None = None
        #: openai tool index → anthropic block index
        self._tool_blocks: dict[int, int] = {}
        self._refusal = False
        self._finish_seen = False
        self._done = False
        self._usage: dict[str, Any] | None = None

    # --- public ---------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """True once ``message_stop`` or an ``error`` event was emitted."""
        return self._done

    @property
    def usage(self) -> dict[str, int]:
        """Normalised token counts seen so far (CONTRACT.md usage-event field names)."""
        prompt, cached, write, completion, reasoning = openai_usage_parts(self._usage)
        return normalized_usage(prompt, cached, write, completion, reasoning)

    @property
    def usage_seen(self) -> bool:
        """True once the upstream reported usage."""
        return self._usage is not None

    def feed(self, chunk: bytes) -> bytes:
        """Translate the next upstream bytes; returns the Anthropic SSE bytes ready to send."""
        if self._done:
            return b""
        out: list[bytes] = []
        for _name, data in self._sse.feed(chunk):
            self._data(data, out)
            if self._done:
                break
        return b"".join(out)

    def close(self) -> bytes:
        """End of the upstream body: complete (or fail) the Anthropic stream; see the class docstring."""
        if self._done:
            return b""
        out: list[bytes] = []
        for _name, data in self._sse.flush():
            self._data(data, out)
            if self._done:
                return b"".join(out)
        if self._finish_seen:
            self._finish(out)
        else:
            self._fail({"type": "api_error", "message": "The upstream stream ended before the response was complete."}, out)
        return b"".join(out)

    # --- internals ------------------------------------------------------------------------------

    def _start(self, out: list[bytes]) -> None:
        if self._started:
            return
        self._started = True
        out.append(
            sse_event(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": self.id,
                        "type": "message",
                        "role": "assistant",
                        "model": self.model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {
                            "input_tokens": 0,
                            "output_tokens": 0,
                            "cache_creation_input_tokens": 0,
                            "cache_read_input_tokens": 0,
                        },
                    },
                },
            )
        )

    def _close_block(self, out: list[bytes]) -> None:
        if self._open is not None:
            out.append(sse_event("content_block_stop", {"type": "content_block_stop", "index": self._open[1]}))
            self._open = None

    def _open_block(self, kind: str, block: dict[str, Any], tool_index: int | None, out: list[bytes]) -> int:
        self._close_block(out)
        index = self._next_block
        self._next_block += 1
        self._open = (kind, index, tool_index)
        out.append(sse_event("content_block_start", {"type": "content_block_start", "index": index, "content_block": block}))
        return index

    def _text(self, text: str, out: list[bytes]) -> None:
        if self._open is None or self._open[0] != "text":
            self._open_block("text", {"type": "text", "text": ""}, None, out)
        out.append(
            sse_event(
                "content_block_delta",
                {"type": "content_block_delta", "index": self._open[1], "delta": {"type": "text_delta", "text": text}},  # type: ignore[index]
            )
        )

    def _data(self, data: bytes, out: list[bytes]) -> None:
        if data.strip() == b"[DONE]":
            self._start(out)
            self._finish(out)
            return
        try:
            chunk = loads(data)
        except msgspec.DecodeError:
            return
        if not isinstance(chunk, dict):
            return
        if chunk.get("error") is not None:
            error = openai_error_to_anthropic(500, chunk)["error"]
            self._fail(error, out)
            return
        if not self._started and isinstance(chunk.get("id"), str):
            self.id = message_id(chunk["id"])
        self._start(out)
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices:
            if not isinstance(choice, dict) or as_int(choice.get("index")) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                content = delta.get("content")
                if isinstance(content, str) and content:
                    self._text(content, out)
                refusal = delta.get("refusal")
                if isinstance(refusal, str) and refusal:
                    self._refusal = True
                    self._text(refusal, out)
                calls = delta.get("tool_calls")
                if isinstance(calls, list):
                    for position, call in enumerate(calls):
                        if isinstance(call, dict):
                            self._tool_delta(call, position, out)
                            if self._done:
                                return
            finish = choice.get("finish_reason")
            if finish is not None and not self._finish_seen:
                self._finish_seen = True
                self._close_block(out)
                self.stop_reason = "refusal" if self._refusal else openai_finish_reason_to_anthropic(finish)

    def _tool_delta(self, call: dict[str, Any], position: int, out: list[bytes]) -> None:
        tool_index = call.get("index")
        if not isinstance(tool_index, int) or isinstance(tool_index, bool):
            tool_index = position
        fn = call.get("function") if isinstance(call.get("function"), dict) else {}
        block_index = self._tool_blocks.get(tool_index)
        if block_index is None:
            call_id = call.get("id")
            block = {
                "type": "tool_use",
                "id": call_id if isinstance(call_id, str) and call_id else f"toolu_{strip_prefix(self.id, 'msg_')}_{tool_index}",
                "name": fn.get("name") or "",
                "input": {},
            }
            block_index = self._open_block("tool", block, tool_index, out)
            self._tool_blocks[tool_index] = block_index
        elif self._open is None or self._open[1] != block_index:
            self._fail({"type": "api_error", "message": "The upstream interleaved tool-call fragments; cannot translate."}, out)
            return
        fragment = fn.get("arguments")
        if isinstance(fragment, str) and fragment:
            out.append(
                sse_event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": block_index,
                        "delta": {"type": "input_json_delta", "partial_json": fragment},
                    },
                )
            )

    def _finish(self, out: list[bytes]) -> None:
        self._close_block(out)
        usage = openai_usage_to_anthropic(self._usage)
        delta_usage: dict[str, Any] = {
            "input_tokens": usage["input_tokens"],
            "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
            "cache_read_input_tokens": usage["cache_read_input_tokens"],
            "output_tokens": usage["output_tokens"],
        }
        if "output_tokens_details" in usage:
            delta_usage["output_tokens_details"] = usage["output_tokens_details"]
        if self.stop_reason is None:
            self.stop_reason = "refusal" if self._refusal else "end_turn"
        out.append(
            sse_event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                    "usage": delta_usage,
                },
            )
        )
        out.append(sse_event("message_stop", {"type": "message_stop"}))
        self._done = True

    def _fail(self, error: dict[str, Any], out: list[bytes]) -> None:
        self.error = error
        out.append(sse_event("error", {"type": "error", "error": error}))
        self._done = True
