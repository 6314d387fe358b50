"""``python -m llmgw_proxy serve``: run the edge proxy under uvicorn (uvloop + httptools)."""

from __future__ import annotations

import argparse
import sys

from llmgw_common.logging import configure_logging
from llmgw_common.serving import serve
from llmgw_proxy.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmgw_proxy", description="llmgw edge proxy")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser("serve", help="serve the proxy (settings from LLMGW_* environment variables)")
    serve_cmd.add_argument("--port", type=int, default=None, help="overrides LLMGW_PROXY_PORT")
    serve_cmd.add_argument("--workers", type=int, default=None, help="overrides LLMGW_PROXY_WORKERS")
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging(settings.service_name, level=settings.log_level)
    if args.command == "serve":
        serve(
            "llmgw_proxy.app:create_app",
            settings,
            service="edge-proxy",
            port=args.port or settings.proxy_port,
            workers=args.workers or settings.proxy_workers,
            proxy_headers=False,
            timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
