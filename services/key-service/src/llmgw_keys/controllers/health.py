"""Liveness and readiness (no authentication)."""

from __future__ import annotations

from litestar import Response, get
from llmgw_common.metrics import render
from llmgw_common.telemetry import untraced

from llmgw_keys.controllers.common import RuntimeDep
from llmgw_keys.schemas import Health


@get("/healthz", summary="Liveness", description="200 while the process serves HTTP.", tags=["health"])
async def healthz() -> Health:
    return Health(status="ok")


@get(
    "/readyz",
    summary="Readiness",
    description="200 when PostgreSQL answers and NATS is connected, else 503.",
    tags=["health"],
)
async def readyz(runtime: RuntimeDep) -> Response[Health]:
    with untraced():  # a probe every few seconds: its query is no trace (the route has no server span)
        database = await runtime.database_ok()
    nats = runtime.nats_ok()
    ok = database and nats
    return Response(
        Health(status="ok" if ok else "unavailable", database=database, nats=nats),
        status_code=200 if ok else 503,
    )


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics() -> Response[bytes]:
    """Prometheus text exposition (no authentication: keep the port off the public network)."""
    body, content_type = render()
    # the header itself: from ``media_type`` alone Litestar would append a second "; charset=utf-8"
    return Response(body, media_type=content_type, headers={"content-type": content_type})
