"""One object per translation direction, for the proxy's ``(caller dialect, provider kind)`` table.

Each :class:`Translation` bundles what a translation path needs: the upstream endpoint, the request,
response, stream and error translators. Instances are immutable and shared; a stream translator is
created per response with :meth:`Translation.new_stream`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from llmgw_proxy.domain.translation.anthropic_caller import (
    OpenAIToAnthropicStream,
    anthropic_request_to_openai_chat,
    openai_chat_response_to_anthropic,
)
from llmgw_proxy.domain.translation.errors import (
    TranslationError,
    anthropic_error_to_openai,
    openai_error_to_anthropic,
)
from llmgw_proxy.domain.translation.openai_caller import (
    AnthropicToOpenAIStream,
    anthropic_response_to_openai_chat,
    openai_chat_request_to_anthropic,
)

__all__ = [
    "ANTHROPIC_CALLER_TO_OPENAI",
    "ANTHROPIC_VERSION",
    "OPENAI_CALLER_TO_ANTHROPIC",
    "StreamTranslator",
    "Translation",
]

#: ``anthropic-version`` sent with translated requests (the Messages API version this module targets).
ANTHROPIC_VERSION = "2023-06-01"


class StreamTranslator(Protocol):
    """What both stream translators offer."""

    @property
    def done(self) -> bool: ...

    @property
    def usage(self) -> dict[str, int]: ...

    @property
    def usage_seen(self) -> bool: ...

    def feed(self, chunk: bytes) -> bytes: ...

    def close(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Translation:
    """A translation path: ``caller`` dialect in, ``upstream`` dialect to the provider.

    - ``upstream_path``: where the translated request goes, as a full ``/v1/...`` path (the proxy's
      ``upstream_url`` drops the ``/v1`` an OpenAI base URL ends with).
    - ``upstream_headers``: headers the translated request needs (``anthropic-version`` towards
      Anthropic, since an OpenAI client does not send it). Towards OpenAI, drop the caller's
      ``anthropic-version`` / ``anthropic-beta``.
    - ``request(body, upstream_model) -> dict`` raises :class:`TranslationError` (answer 400 with
      :meth:`error_body`).
    - ``response(body, requested_model) -> dict``.
    - ``new_stream(requested_model, include_usage) -> StreamTranslator`` (``include_usage`` = the
      client's ``stream_options.include_usage``; ignored for Anthropic callers, whose streams always
      carry usage).
    - ``upstream_error(status, body) -> dict``: an upstream error body in the caller's dialect.
    """

    caller: Literal["openai", "anthropic"]
    upstream: Literal["openai", "anthropic"]
    upstream_path: str
    upstream_headers: tuple[tuple[str, str], ...]
    request: Callable[[dict[str, Any], str], dict[str, Any]]
    response: Callable[[dict[str, Any], str], dict[str, Any]]
    new_stream: Callable[[str, bool], StreamTranslator]
    upstream_error: Callable[[int, Any], dict[str, Any]]

    def error_body(self, error: TranslationError) -> dict[str, Any]:
        """The 400 body for a :class:`TranslationError`, in the caller's dialect."""
        return error.openai_body() if self.caller == "openai" else error.anthropic_body()


def _anthropic_stream(requested_model: str, include_usage: bool = True) -> OpenAIToAnthropicStream:
    return OpenAIToAnthropicStream(requested_model)


def _openai_stream(requested_model: str, include_usage: bool = False) -> AnthropicToOpenAIStream:
    return AnthropicToOpenAIStream(requested_model, include_usage)


#: ``POST /v1/chat/completions`` (OpenAI SDK) served by an Anthropic deployment.
OPENAI_CALLER_TO_ANTHROPIC = Translation(
    caller="openai",
    upstream="anthropic",
    upstream_path="/v1/messages",
    upstream_headers=(("anthropic-version", ANTHROPIC_VERSION),),
    request=openai_chat_request_to_anthropic,
    response=anthropic_response_to_openai_chat,
    new_stream=_openai_stream,
    upstream_error=anthropic_error_to_openai,
)

#: ``POST /v1/messages`` (Anthropic SDK) served by an OpenAI (or OpenAI-compatible) deployment.
ANTHROPIC_CALLER_TO_OPENAI = Translation(
    caller="anthropic",
    upstream="openai",
    upstream_path="/v1/chat/completions",
    upstream_headers=(),
    request=anthropic_request_to_openai_chat,
    response=openai_chat_response_to_anthropic,
    new_stream=_anthropic_stream,
    upstream_error=openai_error_to_anthropic,
)
