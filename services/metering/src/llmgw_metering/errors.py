"""The error shape of every admin/analyst REST answer: ``{"error": {"type": ..., "message": ...}}``."""

from __future__ import annotations

import logging

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from llmgw_common.bodies import UNDECODABLE_BODY_ERRORS, undecodable_body_message
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_ or _TYPES.get(status, "api_error")
        self.headers = headers or {}


def invalid(message: str) -> ApiError:
    return ApiError(422, message, "invalid_request_error")


def error_body(type_: str, message: str) -> dict:
    return {"error": {"type": type_, "message": message}}


def _response(status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(content=error_body(type_, message), status_code=status, headers=headers or None)


def api_error_handler(_: Request, exc: ApiError) -> Response:
    return _response(exc.status, exc.type, exc.message, exc.headers)


def validation_handler(_: Request, exc: ValidationException) -> Response:
    detail = exc.detail or "invalid request"
    extra = exc.extra
    if "JSON" in str(detail) or "decode" in str(detail).lower():
        return _response(400, "invalid_request_error", f"malformed JSON body: {detail}")
    if isinstance(extra, list) and extra:
        parts = []
        for item in extra[:5]:
            if isinstance(item, dict):
                where = item.get("key") or item.get("source") or ""
                parts.append(f"{where}: {item.get('message', '')}".strip(": "))
        if parts:
            detail = "; ".join(parts)
    return _response(422, "invalid_request_error", str(detail))


def http_error_handler(_: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    message = exc.detail or "error"
    if isinstance(exc, NotFoundException) and message == "Not Found":
        message = "no such route"
    return _response(status, _TYPES.get(status, "api_error"), str(message), getattr(exc, "headers", None))


def database_error_handler(request: Request, exc: Exception) -> Response:
    """PostgreSQL unreachable or a query over its time limit: 503, not a stack trace."""
    text = f"{type(exc).__name__}: {exc}"
    if "QueryCanceled" in text or "statement timeout" in text:
        return _response(503, "service_unavailable", "the query exceeded its time limit; narrow the range")
    if isinstance(exc, (OSError, ConnectionError)) or "connect" in text.lower() or "closed" in text.lower():
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return _response(503, "service_unavailable", "the database is unavailable")
    return internal_error_handler(request, exc)


def undecodable_body_handler(_: Request, exc: Exception) -> Response:
    return _response(400, "invalid_request_error", undecodable_body_message(exc))


def internal_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _response(HTTP_500_INTERNAL_SERVER_ERROR, "api_error", "internal error")


EXCEPTION_HANDLERS = {
    ApiError: api_error_handler,
    SQLAlchemyError: database_error_handler,
    OSError: database_error_handler,
    ValidationException: validation_handler,
    HTTPException: http_error_handler,
    **{error: undecodable_body_handler for error in UNDECODABLE_BODY_ERRORS},
    Exception: internal_error_handler,
}
