"""The metering Litestar app: analyst REST + (in the same process) the JetStream ingest."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from llmgw_common.logging import configure_logging, logging_configured
from llmgw_common.messaging import connect
from llmgw_common.metrics import worker_exiting
from llmgw_common.telemetry import instrument_asyncpg, litestar_opentelemetry_plugin, setup_tracing, untraced
from llmgw_metering.auth import Authenticator
from llmgw_metering.controllers.health import HealthController
from llmgw_metering.controllers.prices import PriceOverrideController, PriceQuoteController
from llmgw_metering.controllers.usage import UsageController
from llmgw_metering.db import create_engine
from llmgw_metering.errors import EXCEPTION_HANDLERS
from llmgw_metering.ingest.budget import BudgetSync, budget_bucket
from llmgw_metering.ingest.consumer import UsageConsumer
from llmgw_metering.metrics import HTTP
from llmgw_metering.partitions import run_maintenance
from llmgw_metering.services.overrides import OverrideCache
from llmgw_metering.settings import Settings

log = logging.getLogger(__name__)


async def _maintenance_loop(settings: Settings, engine) -> None:
    delay = 5.0  # first pass soon after start (partitions ahead), then on the configured period
    while True:
        await asyncio.sleep(delay)
        delay = settings.metering_maintenance_seconds
        try:
            with untraced():  # a periodic pass is not worth a trace each time
                result = await run_maintenance(
                    engine,
                    retention_days=settings.metering_retention_days,
                    rollup_retention_days=settings.metering_rollup_retention_days,
                    ahead=settings.metering_partitions_ahead,
                )
            if result.get("dropped"):
                log.info("maintenance: %s", result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            log.warning("maintenance pass failed: %s", exc)
            delay = min(60.0, settings.metering_maintenance_seconds)


@contextlib.asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    setup_tracing(settings.service_name)
    instrument_asyncpg()  # before the engine opens connections; a no-op unless tracing is on
    engine = create_engine(settings, pool_size=settings.metering_writers + 4)
    nc = await connect(settings.nats_url, name=settings.service_name)
    js = nc.jetstream()
    overrides = OverrideCache(engine, settings.metering_overrides_refresh_seconds)
    state = app.state
    state.engine = engine
    state.nc = nc
    state.js = js
    state.overrides = overrides
    state.auth = Authenticator(
        nc,
        settings.resolved_admin_token(),
        timeout=settings.metering_auth_timeout_seconds,
        cache_seconds=settings.metering_auth_cache_seconds,
        negative_cache_seconds=settings.metering_auth_negative_cache_seconds,
    )
    state.consumer = None
    state.budget = None
    state.budget_kv = None
    maintenance = None
    try:
        await state.auth.start()
        try:
            state.budget_kv = await budget_bucket(js)
        except Exception as exc:  # noqa: BLE001 - JetStream not ready: the API still serves the ledger
            log.warning("budget KV bucket unavailable: %s", exc)
        if settings.metering_consume:
            budget = BudgetSync(
                js,
                engine,
                reconcile_seconds=settings.metering_reconcile_seconds,
                window_seconds=settings.metering_reconcile_window_seconds,
                min_interval=settings.metering_budget_flush_seconds,
            )
            await budget.start()
            state.budget = budget
            consumer = UsageConsumer(nc=nc, js=js, engine=engine, settings=settings, overrides=overrides, budget=budget)
            await consumer.start()
            state.consumer = consumer
            maintenance = asyncio.create_task(_maintenance_loop(settings, engine), name="metering-maintenance")
        yield
    finally:
        if maintenance is not None:
            maintenance.cancel()
            await asyncio.gather(maintenance, return_exceptions=True)
        if state.consumer is not None:
            await state.consumer.stop()
        if state.budget is not None:
            await state.budget.stop()
        await state.auth.stop()
        try:
            await nc.drain()
        except Exception:  # noqa: BLE001
            await nc.close()
        await engine.dispose()
        worker_exiting()


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings()
    if not logging_configured():
        # `serve` configures it before uvicorn starts; an app created any other way does it here.
        configure_logging(settings.service_name, level=settings.log_level)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # Before the app is built: the OpenTelemetry plugin is only added when spans are exported.
    setup_tracing(settings.service_name)
    otel = litestar_opentelemetry_plugin()
    app = Litestar(
        route_handlers=[HealthController, UsageController, PriceOverrideController, PriceQuoteController],
        lifespan=[lifespan],
        middleware=[HTTP.middleware],
        plugins=[otel] if otel is not None else [],
        # Logging is llmgw_common.logging's (JSON, redacted); Litestar's default config would
        # replace the root handler with its own plain-text one.
        logging_config=None,
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="llmgw metering",
            version="1.0.0",
            description=(
                "Usage ledger of the llmgw gateway: aggregated usage, raw events, per-key spend, price overrides. "
                "Bearer token: the bootstrap admin token or an admin/analyst token from key-service."
            ),
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", description="admin or analyst token")
                }
            ),
            security=[{"bearer": []}],
        ),
        debug=False,
    )
    app.state.settings = settings
    return app
