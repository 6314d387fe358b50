"""Migrations (own version table, advisory lock, idempotent), monthly partitions ahead,
on-demand partitions, retention dropping whole months without blocking ingest."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from helpers import event, new_key, publish, wait_requests
from llmgw_metering.db import create_engine
from llmgw_metering.migrate import run_migrations
from llmgw_metering.partitions import (
    drop_expired_partitions,
    ensure_partitions,
    existing_partitions,
    month_index,
    partition_name,
    run_maintenance,
)


async def _scalar(settings, sql: str, **params):
    engine = create_engine(settings, pool_size=1)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar()
    finally:
        await engine.dispose()


async def test_concurrent_migrations_are_safe_and_idempotent(migrated):
    await asyncio.gather(run_migrations(migrated), run_migrations(migrated), run_migrations(migrated))
    assert await _scalar(migrated, "SELECT version_num FROM metering.alembic_version") == "0001"
    assert await _scalar(migrated, "SELECT to_regclass('public.alembic_version') IS NULL") is True


async def test_partitions_exist_ahead(migrated):
    engine = create_engine(migrated, pool_size=1)
    try:
        async with engine.connect() as conn:
            months = await existing_partitions(conn)
    finally:
        await engine.dispose()
    now = month_index(datetime.now(UTC))
    assert set(range(now - 1, now + migrated.metering_partitions_ahead + 1)) <= months


async def test_event_for_a_month_without_partition_creates_it(client, nc, migrated):
    engine = create_engine(migrated, pool_size=1)
    old = datetime.now(UTC).replace(day=15) - timedelta(days=31 * 5)
    name = partition_name(month_index(old))
    try:
        async with engine.connect() as conn:
            assert month_index(old) not in await existing_partitions(conn)
        key = new_key()
        await publish(nc, [event(key_id=key, ts=old)])
        await wait_requests(client, key, 1)
        async with engine.connect() as conn:
            assert month_index(old) in await existing_partitions(conn)
            count = (await conn.execute(text(f"SELECT count(*) FROM metering.{name}"))).scalar()
        assert count == 1
    finally:
        await engine.dispose()


async def test_retention_drops_whole_expired_months_while_ingest_runs(client, nc, migrated):
    engine = create_engine(migrated, pool_size=2)
    now = datetime.now(UTC)
    ancient = month_index(now) - 16  # older than the 400-day default retention
    try:
        await ensure_partitions(engine, [ancient])
        async with engine.begin() as conn:
            await conn.execute(
                text(f"INSERT INTO metering.{partition_name(ancient)} SELECT * FROM metering.usage_events WHERE false")
            )
        key = new_key()
        # ingest keeps going while the old month is detached and dropped
        publishing = asyncio.create_task(publish(nc, [event(key_id=key) for _ in range(200)]))
        dropped = await drop_expired_partitions(engine, migrated.metering_retention_days)
        await publishing
        assert partition_name(ancient) in dropped
        await wait_requests(client, key, 200)
        async with engine.connect() as conn:
            months = await existing_partitions(conn)
        assert ancient not in months and month_index(now) in months
        # a full maintenance pass is idempotent
        result = await run_maintenance(
            engine, retention_days=migrated.metering_retention_days, rollup_retention_days=0, ahead=3
        )
        assert result["skipped"] is False and result["dropped"] == []
    finally:
        await engine.dispose()


async def test_rollup_retention_deletes_only_old_rollup_rows(migrated):
    from llmgw_metering.partitions import purge_rollups

    engine = create_engine(migrated, pool_size=1)
    old = datetime.now(UTC) - timedelta(days=900)
    try:
        async with engine.begin() as conn:
            for table in ("usage_hourly", "usage_daily"):
                await conn.execute(
                    text(
                        f"INSERT INTO metering.{table} "
                        "VALUES (:b, 'k-old', 'p', 'm', 'x', 'ok', 1, 0, 1, 0, 0, 1, 0, 2, 0)"
                    ),
                    {"b": old},
                )
        assert await purge_rollups(engine, 0) == 0  # 0 = keep forever
        assert await purge_rollups(engine, 800) == 2
        async with engine.connect() as conn:
            left = (
                await conn.execute(text("SELECT count(*) FROM metering.usage_daily WHERE key_id = 'k-old'"))
            ).scalar()
        assert left == 0
    finally:
        await engine.dispose()


async def test_openapi_schema_documents_the_api(client):
    schema = (await client.get("/schema/openapi.json")).json()
    paths = schema["paths"]
    for path in (
        "/v1/usage",
        "/v1/usage/events",
        "/v1/usage/keys/{key_id}",
        "/v1/prices/overrides",
        "/v1/prices/overrides/{model}",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path
    usage = paths["/v1/usage"]["get"]
    assert {p["name"] for p in usage["parameters"]} >= {"group_by", "from", "to", "key_id", "format", "status"}
    example = usage["responses"]["200"]["content"]["application/json"]["examples"]
    assert example and "422" in usage["responses"] and "401" in usage["responses"]
