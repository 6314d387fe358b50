"""Admin API authentication (a guard on every route but /healthz, /readyz and /schema).

``Authorization: Bearer <token>`` where the token is the bootstrap admin token
(``LLMGW_ADMIN_TOKEN``, compared in constant time) or an active token created through
``POST /v1/admin-tokens`` (looked up by hash). A virtual key is neither: 401.

Roles: ``admin`` may do everything; ``analyst`` reads usage only (metering accepts it) and gets
403 on every key-service route — before the handler runs, so it never learns whether an id exists
(key records carry free-form owner metadata an analyst has no need for).
"""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from llmgw_keys.errors import Forbidden, Unauthorized
from llmgw_keys.runtime import Principal
from llmgw_keys.services.admin_tokens import authenticate

ADMIN_ONLY = ("admin",)


async def require_token(connection: ASGIConnection, route_handler: BaseRouteHandler) -> None:
    runtime = connection.app.state.runtime
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing admin token: send 'Authorization: Bearer <admin token>'")
    principal = await authenticate(runtime, token)
    if principal is None:
        raise Unauthorized("invalid or revoked admin token")
    roles = route_handler.opt.get("roles", ADMIN_ONLY)
    if principal.role not in roles:
        raise Forbidden(f"the {principal.role!r} role may not do this")
    connection.state.principal = principal


def get_principal(request) -> Principal:
    return request.state.principal
