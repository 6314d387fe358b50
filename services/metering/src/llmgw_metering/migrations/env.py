"""Alembic environment for the ``metering`` schema (version table inside it).

Run programmatically by :func:`llmgw_metering.migrate.run_migrations`, which passes an open
connection (holding the advisory lock) in ``config.attributes["connection"]``. Run by the alembic
CLI, it builds an async engine from ``LLMGW_DATABASE_URL`` itself.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text

from llmgw_metering import SCHEMA

config = context.config


def _run(connection) -> None:
    connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
    context.configure(
        connection=connection,
        target_metadata=None,
        version_table="alembic_version",
        version_table_schema=SCHEMA,
        include_schemas=False,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    from llmgw_metering.db import create_engine
    from llmgw_metering.settings import Settings

    engine = create_engine(Settings(), pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_run_async())
