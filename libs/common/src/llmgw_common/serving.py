"""``python -m <service> serve``: every service runs its app factory the same way."""

from __future__ import annotations

from typing import Any

from llmgw_common.logging import uvicorn_log_config
from llmgw_common.metrics import prepare_multiprocess
from llmgw_common.settings import GatewaySettings


def serve(factory: str, settings: GatewaySettings, *, service: str, port: int, workers: int, **options: Any) -> None:
    """uvicorn with uvloop + httptools, no access log of its own (the services log their requests),
    JSON logs through llmgw's redacting handler in the parent and every worker, and Prometheus
    multiprocess mode prepared when several workers share the port."""
    import uvicorn

    prepare_multiprocess(workers, settings.state_dir, service)
    uvicorn.run(
        factory,
        factory=True,
        host=settings.bind_host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=settings.log_level.lower(),
        log_config=uvicorn_log_config(settings.service_name, level=settings.log_level),
        **options,
    )
