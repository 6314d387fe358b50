"""Translation failures and error-body translation between the OpenAI and Anthropic dialects.

- :class:`TranslationError` — a request parameter that cannot be expressed in the target API. The
  proxy answers it with HTTP 400 in the caller's dialect (:meth:`TranslationError.openai_body` /
  :meth:`TranslationError.anthropic_body`).
- :func:`openai_error_to_anthropic` / :func:`anthropic_error_to_openai` — an upstream error answer
  rewritten for a client of the other dialect. The HTTP status is kept as is (both SDKs classify
  errors by status: 400/401/403/404/409/413/422/429 and >= 500 alike).
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "MissingParameterError",
    "TranslationError",
    "anthropic_error_to_openai",
    "anthropic_error_type_for_status",
    "openai_error_to_anthropic",
]


class TranslationError(ValueError):
    """A parameter (or value) of the request has no equivalent in the target API.

    ``param`` is the dotted path of the offending field in the *client's* request
    (e.g. ``"logit_bias"``, ``"messages[2].content[0]"``); ``message`` explains why. The proxy turns
    it into a 400 in the caller's dialect; it is never raised for a same-provider call.
    """

    status = 400
    code = "unsupported_parameter"

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        self.message = message
        super().__init__(f"{param}: {message}")

    def __str__(self) -> str:
        return self.description

    @property
    def description(self) -> str:
        """Human-readable text naming the parameter, used as the error message in both dialects."""
        return f"Unsupported parameter '{self.param}' for this model (request translated between API formats): {self.message}"

    def openai_body(self) -> dict[str, Any]:
        """``{"error": {...}}`` as OpenAI answers an invalid parameter."""
        return {
            "error": {
                "message": self.description,
                "type": "invalid_request_error",
                "param": self.param,
                "code": self.code,
            }
        }

    def anthropic_body(self) -> dict[str, Any]:
        """``{"type": "error", "error": {...}}`` as Anthropic answers an invalid request."""
        return {"type": "error", "error": {"type": "invalid_request_error", "message": self.description}}


class MissingParameterError(TranslationError):
    """A parameter the caller's own API requires is missing (e.g. Anthropic's ``max_tokens``): the
    400 the caller's provider would give, worded as it words it (``max_tokens: Field required``)."""

    code = "missing_required_parameter"

    def __init__(self, param: str) -> None:
        super().__init__(param, "Field required")

    @property
    def description(self) -> str:
        return f"{self.param}: {self.message}"


# --- error bodies -----------------------------------------------------------------------------------

_ANTHROPIC_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "invalid_request_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# Anthropic error type → (OpenAI type, OpenAI code)
_OPENAI_BY_ANTHROPIC_TYPE: dict[str, tuple[str, str | None]] = {
    "invalid_request_error": ("invalid_request_error", None),
    "authentication_error": ("invalid_request_error", "invalid_api_key"),
    "billing_error": ("insufficient_quota", "insufficient_quota"),
    "permission_error": ("permission_error", "permission_denied"),
    "not_found_error": ("invalid_request_error", "not_found"),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "rate_limit_error": ("requests", "rate_limit_exceeded"),
    "api_error": ("server_error", None),
    "overloaded_error": ("server_error", "overloaded"),
    "timeout_error": ("server_error", "timeout"),
}


def anthropic_error_type_for_status(status: int) -> str:
    """The Anthropic error ``type`` Anthropic uses for an HTTP status."""
    if status in _ANTHROPIC_BY_STATUS:
        return _ANTHROPIC_BY_STATUS[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def _as_dict(body: Any) -> dict[str, Any] | None:
    if isinstance(body, (bytes, bytearray, memoryview, str)):
        try:
            body = msgspec.json.decode(bytes(body) if not isinstance(body, str) else body.encode())
        except msgspec.DecodeError:
            return None
    return body if isinstance(body, dict) else None


def _raw_text(body: Any) -> str:
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body).decode("utf-8", "replace").strip()[:500]
    if isinstance(body, str):
        return body.strip()[:500]
    return ""


def openai_error_to_anthropic(status: int, body: dict[str, Any] | bytes | str | None) -> dict[str, Any]:
    """An OpenAI error answer (``{"error": {"message", "type", "param", "code"}}``, or any body)
    → Anthropic's ``{"type": "error", "error": {"type", "message"}}``.

    The Anthropic type comes from the HTTP status (400 ``invalid_request_error``, 401
    ``authentication_error``, 403 ``permission_error``, 404 ``not_found_error``, 413
    ``request_too_large``, 429 ``rate_limit_error``, 500/502 ``api_error``, 503/529
    ``overloaded_error``, 504 ``timeout_error``); OpenAI's ``insufficient_quota`` becomes
    ``billing_error``. The message is kept; a ``param`` is appended to it when present.
    """
    data = _as_dict(body)
    error = data.get("error") if data is not None else None
    message = ""
    etype = code = param = None
    if isinstance(error, dict):
        message = error.get("message") if isinstance(error.get("message"), str) else ""
        etype, code, param = error.get("type"), error.get("code"), error.get("param")
    elif isinstance(error, str):
        message = error
    elif data is None:
        message = _raw_text(body)
    if not message:
        message = f"Upstream provider error (HTTP {status})."
    if isinstance(param, str) and param and param not in message:
        message = f"{message} (param: {param})"
    if etype == "insufficient_quota" or code == "insufficient_quota":
        atype = "billing_error"
    else:
        atype = anthropic_error_type_for_status(status)
    return {"type": "error", "error": {"type": atype, "message": message}}


def anthropic_error_to_openai(status: int, body: dict[str, Any] | bytes | str | None) -> dict[str, Any]:
    """An Anthropic error answer (``{"type": "error", "error": {"type", "message"}}``, or any body)
    → OpenAI's ``{"error": {"message", "type", "param", "code"}}``.

    Type mapping (Anthropic → OpenAI ``type`` / ``code``): ``invalid_request_error`` →
    ``invalid_request_error``/null; ``authentication_error`` → ``invalid_request_error``/
    ``invalid_api_key``; ``permission_error`` → ``permission_error``/``permission_denied``;
    ``not_found_error`` → ``invalid_request_error``/``not_found``; ``request_too_large`` →
    ``invalid_request_error``/``request_too_large``; ``rate_limit_error`` → ``requests``/
    ``rate_limit_exceeded``; ``billing_error`` → ``insufficient_quota``/``insufficient_quota``;
    ``api_error`` → ``server_error``/null; ``overloaded_error`` → ``server_error``/``overloaded``;
    ``timeout_error`` → ``server_error``/``timeout``. A missing/unknown type is derived from the
    status first.
    """
    data = _as_dict(body)
    error = data.get("error") if data is not None else None
    message = ""
    atype = None
    if isinstance(error, dict):
        message = error.get("message") if isinstance(error.get("message"), str) else ""
        atype = error.get("type")
    elif isinstance(error, str):
        message = error
    elif data is None:
        message = _raw_text(body)
    if not message:
        message = f"Upstream provider error (HTTP {status})."
    if atype not in _OPENAI_BY_ANTHROPIC_TYPE:
        atype = anthropic_error_type_for_status(status)
    otype, code = _OPENAI_BY_ANTHROPIC_TYPE[atype]
    return {"error": {"message": message, "type": otype, "param": None, "code": code}}
