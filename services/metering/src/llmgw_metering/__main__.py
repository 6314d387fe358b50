"""``python -m llmgw_metering migrate|serve|maintenance``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from llmgw_common.logging import configure_logging
from llmgw_common.serving import serve
from llmgw_metering.settings import Settings


def _configure_logging(settings: Settings) -> None:
    configure_logging(settings.service_name, level=settings.log_level)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmgw_metering", description="llmgw metering service")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply the database migrations (alembic upgrade head, advisory-locked)")
    sub.add_parser("serve", help="run the API + ingest (migrates first unless LLMGW_AUTO_MIGRATE=0)")
    sub.add_parser("maintenance", help="one partition/retention pass, then exit")
    args = parser.parse_args(argv)

    settings = Settings()
    _configure_logging(settings)

    if args.command == "migrate":
        from llmgw_metering.migrate import run_migrations

        asyncio.run(run_migrations(settings))
        return 0

    if args.command == "maintenance":
        from llmgw_metering.db import create_engine
        from llmgw_metering.partitions import run_maintenance

        async def once() -> dict:
            engine = create_engine(settings, pool_size=1)
            try:
                return await run_maintenance(
                    engine,
                    retention_days=settings.metering_retention_days,
                    rollup_retention_days=settings.metering_rollup_retention_days,
                    ahead=settings.metering_partitions_ahead,
                )
            finally:
                await engine.dispose()

        print(json.dumps(asyncio.run(once())))
        return 0

    if args.command == "serve":
        if settings.auto_migrate:
            from llmgw_metering.migrate import run_migrations

            # In the parent, before uvicorn forks workers: idempotent and advisory-locked.
            asyncio.run(run_migrations(settings))
        serve("llmgw_metering.app:create_app", settings, service="metering", port=settings.metering_port,
              workers=settings.metering_workers, timeout_graceful_shutdown=30)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
