"""``python -m llmgw_metering migrate``: alembic upgrade head under a PostgreSQL advisory lock.

Concurrent replicas (or a migrations Job racing a ``serve``) queue on the lock; whoever gets it
second finds the schema at head and does nothing. Then the partitions around "now" are ensured.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from llmgw_metering import SCHEMA
from llmgw_metering.db import create_engine
from llmgw_metering.partitions import ensure_partitions, month_index, months_around, retention_cutoff
from llmgw_metering.settings import Settings

log = logging.getLogger(__name__)

#: pg_advisory_lock key for the metering migrations ("llmgw-metering-migrate")
MIGRATION_LOCK_KEY = 0x6C6D6770_0000
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _upgrade(sync_connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = sync_connection
    command.upgrade(config, "head")


async def run_migrations(settings: Settings) -> None:
    engine = create_engine(settings, pool_size=1, application_name="llmgw-metering-migrate")
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            await conn.commit()
            try:
                await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
                await conn.run_sync(_upgrade)
                await conn.commit()
            finally:
                await conn.rollback()
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
                await conn.commit()
        now = datetime.now(UTC)
        cutoff = month_index(retention_cutoff(now, settings.metering_retention_days))
        await ensure_partitions(
            engine, [m for m in months_around(now, settings.metering_partitions_ahead) if m >= cutoff]
        )
        log.info("metering schema at head")
    finally:
        await engine.dispose()
