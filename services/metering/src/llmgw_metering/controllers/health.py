"""``/healthz`` (process up), ``/readyz`` (NATS + PostgreSQL + consumer), ``/metrics`` (Prometheus)."""

from __future__ import annotations

import asyncio

from litestar import Controller, Response, get
from litestar.datastructures import State
from sqlalchemy import text

from llmgw_common.metrics import render
from llmgw_common.telemetry import untraced


class HealthController(Controller):
    include_in_schema = True
    tags = ["health"]

    @get("/healthz", summary="Liveness")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @get("/readyz", summary="Readiness: NATS and PostgreSQL connected, consumer running")
    async def readyz(self, state: State) -> Response:
        checks: dict[str, str] = {}
        nc = state.nc
        checks["nats"] = "ok" if nc is not None and nc.is_connected else "down"
        try:
            # a probe every few seconds: its query is no trace (the route has no server span either)
            with untraced():
                async with asyncio.timeout(2):
                    async with state.engine.connect() as conn:
                        await conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception:  # noqa: BLE001
            checks["database"] = "down"
        consumer = state.consumer
        if consumer is not None:
            checks["consumer"] = "ok" if consumer.alive else "down"
        ready = all(v == "ok" for v in checks.values())
        return Response(
            {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
        )

    @get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics(self) -> Response:
        body, content_type = render()  # every worker's samples in multiprocess mode
        # the header itself: from ``media_type`` alone Litestar would append a second "; charset=utf-8"
        return Response(body, media_type=content_type, headers={"content-type": content_type})
