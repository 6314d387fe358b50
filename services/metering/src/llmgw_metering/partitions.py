"""Monthly range partitions of ``metering.usage_events``: created ahead, dropped whole by retention.

New partitions are created as plain tables and then ATTACHed (SHARE UPDATE EXCLUSIVE on the
parent: ingest inserts and analyst queries keep running); expired ones are DETACHed CONCURRENTLY
and then dropped, so purging a month never takes a lock that blocks ingest.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

#: pg_advisory_xact_lock key serialising partition DDL across replicas ("llmgw-metering-partitions")
PARTITION_LOCK_KEY = 0x6C6D6770_0001
#: session lock: only one replica runs the retention/maintenance pass at a time
MAINTENANCE_LOCK_KEY = 0x6C6D6770_0002
_NAME = re.compile(r"^usage_events_p(\d{4})(\d{2})$")


def month_index(ts: datetime) -> int:
    """Months since year 0; the partition an instant (UTC) belongs to."""
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC)
    return ts.year * 12 + ts.month - 1


def month_start(index: int) -> datetime:
    year, month0 = divmod(index, 12)
    return datetime(year, month0 + 1, 1, tzinfo=UTC)


def partition_name(index: int) -> str:
    year, month0 = divmod(index, 12)
    return f"usage_events_p{year:04d}{month0 + 1:02d}"


async def existing_partitions(conn: AsyncConnection) -> set[int]:
    rows = await conn.execute(
        text(
            """
            SELECT c.relname
            FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid
            JOIN pg_class p ON p.oid = i.inhparent
            JOIN pg_namespace n ON n.oid = p.relnamespace
            WHERE n.nspname = 'metering' AND p.relname = 'usage_events' AND NOT i.inhdetachpending
            """
        )
    )
    found: set[int] = set()
    for (name,) in rows:
        match = _NAME.match(name)
        if match:
            found.add(int(match.group(1)) * 12 + int(match.group(2)) - 1)
    return found


async def ensure_partitions(engine: AsyncEngine, months: Iterable[int]) -> set[int]:
    """Create the monthly partitions that are missing; returns every partition that exists."""
    wanted = set(months)
    async with engine.begin() as conn:
        existing = await existing_partitions(conn)
        if wanted <= existing:
            return existing
        await conn.execute(text("SET LOCAL lock_timeout = '10s'"))
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PARTITION_LOCK_KEY})
        existing = await existing_partitions(conn)
        for index in sorted(wanted - existing):
            name = partition_name(index)
            start = month_start(index).isoformat()
            end = month_start(index + 1).isoformat()
            await conn.execute(text(f"DROP TABLE IF EXISTS metering.{name}"))  # a leftover of an aborted detach
            await conn.execute(
                text(
                    f"CREATE TABLE metering.{name} "
                    + "(LIKE metering.usage_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
                )
            )
            await conn.execute(
                text(
                    f"ALTER TABLE metering.usage_events ATTACH PARTITION metering.{name} "
                    f"FOR VALUES FROM ('{start}') TO ('{end}')"
                )
            )
            log.info("created partition metering.%s [%s, %s)", name, start, end)
            existing.add(index)
        return existing


def months_around(now: datetime, ahead: int, behind: int = 1) -> range:
    current = month_index(now)
    return range(current - behind, current + ahead + 1)


def retention_cutoff(now: datetime, retention_days: int) -> datetime:
    return now - timedelta(days=retention_days)


async def drop_expired_partitions(engine: AsyncEngine, retention_days: int, now: datetime | None = None) -> list[str]:
    """Detach (CONCURRENTLY) and drop every month that ends before the retention cutoff."""
    now = now or datetime.now(UTC)
    cutoff = retention_cutoff(now, retention_days)
    async with engine.connect() as conn:
        existing = await existing_partitions(conn)
        pending = await conn.execute(
            text(
                """
                SELECT c.relname FROM pg_inherits i
                JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
                JOIN pg_namespace n ON n.oid = p.relnamespace
                WHERE n.nspname = 'metering' AND p.relname = 'usage_events' AND i.inhdetachpending
                """
            )
        )
        pending_names = [name for (name,) in pending]
        await conn.rollback()
    dropped: list[str] = []
    expired = [index for index in sorted(existing) if month_start(index + 1) <= cutoff]
    if not expired and not pending_names:
        return dropped
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    async with autocommit.connect() as conn:
        await conn.execute(text("SET lock_timeout = '5s'"))
        for name in pending_names:  # an interrupted DETACH ... CONCURRENTLY
            await conn.execute(text(f"ALTER TABLE metering.usage_events DETACH PARTITION metering.{name} FINALIZE"))
            await conn.execute(text(f"DROP TABLE IF EXISTS metering.{name}"))
            dropped.append(name)
        for index in expired:
            name = partition_name(index)
            await conn.execute(text(f"ALTER TABLE metering.usage_events DETACH PARTITION metering.{name} CONCURRENTLY"))
            await conn.execute(text(f"DROP TABLE IF EXISTS metering.{name}"))
            log.info(
                "retention: dropped partition metering.%s (ends %s, cutoff %s)", name, month_start(index + 1), cutoff
            )
            dropped.append(name)
    return dropped


async def purge_rollups(engine: AsyncEngine, retention_days: int, now: datetime | None = None) -> int:
    """Delete rollup rows older than their retention (0 = keep forever), in small batches."""
    if retention_days <= 0:
        return 0
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    deleted = 0
    for table in ("usage_hourly", "usage_daily"):
        while True:
            async with engine.begin() as conn:
                result = await conn.execute(
                    text(
                        f"DELETE FROM metering.{table} WHERE ctid IN "
                        f"(SELECT ctid FROM metering.{table} WHERE bucket < :cutoff LIMIT 10000)"
                    ),
                    {"cutoff": cutoff},
                )
            deleted += result.rowcount or 0
            if not result.rowcount:
                break
    return deleted


async def run_maintenance(engine: AsyncEngine, *, retention_days: int, rollup_retention_days: int, ahead: int) -> dict:
    """One maintenance pass (partitions ahead, retention), by at most one replica at a time."""
    now = datetime.now(UTC)
    async with engine.connect() as lock_conn:
        got = (await lock_conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": MAINTENANCE_LOCK_KEY})).scalar()
        await lock_conn.commit()
        if not got:
            return {"skipped": True}
        try:
            cutoff_month = month_index(retention_cutoff(now, retention_days))
            months = [m for m in months_around(now, ahead) if m >= cutoff_month]
            await ensure_partitions(engine, months)
            dropped = await drop_expired_partitions(engine, retention_days, now)
            purged = await purge_rollups(engine, rollup_retention_days, now)
            return {"skipped": False, "dropped": dropped, "rollup_rows_purged": purged}
        finally:
            await lock_conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MAINTENANCE_LOCK_KEY})
            await lock_conn.commit()
