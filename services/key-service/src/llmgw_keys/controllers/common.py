"""Shared bits of the controllers: dependencies, documented error responses, filters."""

from __future__ import annotations

from litestar import Request
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example

from llmgw_keys.errors import Invalid
from llmgw_keys.runtime import Principal, Runtime
from llmgw_keys.schemas import ErrorResponse

RuntimeDep = NamedDependency[Runtime]
PrincipalDep = NamedDependency[Principal]


def provide_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def provide_principal(request: Request) -> Principal:
    return request.state.principal


def _error(status: int, error_type: str, message: str, description: str) -> ResponseSpec:
    return ResponseSpec(
        data_container=ErrorResponse,
        description=description,
        generate_examples=False,
        examples=[Example(summary=error_type, value={"error": {"type": error_type, "message": message}})],
    )


E401 = {401: _error(401, "authentication_error", "invalid or revoked admin token", "Missing or invalid admin token")}
E403 = {403: _error(403, "permission_error", "the 'analyst' role may not do this", "The token's role may not do this")}
E404 = {404: _error(404, "not_found_error", "key not found", "No such object")}
E409 = {
    409: _error(
        409,
        "conflict_error",
        "key is revoked; a revoked key cannot be changed or re-activated",
        "The object's state does not allow this",
    )
}
E503 = {
    503: _error(
        503, "service_unavailable", "NATS is not connected; the response cache cannot be reached", "NATS unreachable"
    )
}
E422 = {
    422: _error(
        422,
        "invalid_request_error",
        "rpm_limit: Expected `int` >= 1",
        "The request does not validate (types, ranges, unknown fields)",
    )
}


def check_filter(value: str | None, name: str, max_length: int = 200) -> str | None:
    if value is not None and (len(value) > max_length or "\x00" in value):
        raise Invalid(f"{name}: at most {max_length} characters, no NUL")
    return value
