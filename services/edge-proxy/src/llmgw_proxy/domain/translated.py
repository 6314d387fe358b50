"""The proxy's side of a translation path (a deployment whose provider speaks the other API format;
see docs/translation.md): the upstream request (body, headers, path), the answer, errors and
streams in the caller's dialect, and the usage read from the *upstream's* answer.

Only used when ``Candidate.translator`` is set; same-provider calls never come here and keep
their original bytes.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from llmgw_proxy.domain import errors
from llmgw_proxy.domain.translation import Translation, TranslationError
from llmgw_proxy.domain.upstream.client import upstream_headers
from llmgw_proxy.domain.usage.tokens import Tokens

log = logging.getLogger(__name__)

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode

#: never sent to an OpenAI upstream (the translated request does not speak that version)
_NOT_TO_OPENAI = frozenset({b"anthropic-version", b"anthropic-beta"})
#: replaced by the translation's own ``anthropic-version``
_NOT_TO_ANTHROPIC = frozenset({b"anthropic-version"})


def parse_body(body: bytes) -> dict[str, Any]:
    """The caller's JSON body as a dict (validated as a JSON object already)."""
    try:
        obj = _decode(body)
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        raise errors.bad_request("The JSON body of your request could not be parsed.", "invalid_json") from None
    if not isinstance(obj, dict):
        raise errors.bad_request("The request body must be a JSON object.", "invalid_json")
    return obj


def request_body(translation: Translation, parsed: dict[str, Any], upstream_model: str) -> bytes:
    """The translated request; :class:`errors.TranslationRefused` (400) for an unmappable parameter."""
    try:
        return _encode(translation.request(parsed, upstream_model))
    except TranslationError as exc:
        raise errors.TranslationRefused(exc) from None
    except Exception as exc:  # noqa: BLE001 - a field of a type the translator did not expect
        log.warning("request could not be translated (%s: %s)", type(exc).__name__, exc)
        raise errors.bad_request(
            "The request could not be translated between the OpenAI and Anthropic API formats: "
            "a field has a type or shape neither API accepts.",
            "untranslatable_request",
        ) from None


def request_headers(client_headers, provider, request_id: str, traceparent: str | None, translation: Translation) -> list[bytes]:
    """The usual upstream headers, minus the caller's dialect-specific ones, plus the translation's."""
    if translation.upstream == "openai":
        kept = [(n, v) for n, v in client_headers if n not in _NOT_TO_OPENAI]
    else:
        kept = [(n, v) for n, v in client_headers if n not in _NOT_TO_ANTHROPIC]
    kept.extend((name.encode(), value.encode()) for name, value in translation.upstream_headers)
    return upstream_headers(kept, provider, request_id, traceparent)


def response_body(translation: Translation, status: int, body: bytes, requested_model: str) -> bytes:
    """A buffered upstream answer in the caller's dialect (errors keep their status)."""
    if status >= 400:
        try:
            return _encode(translation.upstream_error(status, body))
        except Exception:  # noqa: BLE001 - never lose the provider's error status over its body's shape
            log.warning("upstream error body could not be translated", exc_info=True)
            message = f"The upstream provider answered HTTP {status}."
            if translation.caller == "anthropic":
                return _encode({"type": "error", "error": {"type": "api_error", "message": message}})
            return _encode({"error": {"message": message, "type": "api_error", "param": None, "code": None}})
    try:
        obj = _decode(body)
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        raise errors.upstream_invalid_response("it is not JSON") from None
    if not isinstance(obj, dict):
        raise errors.upstream_invalid_response("it is not a JSON object")
    try:
        return _encode(translation.response(obj, requested_model))
    except Exception as exc:  # noqa: BLE001 - a provider answer of an unexpected shape
        raise errors.upstream_invalid_response(type(exc).__name__) from None


class TranslatedSSE:
    """A translated SSE relay with :class:`llmgw_proxy.domain.streaming.SSEUsage`'s interface
    (``feed``/``finish``/``tokens``/``error_seen``), usage read by the stream translator. An upstream
    event the translator cannot handle ends the caller's stream with an error event in its dialect
    (never a broken connection)."""

    __slots__ = ("stream", "caller", "failed")

    #: never strips (the translator writes the caller's stream itself)
    strip = False
    translated = True

    def __init__(self, stream, caller: str) -> None:
        self.stream = stream
        self.caller = caller
        self.failed = False

    def feed(self, chunk: bytes) -> bytes:
        if self.failed:
            return b""
        try:
            return self.stream.feed(chunk)
        except Exception:  # noqa: BLE001 - an upstream event of an unexpected shape
            return self._fail()

    def finish(self) -> bytes:
        """End of the upstream body: completes the stream, or ends it with an error event in the
        caller's dialect when it was cut before the end."""
        if self.failed:
            return b""
        try:
            return self.stream.close()
        except Exception:  # noqa: BLE001
            return self._fail()

    def cut(self, timeout: bool) -> bytes:
        """The upstream broke off (reset, or silent past the read timeout): like :meth:`finish`,
        except that a stream timed out before its end says so (OpenAI ``upstream_timeout``,
        Anthropic ``timeout_error``) instead of the translator's generic "ended early" error."""
        if not timeout or self.failed or self.over:
            return self.finish()
        if self.stream.done:
            return b""
        self.failed = True
        return errors.stream_cut(timeout=True).stream_event(self.caller)

    def _fail(self) -> bytes:
        log.warning("upstream stream could not be translated", exc_info=True)
        self.failed = True
        return errors.stream_untranslatable().stream_event(self.caller)

    @property
    def over(self) -> bool:
        """The upstream finished generating (OpenAI ``finish_reason`` / Anthropic ``stop_reason``
        seen); only its usage report and the stream's end may follow."""
        stream = self.stream
        return getattr(stream, "finish_reason", None) is not None or getattr(stream, "stop_reason", None) is not None

    @property
    def error_seen(self) -> bool:
        return self.failed or self.stream.error is not None

    @property
    def tokens(self) -> Tokens:
        tokens = Tokens()
        try:
            if not self.stream.usage_seen:
                return tokens
            usage = self.stream.usage
        except Exception:  # noqa: BLE001
            return tokens
        tokens.prompt = usage["prompt_tokens"]
        tokens.cached = usage["cached_tokens"]
        tokens.cache_write = usage["cache_write_tokens"]
        tokens.completion = usage["completion_tokens"]
        tokens.reasoning = usage["reasoning_tokens"]
        tokens.total = usage["total_tokens"]
        tokens.seen = True
        return tokens
