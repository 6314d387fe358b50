"""The key-service Litestar application: ``create_app(settings)``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme, Tag
from llmgw_common.logging import configure_logging, logging_configured
from llmgw_common.metrics import worker_exiting
from llmgw_common.telemetry import litestar_opentelemetry_plugin, setup_tracing

from llmgw_keys.auth import require_token
from llmgw_keys.controllers.admin_tokens import AdminTokensController
from llmgw_keys.controllers.audit import AuditController
from llmgw_keys.controllers.cache import CacheController
from llmgw_keys.controllers.common import provide_principal, provide_runtime
from llmgw_keys.controllers.health import healthz, metrics, readyz
from llmgw_keys.controllers.keys import KeysController
from llmgw_keys.controllers.providers import ProvidersController
from llmgw_keys.controllers.routes import RoutesController
from llmgw_keys.errors import exception_handlers
from llmgw_keys.metrics import HTTP
from llmgw_keys.runtime import Runtime
from llmgw_keys.settings import Settings

log = logging.getLogger(__name__)

API_DESCRIPTION = """\
Admin API of the llmgw key-service: virtual keys, provider credentials, model routes, admin
tokens, the audit log and the edge proxies' response cache. Every `/v1/*` call needs `Authorization: Bearer <admin token>`
(the bootstrap `LLMGW_ADMIN_TOKEN` or a token from `POST /v1/admin-tokens`). Errors are
`{"error": {"type": ..., "message": ...}}` with 401/403/404/409/422. See docs/key-service.md.
"""


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings()
    if not logging_configured():
        # `serve` configures it before uvicorn starts; an app created any other way does it here.
        configure_logging(settings.service_name, level=settings.log_level)
    # Before the app is built: the OpenTelemetry plugin is only added when spans are exported.
    setup_tracing(settings.service_name)
    otel = litestar_opentelemetry_plugin()
    runtime = Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.runtime = runtime
        try:
            await runtime.start()
            yield
        finally:
            # Also after a failed start: a NATS connection left open would keep its queue-group
            # subscription and swallow a share of the lookups.
            await runtime.stop()
            worker_exiting()

    admin_api = Router(
        path="/",
        guards=[require_token],
        security=[{"BearerToken": []}],
        dependencies={"principal": Provide(provide_principal, sync_to_thread=False)},
        route_handlers=[
            KeysController, ProvidersController, RoutesController, AdminTokensController, AuditController,
            CacheController,
        ],
    )

    app = Litestar(
        route_handlers=[healthz, readyz, metrics, admin_api],
        lifespan=[lifespan],
        middleware=[HTTP.middleware],
        plugins=[otel] if otel is not None else [],
        dependencies={"runtime": Provide(provide_runtime, sync_to_thread=False)},
        exception_handlers=exception_handlers,
        openapi_config=OpenAPIConfig(
            title="llmgw key-service",
            version="1.0.0",
            description=API_DESCRIPTION,
            path="/schema",
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
            components=Components(
                security_schemes={
                    "BearerToken": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="Bootstrap admin token (LLMGW_ADMIN_TOKEN) or a token from POST /v1/admin-tokens",
                    )
                }
            ),
            tags=[
                Tag(name="keys", description="Virtual keys the clients use against the edge proxy"),
                Tag(name="providers", description="Upstream credentials (encrypted at rest)"),
                Tag(name="routes", description="Public model name → deployments"),
                Tag(name="admin tokens", description="Bearer tokens for admins and analysts"),
                Tag(name="audit", description="Who changed what, when"),
                Tag(name="response cache", description="The edge proxies' shared response cache: stats, purge"),
                Tag(name="health", description="Liveness and readiness"),
            ],
        ),
        request_max_body_size=10 * 1024 * 1024,
        # Logging is llmgw_common.logging's (JSON, redacted); Litestar's default config would
        # replace the root handler with its own plain-text one.
        logging_config=None,
        debug=False,
    )
    _polish_openapi(app)
    return app


def _polish_openapi(app: Litestar) -> None:
    """Litestar marks every request body required; the rotate body is optional."""
    schema = app.openapi_schema
    rotate = schema.paths.get("/v1/keys/{key_id}/rotate") if schema.paths else None
    if rotate is not None and rotate.post is not None and rotate.post.request_body is not None:
        rotate.post.request_body.required = False
