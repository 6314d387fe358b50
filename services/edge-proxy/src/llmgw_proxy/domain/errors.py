"""Errors in the caller's dialect.

OpenAI:    ``{"error": {"message", "type", "code", "param": null}}``
Anthropic: ``{"type": "error", "error": {"type", "message"}}``

The table of every error the proxy itself produces is in docs/edge-proxy.md.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Dialect = Literal["openai", "anthropic"]

_encode = msgspec.json.Encoder().encode


class ProxyError(Exception):
    """An answer the proxy gives by itself (the request was not, or not successfully, forwarded)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        openai_type: str,
        code: str | None,
        anthropic_type: str,
        headers: list[tuple[bytes, bytes]] | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.openai_type = openai_type
        self.code = code
        self.anthropic_type = anthropic_type
        self.headers = headers or []
        #: short label for metrics / usage events (e.g. "rate_limit_requests")
        self.reason = reason or code or openai_type

    def body(self, dialect: Dialect) -> bytes:
        if dialect == "anthropic":
            return _encode({"type": "error", "error": {"type": self.anthropic_type, "message": self.message}})
        return _encode({"error": {"message": self.message, "type": self.openai_type, "param": None, "code": self.code}})

    def stream_event(self, dialect: Dialect) -> bytes:
        """The error as the last SSE event of a stream that already started (the status is sent)."""
        if dialect == "anthropic":
            return b"event: error\ndata: " + self.body(dialect) + b"\n\n"
        return b"data: " + self.body(dialect) + b"\n\n"


def stream_cut(timeout: bool) -> ProxyError:
    """The upstream broke off a stream the client was already reading (reset, or silent too long)."""
    if timeout:
        return ProxyError(
            504, "The upstream provider did not send the rest of the stream in time.",
            openai_type="api_error", code="upstream_timeout", anthropic_type="timeout_error",
        )
    return ProxyError(
        502, "The upstream provider closed the stream before it was complete.",
        openai_type="api_error", code="upstream_disconnect", anthropic_type="api_error",
    )


def stream_untranslatable() -> ProxyError:
    return ProxyError(
        502, "The upstream provider's stream could not be translated.",
        openai_type="api_error", code="upstream_invalid_response", anthropic_type="api_error",
    )


def missing_key() -> ProxyError:
    return ProxyError(
        401,
        "Missing API key: send your llmgw virtual key as 'Authorization: Bearer <key>' or 'x-api-key: <key>'.",
        openai_type="invalid_request_error",
        code="invalid_api_key",
        anthropic_type="authentication_error",
        reason="missing_key",
    )


def invalid_key(why: str = "Invalid API key.") -> ProxyError:
    return ProxyError(
        401, why, openai_type="invalid_request_error", code="invalid_api_key", anthropic_type="authentication_error",
        reason="invalid_key",
    )


def key_service_unavailable() -> ProxyError:
    return ProxyError(
        503,
        "The key service is not answering and this key is not cached; try again shortly.",
        openai_type="api_error",
        code="key_service_unavailable",
        anthropic_type="api_error",
        headers=[(b"retry-after", b"1")],
    )


def model_not_allowed(model: str) -> ProxyError:
    return ProxyError(
        403,
        f"This key is not allowed to use model '{model}'.",
        openai_type="permission_error",
        code="model_not_allowed",
        anthropic_type="permission_error",
    )


def model_not_found(model: str, detail: str = "") -> ProxyError:
    return ProxyError(
        404,
        f"The model '{model}' does not exist or is not routed by this gateway{detail}.",
        openai_type="invalid_request_error",
        code="model_not_found",
        anthropic_type="not_found_error",
    )


def not_found(message: str) -> ProxyError:
    return ProxyError(404, message, openai_type="invalid_request_error", code="not_found", anthropic_type="not_found_error")


def bad_request(message: str, code: str | None = "invalid_request") -> ProxyError:
    return ProxyError(
        400, message, openai_type="invalid_request_error", code=code, anthropic_type="invalid_request_error",
        reason=code or "bad_request",
    )


def translation_not_enabled(model: str, caller: str, provider_kind: str) -> ProxyError:
    return ProxyError(
        400,
        f"Model '{model}' is served by an {provider_kind} provider; translating {caller}-format requests "
        f"to it (cross-provider translation) is not enabled on this gateway.",
        openai_type="invalid_request_error",
        code="translation_not_enabled",
        anthropic_type="invalid_request_error",
    )


def translation_not_supported(model: str, caller: str, provider_kind: str, path: str, translated: str) -> ProxyError:
    return ProxyError(
        400,
        f"Model '{model}' is served by an {provider_kind} provider, and {caller}-format {path} requests cannot be "
        f"translated to it: only {translated} is translated between the OpenAI and Anthropic API formats.",
        openai_type="invalid_request_error",
        code="translation_not_supported",
        anthropic_type="invalid_request_error",
    )


class TranslationRefused(ProxyError):
    """A request parameter the translation path cannot map (400, before any upstream call); the body
    is the translation library's own (it names the parameter: ``param``, ``unsupported_parameter``)."""

    def __init__(self, exc) -> None:  # exc: translation.TranslationError
        super().__init__(
            exc.status, str(exc), openai_type="invalid_request_error", code=exc.code,
            anthropic_type="invalid_request_error", reason="translation_error",
        )
        self._bodies = {"openai": _encode(exc.openai_body()), "anthropic": _encode(exc.anthropic_body())}

    def body(self, dialect: Dialect) -> bytes:
        return self._bodies[dialect]


def upstream_invalid_response(detail: str) -> ProxyError:
    return ProxyError(
        502, f"The upstream provider's answer could not be translated: {detail}", openai_type="api_error",
        code="upstream_invalid_response", anthropic_type="api_error", reason="upstream_invalid_response",
    )


def body_too_large(limit: int) -> ProxyError:
    return ProxyError(
        413,
        f"Request body too large: the limit is {limit} bytes.",
        openai_type="invalid_request_error",
        code="request_too_large",
        anthropic_type="request_too_large",
    )


def rate_limited(kind: str, message: str, headers: list[tuple[bytes, bytes]]) -> ProxyError:
    """``kind``: requests | tokens | parallel."""
    return ProxyError(
        429,
        message,
        openai_type="tokens" if kind == "tokens" else "requests",
        code="rate_limit_exceeded",
        anthropic_type="rate_limit_error",
        headers=headers,
        reason=f"rate_limit_{kind}",
    )


def too_many_failed_attempts(retry_after: int) -> ProxyError:
    return ProxyError(
        429,
        "Too many requests with an invalid API key from this address; try again later.",
        openai_type="requests",
        code="too_many_failed_auth_attempts",
        anthropic_type="rate_limit_error",
        headers=[(b"retry-after", str(retry_after).encode())],
        reason="auth_brute_force",
    )


def budget_exceeded(message: str, headers: list[tuple[bytes, bytes]]) -> ProxyError:
    return ProxyError(
        429,
        message,
        openai_type="insufficient_quota",
        code="insufficient_quota",
        anthropic_type="insufficient_quota",
        headers=headers,
        reason="budget",
    )


def upstream_unreachable(detail: str) -> ProxyError:
    return ProxyError(
        502, f"Upstream provider unreachable: {detail}", openai_type="api_error", code="upstream_error",
        anthropic_type="api_error", reason="upstream_unreachable",
    )


def upstream_credentials_rejected(provider: str) -> ProxyError:
    """The provider refused the *gateway's* key. Never relayed as the provider's 401: the client would
    think its own virtual key is wrong, and the provider's message quotes the end of the real key."""
    return ProxyError(
        502,
        f"The upstream provider '{provider}' rejected the gateway's credentials; an administrator must update "
        "that provider's API key.",
        openai_type="api_error", code="upstream_auth_error", anthropic_type="api_error",
        reason="upstream_auth_error",
    )


def upstream_timeout(detail: str) -> ProxyError:
    return ProxyError(
        504, f"Upstream provider timed out: {detail}", openai_type="api_error", code="upstream_timeout",
        anthropic_type="timeout_error", reason="upstream_timeout",
    )


def internal_error() -> ProxyError:
    return ProxyError(500, "Internal gateway error.", openai_type="api_error", code="internal_error", anthropic_type="api_error")
