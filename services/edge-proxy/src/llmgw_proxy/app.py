"""The edge-proxy Litestar app: ``create_app(settings) -> Litestar``."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State

from llmgw_common.logging import configure_logging, logging_configured
from llmgw_common.telemetry import setup_tracing

from llmgw_proxy.controllers import health
from llmgw_proxy.router import ProxyRouter
from llmgw_proxy.runtime import ProxyRuntime
from llmgw_proxy.settings import Settings


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings()
    if not logging_configured():
        # `serve` configures it before uvicorn starts; an app created any other way does it here.
        configure_logging(settings.service_name, level=settings.log_level)
    logging.getLogger("llmgw_proxy").setLevel(settings.log_level.upper())
    # Before the runtime is built: the proxy's tracer is only set when spans are exported.
    setup_tracing(settings.service_name)
    runtime = ProxyRuntime(settings)

    @asynccontextmanager
    async def lifespan(_app: Litestar):
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    handlers = [health.healthz, health.readyz]
    if not settings.proxy_metrics_port:
        handlers.append(health.metrics)
    app = Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        state=State({"proxy": runtime}),
        openapi_config=None,
        logging_config=None,
        debug=False,
    )
    # The proxy's /v1/* hot path is routed before Litestar's router (see router.py).
    router = ProxyRouter(runtime.service, app.asgi_handler)
    app.asgi_handler = router
    return app
