"""Operational endpoints served by Litestar: liveness, readiness, metrics."""

from __future__ import annotations

from litestar import Request, Response, get
from litestar.datastructures import State

from llmgw_proxy.metrics import CONTENT_TYPE, CONTENT_TYPE_HEADERS

#: a key lookup answered within this many seconds counts as "key lookups answering"
READY_WINDOW = 30.0


@get("/healthz", sync_to_thread=False, include_in_schema=False)
def healthz() -> dict:
    return {"status": "ok"}


@get("/readyz", include_in_schema=False)
async def readyz(state: State, request: Request) -> Response:
    """503 unless NATS is connected and key lookups answer.

    ``?degraded=ok`` (what the Kubernetes readinessProbe asks) answers 200 while this replica can still
    serve without them: it spools usage while NATS is away and serves cached keys while key-service is.
    A shared dependency's outage must not take every replica out of the Service at once.
    """
    runtime = state.proxy
    nats_ok = runtime.nc is not None and runtime.nc.is_connected
    lookups_ok = False
    if nats_ok:
        keys = runtime.keys
        lookups_ok = keys.answering(READY_WINDOW)
        if lookups_ok is None:
            lookups_ok = await keys.probe()
    ready = nats_ok and lookups_ok
    serving = ready or request.query_params.get("degraded") == "ok"
    body = {
        "status": "ready" if ready else ("degraded" if serving else "not_ready"),
        "nats": "connected" if nats_ok else "disconnected",
        "key_lookups": "answering" if lookups_ok else "not_answering",
        "spool_depth": runtime.spool.depth,
    }
    return Response(body, status_code=200 if serving else 503)


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics(state: State) -> Response:
    return Response(state.proxy.metrics.render(), media_type=CONTENT_TYPE.decode(), headers=CONTENT_TYPE_HEADERS)
