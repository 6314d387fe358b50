"""Helpers shared by both translation directions: JSON, SSE framing, ids, data URLs, usage.

Everything here is pure (no I/O, no module state beyond immutable constants).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec

from llmgw_proxy.domain.translation.errors import TranslationError

_encoder = msgspec.json.Encoder()
_decode = msgspec.json.decode


def dumps(value: Any) -> str:
    """Compact JSON text (UTF-8, no spaces), as providers send it."""
    return _encoder.encode(value).decode()


def loads(data: bytes | str) -> Any:
    """Parse JSON text or bytes (raises ``msgspec.DecodeError`` on malformed input)."""
    return _decode(data)


# --- SSE framing ------------------------------------------------------------------------------------


class SSEDecoder:
    """Incremental server-sent-events parser that accepts arbitrary chunk boundaries.

    ``feed`` returns the events completed by that chunk as ``(event_name, data)`` pairs; the
    ``data`` lines of one event are joined with ``\\n`` (comments and other fields are ignored).
    ``CRLF`` line endings are accepted. Only the current incomplete event is buffered.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        data = self._buffer + chunk if self._buffer else chunk
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        end = data.rfind(b"\n\n")
        if end < 0:
            self._buffer = data
            return []
        self._buffer = data[end + 2 :]
        return [event for raw in data[:end].split(b"\n\n") if (event := _parse_event(raw)) is not None]

    def flush(self) -> list[tuple[str | None, bytes]]:
        """At end of input: the last event when the stream did not end with a blank line."""
        rest, self._buffer = self._buffer, b""
        event = _parse_event(rest.replace(b"\r\n", b"\n").strip(b"\n"))
        return [event] if event is not None else []


def _parse_event(raw: bytes) -> tuple[str | None, bytes] | None:
    name: str | None = None
    data: bytes | None = None
    for line in raw.split(b"\n"):
        if line[:5] == b"data:":
            value = line[6:] if line[5:6] == b" " else line[5:]
            data = value if data is None else data + b"\n" + value
        elif line[:6] == b"event:":
            name = line[6:].strip().decode("utf-8", "replace")
        # comments (":...") and other fields (id, retry) are ignored
    if data is None:
        return None
    return name, data


def sse_data(payload: Any) -> bytes:
    """One OpenAI-style SSE event: ``data: <json>\\n\\n``."""
    return b"data: " + _encoder.encode(payload) + b"\n\n"


def sse_event(name: str, payload: Any) -> bytes:
    """One Anthropic-style SSE event: ``event: <name>\\ndata: <json>\\n\\n``."""
    return b"event: " + name.encode() + b"\ndata: " + _encoder.encode(payload) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


# --- ids --------------------------------------------------------------------------------------------

_ANTHROPIC_ID_BAD = re.compile(r"[^a-zA-Z0-9_-]")
_OPENAI_TOOL_ID_MAX = 40


def anthropic_tool_id(tool_call_id: str) -> str:
    """A tool-call id usable as an Anthropic ``tool_use.id`` (pattern ``^[a-zA-Z0-9_-]+$``).

    Deterministic, so a ``tool_use`` and the ``tool_result`` answering it map to the same id.
    """
    if not tool_call_id:
        return "toolu_empty"
    return _ANTHROPIC_ID_BAD.sub("_", tool_call_id)


def openai_tool_id(tool_use_id: str) -> str:
    """A tool-use id usable as an OpenAI ``tool_call.id`` (OpenAI accepts at most 40 characters).

    Deterministic (ids that are too long become ``call_`` + a digest of the id).
    """
    if tool_use_id and len(tool_use_id) <= _OPENAI_TOOL_ID_MAX:
        return tool_use_id
    return "call_" + hashlib.sha256(tool_use_id.encode()).hexdigest()[:32]


def strip_prefix(value: str, prefix: str) -> str:
    return value[len(prefix) :] if value.startswith(prefix) else value


# --- data URLs --------------------------------------------------------------------------------------

ANTHROPIC_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def parse_data_url(url: str, param: str) -> tuple[str, str]:
    """``data:<media type>;base64,<data>`` → ``(media_type, base64 data)``; TranslationError otherwise."""
    header, sep, data = url.partition(",")
    if not sep or not header.startswith("data:"):
        raise TranslationError(param, "is not a valid data URL (expected data:<media type>;base64,<data>).")
    meta = header[5:].split(";")
    media_type = meta[0].strip().lower()
    if "base64" not in (m.strip().lower() for m in meta[1:]):
        raise TranslationError(param, "data URLs must be base64-encoded to be translated.")
    if media_type == "image/jpg":
        media_type = "image/jpeg"
    return media_type, data


# --- usage ------------------------------------------------------------------------------------------


def normalized_usage(
    prompt: int = 0, cached: int = 0, cache_write: int = 0, completion: int = 0, reasoning: int = 0
) -> dict[str, int]:
    """Token counts in the usage-event field names of CONTRACT.md."""
    return {
        "prompt_tokens": prompt,
        "cached_tokens": cached,
        "cache_write_tokens": cache_write,
        "completion_tokens": completion,
        "reasoning_tokens": reasoning,
        "total_tokens": prompt + completion,
    }


def as_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def anthropic_usage_to_openai(usage: dict[str, Any] | None) -> dict[str, Any]:
    """Anthropic ``usage`` → OpenAI ``usage`` (prompt tokens include cache reads and writes)."""
    usage = usage or {}
    inp = as_int(usage.get("input_tokens"))
    read = as_int(usage.get("cache_read_input_tokens"))
    write = as_int(usage.get("cache_creation_input_tokens"))
    out = as_int(usage.get("output_tokens"))
    prompt = inp + read + write
    result: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": out,
        "total_tokens": prompt + out,
        "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": write},
    }
    details = usage.get("output_tokens_details")
    if isinstance(details, dict) and as_int(details.get("thinking_tokens")):
        result["completion_tokens_details"] = {"reasoning_tokens": as_int(details.get("thinking_tokens"))}
    return result


def openai_usage_parts(usage: dict[str, Any] | None) -> tuple[int, int, int, int, int]:
    """OpenAI ``usage`` → ``(prompt, cached, cache_write, completion, reasoning)``."""
    usage = usage or {}
    prompt = as_int(usage.get("prompt_tokens"))
    completion = as_int(usage.get("completion_tokens"))
    pdet = usage.get("prompt_tokens_details")
    cached = as_int(pdet.get("cached_tokens")) if isinstance(pdet, dict) else 0
    write = as_int(pdet.get("cache_write_tokens")) if isinstance(pdet, dict) else 0
    cdet = usage.get("completion_tokens_details")
    reasoning = as_int(cdet.get("reasoning_tokens")) if isinstance(cdet, dict) else 0
    return prompt, cached, write, completion, reasoning


def openai_usage_to_anthropic(usage: dict[str, Any] | None) -> dict[str, Any]:
    """OpenAI ``usage`` → Anthropic ``usage`` (``input_tokens`` excludes cache reads and writes)."""
    prompt, cached, write, completion, reasoning = openai_usage_parts(usage)
    result: dict[str, Any] = {
        "input_tokens": max(prompt - cached - write, 0),
        "output_tokens": completion,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": cached,
    }
    if reasoning:
        result["output_tokens_details"] = {"thinking_tokens": reasoning}
    return result


# --- stop reasons -----------------------------------------------------------------------------------

_STOP_TO_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_FINISH_TO_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def anthropic_stop_reason_to_openai(stop_reason: str | None) -> str:
    """Anthropic ``stop_reason`` → OpenAI ``finish_reason`` (unknown values → ``stop``)."""
    return _STOP_TO_FINISH.get(stop_reason or "", "stop")


def openai_finish_reason_to_anthropic(finish_reason: str | None) -> str:
    """OpenAI ``finish_reason`` → Anthropic ``stop_reason`` (unknown values → ``end_turn``)."""
    return _FINISH_TO_STOP.get(finish_reason or "", "end_turn")
