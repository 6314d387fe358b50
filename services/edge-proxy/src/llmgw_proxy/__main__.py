"""``python -m llmgw_proxy serve``: run the edge proxy under uvicorn (uvloop + httptools)."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from llmgw_proxy.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmgw_proxy", description="llmgw edge proxy")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the proxy (settings from LLMGW_* environment variables)")
    serve.add_argument("--port", type=int, default=None, help="overrides LLMGW_PROXY_PORT")
    serve.add_argument("--workers", type=int, default=None, help="overrides LLMGW_PROXY_WORKERS")
    args = parser.parse_args(argv)
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "serve":
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
            timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
