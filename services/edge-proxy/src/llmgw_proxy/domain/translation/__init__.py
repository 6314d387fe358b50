"""Translation between the OpenAI Chat Completions and the Anthropic Messages formats.

Used by the proxy only on a *translation path*: a route sends an OpenAI-dialect request
(``/v1/chat/completions``) to an Anthropic deployment, or an Anthropic-dialect request
(``/v1/messages``) to an OpenAI deployment. Same-provider calls never go through here.

Everything is pure: plain ``dict`` in / ``dict`` out for JSON bodies, ``bytes`` in / ``bytes`` out
for SSE streams; no I/O, no shared state (a stream translator is one object per response).
The full field table and every known gap: ``docs/translation.md``.

OpenAI caller → Anthropic model (:mod:`.openai_caller`)
    ``openai_chat_request_to_anthropic(body, upstream_model, *, default_max_tokens=4096) -> dict``
        Chat Completions request → Messages request. Raises :class:`TranslationError`.
    ``anthropic_response_to_openai_chat(body, requested_model, *, created=None) -> dict``
        Messages response → ``chat.completion``.
    ``AnthropicToOpenAIStream(requested_model, include_usage=False, *, created=None)``
        ``.feed(chunk: bytes) -> bytes``, ``.close() -> bytes``, ``.usage -> dict``,
        ``.usage_seen``, ``.done``, ``.error``, ``.finish_reason``, ``.id``.

Anthropic caller → OpenAI model (:mod:`.anthropic_caller`)
    ``anthropic_request_to_openai_chat(body, upstream_model, *, max_tokens_field="max_completion_tokens") -> dict``
        Messages request → Chat Completions request (streams get
        ``stream_options.include_usage``). Raises :class:`TranslationError`.
    ``openai_chat_response_to_anthropic(body, requested_model) -> dict``
        ``chat.completion`` → Messages response.
    ``OpenAIToAnthropicStream(requested_model)``
        ``.feed(chunk: bytes) -> bytes``, ``.close() -> bytes``, ``.usage -> dict``,
        ``.usage_seen``, ``.done``, ``.error``, ``.stop_reason``, ``.id``.

Errors (:mod:`.errors`)
    ``TranslationError(param, message)`` — ``.status`` (400), ``.code``
        (``unsupported_parameter``), ``.openai_body()``, ``.anthropic_body()``.
    ``openai_error_to_anthropic(status, body) -> dict`` /
    ``anthropic_error_to_openai(status, body) -> dict`` — upstream error bodies (dict, bytes, str
        or None) in the caller's dialect; the HTTP status is kept.

Per-direction bundles (:mod:`.translators`), for the proxy's ``(caller dialect, provider kind)`` table
    ``OPENAI_CALLER_TO_ANTHROPIC``, ``ANTHROPIC_CALLER_TO_OPENAI``: frozen :class:`Translation`
        objects with ``caller``, ``upstream``, ``upstream_path`` (``/v1/messages`` /
        ``/v1/chat/completions``), ``upstream_headers``, ``request``, ``response``,
        ``new_stream(requested_model, include_usage)``, ``upstream_error`` and ``error_body(exc)``.

Helpers
    ``anthropic_stop_reason_to_openai(stop_reason) -> str``,
    ``openai_finish_reason_to_anthropic(finish_reason) -> str``.

A stream translator's ``usage`` uses the usage-event field names of CONTRACT.md
(``prompt_tokens`` = all input tokens incl. cache reads/writes, ``cached_tokens``,
``cache_write_tokens``, ``completion_tokens``, ``reasoning_tokens``, ``total_tokens``).
"""

from __future__ import annotations

from llmgw_proxy.domain.translation._common import (
    anthropic_stop_reason_to_openai,
    openai_finish_reason_to_anthropic,
)
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
    DEFAULT_MAX_TOKENS,
    AnthropicToOpenAIStream,
    anthropic_response_to_openai_chat,
    openai_chat_request_to_anthropic,
)
from llmgw_proxy.domain.translation.translators import (
    ANTHROPIC_CALLER_TO_OPENAI,
    ANTHROPIC_VERSION,
    OPENAI_CALLER_TO_ANTHROPIC,
    StreamTranslator,
    Translation,
)

__all__ = [
    "ANTHROPIC_CALLER_TO_OPENAI",
    "ANTHROPIC_VERSION",
    "DEFAULT_MAX_TOKENS",
    "OPENAI_CALLER_TO_ANTHROPIC",
    "StreamTranslator",
    "Translation",
    "AnthropicToOpenAIStream",
    "OpenAIToAnthropicStream",
    "TranslationError",
    "anthropic_error_to_openai",
    "anthropic_request_to_openai_chat",
    "anthropic_response_to_openai_chat",
    "anthropic_stop_reason_to_openai",
    "openai_chat_request_to_anthropic",
    "openai_chat_response_to_anthropic",
    "openai_error_to_anthropic",
    "openai_finish_reason_to_anthropic",
]
