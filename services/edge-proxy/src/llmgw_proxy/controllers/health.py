"""Operational endpoints served by Litestar: liveness, readiness, metrics."""

from __future__ import annotations

from litestar import Response, get
from litestar.datastructures import State

from llmgw_proxy.metrics import CONTENT_TYPE

#: a key lookup answered within this many seconds counts as "key lookups answering"
READY_WINDOW = 30.0


@get("/healthz", sync_to_thread=False, include_in_schema=False)
def healthz() -> dict:
    return {"status": "ok"}


@get("/readyz", include_in_schema=False)
async def readyz(state: State) -> Response:
    runtime = state.proxy
    nats_ok = runtime.nc is not None and runtime.nc.is_connected
    lookups_ok = False
    if nats_ok:
        keys = runtime.keys
        lookups_ok = keys.answering(READY_WINDOW)
        if lookups_ok is None:
            lookups_ok = await keys.probe()
    ready = nats_ok and lookups_ok
    body = {
        "status": "ready" if ready else "not_ready",
        "nats": "connected" if nats_ok else "disconnected",
        "key_lookups": "answering" if lookups_ok else "not_answering",
        "spool_depth": runtime.spool.depth,
    }
    return Response(body, status_code=200 if ready else 503)


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics(state: State) -> Response:
    return Response(state.proxy.metrics.render(), media_type=CONTENT_TYPE.decode())
