"""Programmatic Alembic: ``python -m llmgw_keys migrate`` and the ``serve`` pre-step.

A Postgres advisory lock serialises concurrent runs (several replicas starting at once); the
version table lives in the ``keys`` schema, next to the tables it versions.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from llmgw_keys.models import SCHEMA
from llmgw_keys.settings import Settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"
#: arbitrary, fixed: pg_advisory_lock key of the key-service migrations ("llmgw-keys")
ADVISORY_LOCK_ID = 0x6C6D67776B657973


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def migrate(settings: Settings, revision: str = "head") -> None:
    """Apply the migrations up to ``revision``; safe to run from many processes at once."""
    engine = create_async_engine(settings.async_database_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            # Session-level lock, held on this connection for the whole upgrade.
            await conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": ADVISORY_LOCK_ID})
            await conn.commit()
            try:
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"'))
                await conn.commit()
                await conn.run_sync(_upgrade, revision)
                await conn.commit()
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": ADVISORY_LOCK_ID})
                await conn.commit()
        log.info("key-service migrations applied (%s)", revision)
    finally:
        await engine.dispose()
