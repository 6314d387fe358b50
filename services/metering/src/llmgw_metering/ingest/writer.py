"""One PostgreSQL transaction per batch: COPY into a staging table, then a single statement that
inserts the events and folds exactly the stored rows into the hourly and daily rollups and the
per-budget-period spend.

The statement first tries the batch as all-new events (plain INSERT, rollups read from the staging
table: the usual case, and the cheaper one). If any event is stored already (a redelivery, a
duplicate publish) that insert fails on the primary key, the savepoint around it is rolled back and
the batch goes through ``ON CONFLICT DO NOTHING`` with everything keyed off its ``RETURNING``: an
event already stored adds nothing anywhere. A crash before COMMIT leaves nothing behind: the
messages were not acked and come back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from llmgw_metering.ingest.prepare import COLUMNS
from llmgw_metering.metrics import DB_SECONDS
from llmgw_metering.partitions import ensure_partitions

log = logging.getLogger(__name__)

STAGING = "llmgw_ingest_batch"

# Identifier columns in the "C" collation, like the ledger's: both ingest statements then group and
# order the rollup rows identically (the same row-lock order for every writer: no deadlocks).
STAGING_DDL = f"""
CREATE TEMP TABLE IF NOT EXISTS {STAGING} (
    event_id text COLLATE "C", request_id text, ts timestamptz, key_id text COLLATE "C", project text COLLATE "C",
    provider text COLLATE "C", model text COLLATE "C", upstream_model text, deployment text, endpoint text,
    streamed boolean, status text COLLATE "C", status_code integer, error_type text, attempts integer, cached boolean,
    prompt_tokens integer, cached_tokens integer, cache_write_tokens integer, completion_tokens integer,
    reasoning_tokens integer, total_tokens integer, latency_ms double precision, ttfb_ms double precision,
    upstream_latency_ms double precision, reserved_usd double precision, budget_period_key text COLLATE "C",
    v smallint, cost_usd numeric, price_known boolean, price_version text
) ON COMMIT DELETE ROWS
"""

_TOKENS = (
    "prompt_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "total_tokens",
)
_DIMS = "key_id, project, model, provider, status"


def _rollup(table: str, grain: str, source: str) -> str:
    sums = ", ".join(f"sum({t})" for t in _TOKENS)
    updates = ", ".join(f"{c} = r.{c} + EXCLUDED.{c}" for c in ("requests", "errors", *_TOKENS, "cost_usd"))
    return f"""
        INSERT INTO metering.{table} AS r
            (bucket, {_DIMS}, requests, errors, {", ".join(_TOKENS)}, cost_usd)
        SELECT date_trunc('{grain}', ts, 'UTC'), {_DIMS}, count(*), count(*) FILTER (WHERE status = 'error'),
               {sums}, sum(cost_usd)
        FROM {source}
        GROUP BY 1, 2, 3, 4, 5, 6
        ORDER BY 1, 2, 3, 4, 5, 6
        ON CONFLICT (bucket, {_DIMS}) DO UPDATE SET {updates}
    """


def _ingest_sql(new_events_only: bool) -> str:
    """One statement storing the staged batch: the events, then the hourly/daily rollups and the
    budget spend of exactly the rows stored, answering (key, period, model, provider) sums.

    ``new_events_only``: the fast path, for a batch none of whose events is stored yet (the usual
    case): a plain INSERT (a duplicate raises ``unique_violation`` instead) and everything else read
    straight from the staging table. Otherwise ``ON CONFLICT DO NOTHING`` and everything keyed off
    its ``RETURNING``, so an event already stored adds nothing anywhere."""
    columns = ", ".join(COLUMNS)
    if new_events_only:
        events = f"INSERT INTO metering.usage_events ({columns}, ingested_at) SELECT {columns}, now() FROM {STAGING}"
        source = STAGING
    else:
        events = f"""INSERT INTO metering.usage_events ({columns}, ingested_at)
    SELECT {columns}, now() FROM {STAGING}
    ON CONFLICT (ts, event_id) DO NOTHING
    RETURNING ts, {_DIMS}, {", ".join(_TOKENS)}, cost_usd, reserved_usd, budget_period_key"""
        source = "ins"
    return f"""
WITH ins AS (
    {events}
),
hourly AS ({_rollup("usage_hourly", "hour", source)}),
daily AS ({_rollup("usage_daily", "day", source)}),
budget AS (
    INSERT INTO metering.budget_spend AS b (key_id, period_key, spend_usd, reserved_usd, requests, updated_at)
    SELECT key_id, budget_period_key, sum(cost_usd), sum(reserved_usd)::numeric, count(*), now()
    FROM {source}
    WHERE budget_period_key IS NOT NULL
    GROUP BY key_id, budget_period_key
    ORDER BY key_id, budget_period_key
    ON CONFLICT (key_id, period_key) DO UPDATE SET
        spend_usd = b.spend_usd + EXCLUDED.spend_usd,
        reserved_usd = b.reserved_usd + EXCLUDED.reserved_usd,
        requests = b.requests + EXCLUDED.requests,
        updated_at = EXCLUDED.updated_at
)
SELECT key_id, budget_period_key, model, provider, count(*) AS n,
       coalesce(sum(reserved_usd), 0)::float8 AS reserved, coalesce(sum(cost_usd), 0)::float8 AS cost
FROM {source}
GROUP BY key_id, budget_period_key, model, provider
"""


#: the usual batch (no event stored before): ~25% less PostgreSQL CPU per event than INGEST_SQL
INGEST_NEW_SQL = _ingest_sql(new_events_only=True)
#: any batch, redeliveries and duplicates included
INGEST_SQL = _ingest_sql(new_events_only=False)


class TransientDbError(Exception):
    """PostgreSQL unreachable / restarting / a lock conflict: retry the same batch later."""

    def __init__(self, kind: str, cause: BaseException):
        super().__init__(f"{kind}: {cause}")
        self.kind = kind
        self.cause = cause


@dataclass(slots=True)
class WriteResult:
    inserted: int = 0
    #: (key_id, budget_period_key) -> sum of reserved_usd of the newly inserted events
    budget: dict[tuple[str, str], float] = field(default_factory=dict)
    #: rows the database refused (index into the batch's rows, error text)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    #: (model, provider) -> cost of the newly inserted events (metrics)
    cost: dict[tuple[str, str], float] = field(default_factory=dict)

    def merge(self, other: WriteResult, offset: int) -> None:
        self.inserted += other.inserted
        for key, value in other.budget.items():
            self.budget[key] = self.budget.get(key, 0.0) + value
        for key, value in other.cost.items():
            self.cost[key] = self.cost.get(key, 0.0) + value
        self.rejected.extend((i + offset, e) for i, e in other.rejected)


class _Poison(Exception):
    pass


class _MissingPartition(Exception):
    pass


def _classify(exc: BaseException) -> BaseException:
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError) and "no partition" in str(exc):
        return _MissingPartition(str(exc))
    if isinstance(exc, (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)):
        return _Poison(str(exc))
    if isinstance(exc, (ValueError, TypeError, ArithmeticError)) and not isinstance(exc, asyncpg.PostgresError):
        # a value the driver cannot encode: deterministic for that row, so it is isolated like a data error
        return _Poison(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)):
        return TransientDbError("conflict", exc)
    if isinstance(exc, (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)):
        return TransientDbError("connection", exc)
    if isinstance(exc, (asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError, asyncpg.CrashShutdownError)):
        return TransientDbError("connection", exc)
    return TransientDbError("error", exc)


class BatchWriter:
    """Holds one PostgreSQL connection (from the engine's pool) for the lifetime of an ingest pipeline."""

    def __init__(self, engine: AsyncEngine, known_months: set[int]) -> None:
        self._engine = engine
        self._known_months = known_months
        self._sa_conn: AsyncConnection | None = None
        self._conn: asyncpg.Connection | None = None

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            await self.release(broken=True)
            try:
                self._sa_conn = await self._engine.connect()
                fairy = await self._sa_conn.get_raw_connection()
                conn = fairy.driver_connection
                await conn.execute(STAGING_DDL)
            except Exception as exc:  # noqa: BLE001
                await self.release(broken=True)
                raise TransientDbError("connection", exc) from exc
            self._conn = conn
        return self._conn

    async def release(self, broken: bool = False) -> None:
        sa_conn, self._sa_conn, self._conn = self._sa_conn, None, None
        if sa_conn is None:
            return
        try:
            if broken:
                await sa_conn.invalidate()
            await sa_conn.close()
        except Exception:  # noqa: BLE001 - the connection is gone anyway
            pass

    async def _ensure_partitions(self, months: set[int]) -> None:
        missing = months - self._known_months
        if missing:
            try:
                self._known_months |= await ensure_partitions(self._engine, missing)
            except Exception as exc:  # noqa: BLE001
                raise TransientDbError("partition", exc) from exc

    async def write(self, rows: list[tuple], months: set[int]) -> WriteResult:
        """Store the rows; raises TransientDbError (nothing committed) for the caller to retry."""
        if not rows:
            return WriteResult()
        await self._ensure_partitions(months)
        try:
            return await self._write(rows)
        except _MissingPartition:
            # a partition vanished under us (retention racing a very old event): re-check and retry
            self._known_months.clear()
            raise TransientDbError("partition", RuntimeError("missing partition")) from None
        except _Poison as exc:
            log.warning("batch of %d rows refused by PostgreSQL (%s); isolating the offending rows", len(rows), exc)
            return await self._split(rows, str(exc))

    async def _write(self, rows: list[tuple]) -> WriteResult:
        conn = await self._connection()
        started = time.perf_counter()
        try:
            async with conn.transaction():
                await conn.copy_records_to_table(STAGING, records=rows, columns=COLUMNS)
                try:
                    async with conn.transaction():  # a savepoint: a duplicate undoes only this
                        records = await conn.fetch(INGEST_NEW_SQL)
                except asyncpg.UniqueViolationError:
                    # an event of the batch is stored already (a redelivery, a duplicate publish)
                    records = await conn.fetch(INGEST_SQL)
        except Exception as exc:  # noqa: BLE001
            classified = _classify(exc)
            if isinstance(classified, TransientDbError) and classified.kind != "conflict":
                await self.release(broken=True)
            raise classified from exc
        finally:
            DB_SECONDS.labels("ingest").observe(time.perf_counter() - started)
        result = WriteResult()
        for record in records:
            result.inserted += record["n"]
            if record["cost"]:
                key = (record["model"], record["provider"])
                result.cost[key] = result.cost.get(key, 0.0) + record["cost"]
            period = record["budget_period_key"]
            if period is not None:
                key = (record["key_id"], period)
                result.budget[key] = result.budget.get(key, 0.0) + record["reserved"]
        return result

    async def _split(self, rows: list[tuple], error: str) -> WriteResult:
        """``rows`` were refused as a whole: halve until the offending rows are isolated, store the rest."""
        if len(rows) == 1:
            return WriteResult(rejected=[(0, error)])
        middle = len(rows) // 2
        result = await self._try(rows[:middle])
        result.merge(await self._try(rows[middle:]), middle)
        return result

    async def _try(self, rows: list[tuple]) -> WriteResult:
        try:
            return await self._write(rows)
        except _Poison as exc:
            return await self._split(rows, str(exc))
