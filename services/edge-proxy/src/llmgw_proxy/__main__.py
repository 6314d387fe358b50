"""``python -m llmgw_proxy serve``: run the edge proxy under uvicorn (uvloop + httptools)."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from llmgw_common.logging import configure_logging, uvicorn_log_config
from llmgw_common.metrics import prepare_multiprocess
from llmgw_proxy.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmgw_proxy", description="llmgw edge proxy")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the proxy (settings from LLMGW_* environment variables)")
    serve.add_argument("--port", type=int, default=None, help="overrides LLMGW_PROXY_PORT")
    serve.add_argument("--workers", type=int, default=None, help="overrides LLMGW_PROXY_WORKERS")
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging(settings.service_name, level=settings.log_level)
    if args.command == "serve":
        # Several workers share the port: each writes its metrics to PROMETHEUS_MULTIPROC_DIR and any
        # worker's /metrics adds them up (metrics.py).
        prepare_multiprocess(args.workers or settings.proxy_workers, settings.state_dir, "edge-proxy")
        uvicorn.run(
            "llmgw_proxy.app:create_app",
            factory=True,
            host=settings.bind_host,
            port=args.port or settings.proxy_port,
            workers=args.workers or settings.proxy_workers,
            loop="uvloop",
            http="httptools",
            access_log=False,
            proxy_headers=False,
            log_level=settings.log_level.lower(),
            log_config=uvicorn_log_config(settings.service_name, level=settings.log_level),
            timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
