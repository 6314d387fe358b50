"""Shared pieces of the mock provider: JSON codec, errors in both dialects, the reply object."""

from __future__ import annotations

from typing import Any

import msgspec

encode = msgspec.json.Encoder().encode
decode = msgspec.json.decode

OPENAI = "openai"
ANTHROPIC = "anthropic"


class ApiError(Exception):
    """An error answered in the caller's dialect."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or []


class Reply:
    """A successful answer: a JSON ``body`` or a list of SSE ``events`` (each already framed)."""

    __slots__ = ("status", "body", "events", "usage")

    def __init__(
        self,
        body: bytes | None = None,
        events: list[bytes] | None = None,
        usage: dict[str, int] | None = None,
        status: int = 200,
    ) -> None:
        self.status = status
        self.body = body
        self.events = events
        self.usage = usage


# --- error bodies ---------------------------------------------------------------------------------

_OPENAI_DEFAULTS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Bad request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "permission_denied", "You are not allowed to perform this request."),
    404: ("invalid_request_error", "not_found", "Not found."),
    408: ("timeout", None, "Request timed out."),
    409: ("invalid_request_error", "conflict", "Conflict."),
    413: ("invalid_request_error", "request_too_large", "Request too large."),
    422: ("invalid_request_error", None, "Unprocessable request."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests per min (RPM): Limit 60, Used 60, Requested 1. "
        "Please try again in 1s.",
    ),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    504: ("server_error", None, "Gateway timeout."),
}

_ANTHROPIC_DEFAULTS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Bad request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "Not found."),
    408: ("timeout_error", "Request timed out."),
    409: ("invalid_request_error", "Conflict."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit. Please try again later."),
    500: ("api_error", "Internal server error"),
    502: ("api_error", "Bad gateway"),
    503: ("api_error", "Service unavailable"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}


def status_error(
    provider: str,
    status: int,
    *,
    message: str | None = None,
    type: str | None = None,
    code: str | None = None,
) -> ApiError:
    """The error a provider answers with for ``status`` (used by ``status`` faults)."""
    if provider == ANTHROPIC:
        default_type, default_message = _ANTHROPIC_DEFAULTS.get(
            status, ("api_error" if status >= 500 else "invalid_request_error", "Error")
        )
        return ApiError(status, message or default_message, type=type or default_type)
    default_type, default_code, default_message = _OPENAI_DEFAULTS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, "Error")
    )
    return ApiError(status, message or default_message, type=type or default_type, code=code or default_code)


def error_body(provider: str, err: ApiError, request_id: str) -> bytes:
    if provider == ANTHROPIC:
        return encode(
            {
                "type": "error",
                "error": {"type": err.type or "invalid_request_error", "message": err.message},
                "request_id": request_id,
            }
        )
    return encode(
        {
            "error": {
                "message": err.message,
                "type": err.type or "invalid_request_error",
                "param": err.param,
                "code": err.code,
            }
        }
    )


def mask_key(key: str) -> str:
    """How OpenAI shows a wrong key: a short start and the last four characters."""
    if len(key) <= 8:
        return "*" * len(key)
    return key[:3] + "*" * min(len(key) - 7, 20) + key[-4:]


def sse(data: Any) -> bytes:
    """An SSE event without an ``event:`` line (OpenAI chat/completions streams)."""
    return b"data: " + encode(data) + b"\n\n"


def sse_event(name: str, data: Any) -> bytes:
    """An SSE event with an ``event:`` line (Anthropic, Responses API)."""
    return b"event: " + name.encode() + b"\ndata: " + encode(data) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"
