"""Token usage as providers report it, normalised to the usage-event fields (CONTRACT.md).

``prompt_tokens`` counts every input token: for Anthropic ``input_tokens +
cache_read_input_tokens + cache_creation_input_tokens``; OpenAI's ``prompt_tokens`` (chat,
completions, embeddings) and ``input_tokens`` (responses) already include cached tokens.
"""

from __future__ import annotations

import msgspec


class _Details(msgspec.Struct):
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    cache_write_tokens: int | None = None


class RawUsage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    prompt_tokens_details: _Details | None = None
    completion_tokens_details: _Details | None = None
    input_tokens_details: _Details | None = None
    output_tokens_details: _Details | None = None


class _WithUsage(msgspec.Struct):
    usage: RawUsage | None = None


_body_decoder = msgspec.json.Decoder(_WithUsage)


class Tokens:
    __slots__ = ("prompt", "cached", "cache_write", "completion", "reasoning", "total", "seen")

    def __init__(self) -> None:
        self.prompt = self.cached = self.cache_write = self.completion = self.reasoning = self.total = 0
        self.seen = False

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return (f"Tokens(prompt={self.prompt}, cached={self.cached}, cache_write={self.cache_write}, "
                f"completion={self.completion}, reasoning={self.reasoning}, total={self.total})")


def normalise(usage: RawUsage | None, anthropic: bool) -> Tokens:
    tokens = Tokens()
    if usage is None:
        return tokens
    if anthropic:
        read = usage.cache_read_input_tokens or 0
        write = usage.cache_creation_input_tokens or 0
        tokens.prompt = (usage.input_tokens or 0) + read + write
        tokens.cached = read
        tokens.cache_write = write
        tokens.completion = usage.output_tokens or 0
        tokens.total = tokens.prompt + tokens.completion
        tokens.seen = usage.input_tokens is not None or usage.output_tokens is not None
        return tokens
    if usage.prompt_tokens is not None or usage.completion_tokens is not None:
        tokens.prompt = usage.prompt_tokens or 0
        tokens.completion = usage.completion_tokens or 0
        details = usage.prompt_tokens_details
        if details is not None:
            tokens.cached = details.cached_tokens or 0
            tokens.cache_write = details.cache_write_tokens or 0
        if usage.completion_tokens_details is not None:
            tokens.reasoning = usage.completion_tokens_details.reasoning_tokens or 0
    elif usage.input_tokens is not None or usage.output_tokens is not None:  # responses API
        tokens.prompt = usage.input_tokens or 0
        tokens.completion = usage.output_tokens or 0
        if usage.input_tokens_details is not None:
            tokens.cached = usage.input_tokens_details.cached_tokens or 0
        if usage.output_tokens_details is not None:
            tokens.reasoning = usage.output_tokens_details.reasoning_tokens or 0
    else:
        return tokens
    tokens.total = usage.total_tokens if usage.total_tokens is not None else tokens.prompt + tokens.completion
    tokens.seen = True
    return tokens


def from_body(body: bytes, anthropic: bool) -> Tokens:
    """Usage of a non-streaming JSON answer (zero when it carries none or is not JSON)."""
    if b'"usage"' not in body:
        return Tokens()
    try:
        return normalise(_body_decoder.decode(body).usage, anthropic)
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        return Tokens()
