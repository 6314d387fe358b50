"""Errors in the admin API's shape: ``{"error": {"type": ..., "message": ...}}``.

Litestar's own validation errors become 422 (a body that is not JSON at all stays 400); nothing
internal (stack traces, SQL, secrets) ever reaches a response body.
"""

from __future__ import annotations

import logging

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from llmgw_common.bodies import UNDECODABLE_BODY_ERRORS, undecodable_body_message
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    status_code = 400
    error_type = "invalid_request_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthorized(ApiError):
    status_code = 401
    error_type = "authentication_error"


class Forbidden(ApiError):
    status_code = 403
    error_type = "permission_error"


class NotFound(ApiError):
    status_code = 404
    error_type = "not_found_error"


class Conflict(ApiError):
    status_code = 409
    error_type = "conflict_error"


class Invalid(ApiError):
    status_code = 422
    error_type = "invalid_request_error"


class Unavailable(ApiError):
    status_code = 503
    error_type = "service_unavailable"


def error_response(status_code: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        content={"error": {"type": error_type, "message": message}},
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def _api_error_handler(_: Request, exc: ApiError) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="llmgw"'} if exc.status_code == 401 else None
    return error_response(exc.status_code, exc.error_type, exc.message, headers)


def _validation_message(exc: ValidationException) -> str:
    parts = []
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "invalid value"))
        key = item.get("key")
        source = item.get("source")
        source = getattr(source, "value", source)
        where = f"{source} " if source and source != "body" else ""
        parts.append(f"{where}{key}: {message}" if key else f"{where}{message}".strip())
    if parts:
        return "; ".join(parts)
    return str(exc.detail or "validation failed")


def _http_exception_handler(_: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    if isinstance(exc, ValidationException):
        message = _validation_message(exc)
        # A body that is not JSON at all is a malformed request (400); everything that is JSON
        # but does not fit the schema (types, ranges, unknown fields) is 422.
        lowered = message.lower()
        if "malformed" in lowered or "json is malformed" in lowered or "invalid json" in lowered:
            return error_response(400, "invalid_request_error", "request body is not valid JSON")
        return error_response(422, "invalid_request_error", message)
    if status >= 500:
        log.error("internal error: %s", exc.detail)
        return error_response(status, "api_error", "internal server error")
    return error_response(status, ERROR_TYPES.get(status, "invalid_request_error"), str(exc.detail))


def _sqlstate(exc: DBAPIError) -> str:
    orig = exc.orig
    return str(getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None) or "")


def _dbapi_error_handler(request: Request, exc: DBAPIError) -> Response:
    code = _sqlstate(exc)
    if code.startswith("22"):
        # SQLSTATE class 22, data exception (out of range, bad encoding): the caller's input.
        log.info("database refused a value (SQLSTATE %s)", code)
        return error_response(422, "invalid_request_error", "a value was out of range or not representable")
    if code.startswith("23"):
        log.info("integrity conflict (SQLSTATE %s)", code)
        return error_response(409, "conflict_error", "conflicting change; retry")
    log.error("database error (SQLSTATE %s) on %s %s", code or "?", request.method, request.url.path)
    return error_response(503 if code.startswith("08") else 500, "api_error", "database error")


def _undecodable_body_handler(_: Request, exc: Exception) -> Response:
    return error_response(400, "invalid_request_error", undecodable_body_message(exc))


def _internal_error_handler(_: Request, exc: Exception) -> Response:
    log.exception("unhandled error: %s", type(exc).__name__)
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, "api_error", "internal server error")


exception_handlers = {
    ApiError: _api_error_handler,
    HTTPException: _http_exception_handler,
    DBAPIError: _dbapi_error_handler,
    **{error: _undecodable_body_handler for error in UNDECODABLE_BODY_ERRORS},
    HTTP_500_INTERNAL_SERVER_ERROR: _internal_error_handler,
}
