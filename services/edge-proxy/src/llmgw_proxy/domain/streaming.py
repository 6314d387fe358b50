"""Server-sent-event relays that read usage on the side, chunk by chunk (nothing is buffered
beyond one incomplete event).

- OpenAI chat/completions streams: the final chunk (``choices: []``, ``usage: {...}``) carries the
  usage. When the proxy injected ``stream_options.include_usage`` the client did not ask for, that
  chunk and the ``"usage":null`` the provider then adds to every other chunk are removed, so the
  client sees exactly what the provider would have sent it; output is then aligned on event
  boundaries. Otherwise chunks are passed through byte for byte.
- OpenAI responses streams: ``response.completed`` / ``response.incomplete`` / ``response.failed``
  carry ``response.usage``.
- Anthropic streams: ``message_start.message.usage`` (input side) and ``message_delta.usage``
  (cumulative output, sometimes input fields too).

``over`` turns True once the upstream said the generation is finished but its usage report may
still follow (OpenAI: a choice's non-null ``finish_reason``, then the usage chunk and ``[DONE]``;
responses: an output's ``*.done`` event, then ``response.completed``). A client that disconnects
after that point leaves the proxy reading on for a moment to capture the usage (see proxy.py).
Anthropic reports the final usage in the same event as the ``stop_reason``: nothing to wait for.
"""

from __future__ import annotations

import msgspec

from llmgw_proxy.domain.usage.tokens import RawUsage, Tokens, normalise


class _OpenAIChunk(msgspec.Struct):
    usage: RawUsage | None = None
    choices: msgspec.Raw = msgspec.Raw(b"")
    error: msgspec.Raw = msgspec.Raw(b"")


class _Resp(msgspec.Struct):
    usage: RawUsage | None = None


class _ResponsesEvent(msgspec.Struct):
    type: str = ""
    response: _Resp | None = None


class _AnthropicMessage(msgspec.Struct):
    usage: RawUsage | None = None


class _AnthropicEvent(msgspec.Struct):
    type: str = ""
    message: _AnthropicMessage | None = None
    usage: RawUsage | None = None


_openai_decoder = msgspec.json.Decoder(_OpenAIChunk)
_responses_decoder = msgspec.json.Decoder(_ResponsesEvent)
_anthropic_decoder = msgspec.json.Decoder(_AnthropicEvent)

_USAGE = b'"usage"'
_NULL_USAGE = b',"usage":null'
_FINISH_REASON = b'"finish_reason"'
#: responses events after which only the closing events (``response.completed`` with usage) remain
_RESPONSES_DONE = (b'"response.output_text.done"', b'"response.refusal.done"', b'"response.function_call_arguments.done"')


def _finish_reason_set(data: bytes) -> bool:
    """A non-null ``finish_reason`` in these events (a raw ``"`` never occurs inside a JSON string,
    so the quoted key cannot be matched inside generated text)."""
    at = data.find(_FINISH_REASON)
    while at >= 0:
        i = at + len(_FINISH_REASON)
        n = len(data)
        while i < n and data[i] in b" \t:":
            i += 1
        if i < n and data[i] == 0x22:  # '"': a reason, not null
            return True
        at = data.find(_FINISH_REASON, i)
    return False


def _data_of(event: bytes) -> bytes | None:
    """The (joined) ``data:`` payload of one SSE event."""
    parts = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            parts.append(line[5:].lstrip(b" "))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else b"\n".join(parts)


class SSEUsage:
    """Feed upstream chunks, get what to send to the client; ``tokens`` holds the usage seen."""

    __slots__ = ("mode", "strip", "buffer", "raw", "_anthropic_usage", "error_seen", "over")

    def __init__(self, mode: str, strip: bool = False) -> None:
        #: "openai" | "responses" | "anthropic"
        self.mode = mode
        self.strip = strip and mode == "openai"
        self.buffer = b""
        self.raw: RawUsage | None = None
        self._anthropic_usage: dict[str, int] = {}
        self.error_seen = False
        #: the generation is finished; only the usage report (and the stream's end) may follow
        self.over = False

    # --- relay ------------------------------------------------------------------------------------
    def feed(self, chunk: bytes) -> bytes:
        data = self.buffer + chunk if self.buffer else chunk
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        end = data.rfind(b"\n\n")
        if end < 0:
            self.buffer = data
            return b"" if self.strip else chunk
        complete = data[: end + 2]
        self.buffer = data[end + 2 :]
        if not self.over:
            if self.mode == "openai":
                self.over = _finish_reason_set(complete)
            elif self.mode == "responses":
                self.over = any(marker in complete for marker in _RESPONSES_DONE)
        if not self.strip:
            if _USAGE in complete or b"error" in complete:
                self._scan(complete)
            return chunk
        if _USAGE not in complete:
            return complete
        return self._scan(complete)

    def finish(self) -> bytes:
        """At the end of the stream: process (and, when stripping, release) what is left."""
        rest, self.buffer = self.buffer, b""
        if not rest.strip():
            return rest if self.strip else b""
        out = self._scan(rest)
        return out if self.strip else b""

    # --- parsing ----------------------------------------------------------------------------------
    def _scan(self, complete: bytes) -> bytes:
        kept: list[bytes] = []
        for event in complete.split(b"\n\n"):
            if not event:
                continue
            drop = False
            if _USAGE in event or b"error" in event:
                payload = _data_of(event)
                if payload and payload != b"[DONE]":
                    drop = self._parse(payload)
            if self.strip and not drop:
                kept.append(event.replace(_NULL_USAGE, b"") if _NULL_USAGE in event else event)
        if not self.strip:
            return b""
        return b"".join(e + b"\n\n" for e in kept)

    def _parse(self, payload: bytes) -> bool:
        """Record usage from one event's data; True when the event must not reach the client."""
        try:
            if self.mode == "openai":
                chunk = _openai_decoder.decode(payload)
                if len(chunk.error) and bytes(chunk.error) != b"null":
                    self.error_seen = True
                if chunk.usage is not None:
                    self.raw = chunk.usage
                    return self.strip and bytes(chunk.choices) in (b"", b"[]")
            elif self.mode == "responses":
                event = _responses_decoder.decode(payload)
                if event.type in ("error", "response.failed"):
                    self.error_seen = True
                if event.response is not None and event.response.usage is not None:
                    self.raw = event.response.usage
            else:
                event = _anthropic_decoder.decode(payload)
                if event.type == "error":
                    self.error_seen = True
                usage = event.message.usage if event.message is not None else event.usage
                if usage is not None:
                    for field in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
                        value = getattr(usage, field)
                        if value is not None:
                            self._anthropic_usage[field] = value
        except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
            pass
        return False

    @property
    def tokens(self) -> Tokens:
        if self.mode == "anthropic":
            if not self._anthropic_usage:
                return Tokens()
            return normalise(RawUsage(**self._anthropic_usage), anthropic=True)
        return normalise(self.raw, anthropic=False)
