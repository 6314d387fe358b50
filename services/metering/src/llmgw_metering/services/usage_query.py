"""Analyst queries: aggregated usage (rollups where the grouping allows, raw events otherwise),
latency/TTFB percentiles (always raw events), raw event pages, per-key summaries.

Source choice for the aggregates (requests, errors, tokens, cost), see :func:`plan_sources`:
  * ``usage_daily``  when ``from``/``to`` fall on UTC midnights (or are open) and the grouping is not
    by hour;
  * ``usage_hourly`` for the whole hours of any other range, plus ``usage_events`` for the partial
    hours at its edges (arbitrary instants: at most two hours of raw events are read);
  * ``usage_events`` alone for a range shorter than one whole hour.
Percentiles cannot be rolled up exactly, so they are computed with ``percentile_cont`` over the raw
events of the range (one sort per group; cost proportional to the events in the range — pass
``percentiles=false`` to skip them for very large exports).
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from llmgw_metering.errors import invalid

GROUP_COLUMNS = {"key": "key_id", "project": "project", "model": "model", "provider": "provider"}
TIME_GRAINS = ("hour", "day", "month")
GROUP_CHOICES = (*GROUP_COLUMNS, *TIME_GRAINS)
FILTERS = ("key_id", "project", "model", "provider", "status")
STATUSES = ("ok", "error", "incomplete")
TOKEN_FIELDS = (
    "prompt_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "total_tokens",
)
PERCENTILE_FIELDS = (
    "latency_ms_p50",
    "latency_ms_p95",
    "latency_ms_p99",
    "ttfb_ms_p50",
    "ttfb_ms_p95",
    "ttfb_ms_p99",
)
METRIC_FIELDS = ("requests", "errors", *TOKEN_FIELDS, "cost_usd", *PERCENTILE_FIELDS)
EVENT_COLUMNS = (
    "event_id",
    "request_id",
    "ts",
    "key_id",
    "project",
    "provider",
    "model",
    "upstream_model",
    "deployment",
    "endpoint",
    "streamed",
    "status",
    "status_code",
    "error_type",
    "attempts",
    "cached",
    *TOKEN_FIELDS,
    "latency_ms",
    "ttfb_ms",
    "upstream_latency_ms",
    "reserved_usd",
    "budget_period_key",
    "v",
    "cost_usd",
    "price_known",
    "price_version",
    "ingested_at",
)


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    dt = dt.astimezone(UTC)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(name: str, value: str | None) -> datetime | None:
    """ISO 8601 date or date-time; UTC when it carries no offset. Invalid -> 422."""
    if value is None or value == "":
        return None
    raw = value.strip()
    if raw.endswith(("z", "Z")):
        raw = raw[:-1] + "+00:00"
    if "\x00" in raw or len(raw) > 64:
        raise invalid(f"'{name}' is not an ISO 8601 date-time")
    try:
        parsed = datetime.fromisoformat(raw)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise invalid(f"'{name}' is not an ISO 8601 date-time: {value[:64]!r}") from None
    if not 1 < parsed.year < 9999:
        raise invalid(f"'{name}' is out of range (years 2..9998)")
    return parsed


MAX_PARAM_LEN = 1000


def clean_text(name: str, value: str) -> str:
    """Identifiers from the caller: no NUL (PostgreSQL text cannot hold it), bounded length."""
    if "\x00" in value:
        raise invalid(f"'{name}' must not contain NUL characters")
    if len(value) > MAX_PARAM_LEN:
        raise invalid(f"'{name}' is longer than {MAX_PARAM_LEN} characters")
    return value


def _one(params: Mapping[str, list[str]], name: str) -> str | None:
    values = params.get(name) or []
    values = [v for v in values if v != ""]
    if len(values) > 1:
        raise invalid(f"'{name}' given more than once")
    return clean_text(name, values[0]) if values else None


@dataclass(slots=True)
class UsageQuery:
    group_by: list[str] = field(default_factory=list)
    start: datetime | None = None
    end: datetime | None = None
    filters: dict[str, str] = field(default_factory=dict)
    percentiles: bool = True

    @property
    def grain(self) -> str | None:
        return next((g for g in self.group_by if g in TIME_GRAINS), None)

    @property
    def fields(self) -> list[str]:
        """Output group fields in group_by order (``key`` -> ``key_id``, time -> ``bucket``)."""
        return [GROUP_COLUMNS.get(g, "bucket") for g in self.group_by]

    @property
    def columns(self) -> list[str]:
        return [*self.fields, *METRIC_FIELDS]


def parse_bool(name: str, value: str | None, default: bool) -> bool:
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise invalid(f"'{name}' must be true or false")


def parse_usage_query(params: Mapping[str, list[str]]) -> UsageQuery:
    query = UsageQuery()
    raw_groups = [
        part.strip()
        for value in params.get("group_by", [])
        for part in clean_text("group_by", value).split(",")
        if part.strip()
    ]
    for group in raw_groups:
        if group not in GROUP_CHOICES:
            raise invalid(f"unknown group_by field {group!r}; choose from {', '.join(GROUP_CHOICES)}")
        if group in query.group_by:
            raise invalid(f"group_by field {group!r} given twice")
        query.group_by.append(group)
    if sum(1 for g in query.group_by if g in TIME_GRAINS) > 1:
        raise invalid("group_by may hold only one of hour, day, month")
    query.start = parse_instant("from", _one(params, "from"))
    query.end = parse_instant("to", _one(params, "to"))
    if query.start and query.end and query.start >= query.end:
        raise invalid("'from' must be before 'to'")
    for name in FILTERS:
        value = _one(params, name)
        if value is not None:
            query.filters[name] = value
    status = query.filters.get("status")
    if status is not None and status not in STATUSES:
        raise invalid(f"'status' must be one of {', '.join(STATUSES)}")
    query.percentiles = parse_bool("percentiles", _one(params, "percentiles"), True)
    return query


def _aligned(dt: datetime | None, grain: str) -> bool:
    if dt is None:
        return True
    if dt.minute or dt.second or dt.microsecond:
        return False
    return grain == "hour" or dt.hour == 0


def _floor_hour(dt: datetime) -> datetime:
    return dt.replace(minute=0, second=0, microsecond=0)


def _ceil_hour(dt: datetime) -> datetime:
    floor = _floor_hour(dt)
    return floor if floor == dt else floor + timedelta(hours=1)


@dataclass(slots=True)
class Plan:
    """Where the aggregates come from: a rollup for the whole hours/days of the range, raw events
    for partial hours at its edges (an arbitrary ``from``/``to`` touches at most two hours of raw)."""

    rollup: str | None  # "usage_daily" | "usage_hourly" | None
    rollup_start: datetime | None = None
    rollup_end: datetime | None = None
    raw_ranges: list[tuple[datetime | None, datetime | None]] = field(default_factory=list)

    @property
    def source(self) -> str:
        parts = [self.rollup] if self.rollup else []
        if self.raw_ranges:
            parts.append("usage_events")
        return "+".join(parts)


def plan_sources(query: UsageQuery) -> Plan:
    start, end = query.start, query.end
    if query.grain != "hour" and _aligned(start, "day") and _aligned(end, "day"):
        return Plan("usage_daily", start, end)
    if _aligned(start, "hour") and _aligned(end, "hour"):
        return Plan("usage_hourly", start, end)
    inner_start = _ceil_hour(start) if start is not None else None
    inner_end = _floor_hour(end) if end is not None else None
    if inner_start is not None and inner_end is not None and inner_start >= inner_end:
        return Plan(None, raw_ranges=[(start, end)])  # less than one whole hour
    edges = []
    if start is not None and start != inner_start:
        edges.append((start, inner_start))
    if end is not None and end != inner_end:
        edges.append((inner_end, end))
    return Plan("usage_hourly", inner_start, inner_end, edges)


def choose_source(query: UsageQuery) -> str:
    return plan_sources(query).source


def build_usage_sql(query: UsageQuery) -> tuple[str, dict, str]:
    """(SQL, bind params, aggregate source)."""
    plan = plan_sources(query)
    params: dict = {}
    for name, value in query.filters.items():
        params[f"f_{name}"] = value
    filters = [f"{name} = :f_{name}" for name in query.filters]

    def where(time_col: str, ranges: list[tuple[datetime | None, datetime | None]]) -> str:
        clauses = list(filters)
        alternatives = []
        for lo, hi in ranges:
            bounds = []
            if lo is not None:
                params[f"t{len(params)}"] = lo
                bounds.append(f"{time_col} >= :t{len(params) - 1}")
            if hi is not None:
                params[f"t{len(params)}"] = hi
                bounds.append(f"{time_col} < :t{len(params) - 1}")
            alternatives.append(" AND ".join(bounds) or "TRUE")
        if alternatives:
            clauses.append("(" + " OR ".join(f"({a})" for a in alternatives) + ")")
        return ("WHERE " + " AND ".join(clauses)) if clauses else ""

    def group_exprs(time_col: str) -> list[str]:
        exprs = []
        for group in query.group_by:
            if group in GROUP_COLUMNS:
                exprs.append(f"{GROUP_COLUMNS[group]} AS {GROUP_COLUMNS[group]}")
            else:
                exprs.append(f"date_trunc('{group}', {time_col}, 'UTC') AS bucket")
        return exprs

    n = len(query.group_by)
    group_by_clause = ("GROUP BY " + ", ".join(str(i + 1) for i in range(n))) if n else ""
    fields = query.fields
    order = ("ORDER BY " + ", ".join(f"q.{f}" for f in fields)) if n else ""
    token_sums = ", ".join(f"sum({t})::bigint AS {t}" for t in TOKEN_FIELDS)
    pct = (
        "percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms) AS lat, "
        "percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY ttfb_ms) AS ttfb"
    )
    whole_range = [(query.start, query.end)] if (query.start or query.end) else []

    raw_metrics = [
        "count(*)::bigint AS requests",
        "(count(*) FILTER (WHERE status = 'error'))::bigint AS errors",
        token_sums,
        "sum(cost_usd) AS cost_usd",
    ]
    if plan.rollup is None:
        # Raw events only (less than an hour): aggregates and percentiles in one pass.
        select = [*group_exprs("ts"), *raw_metrics] + ([pct] if query.percentiles else [])
        sql = (
            f"SELECT * FROM (SELECT {', '.join(select)} FROM metering.usage_events "
            f"{where('ts', whole_range)} {group_by_clause}) q {order}"
        )
        return sql, params, plan.source

    rollup_range = [(plan.rollup_start, plan.rollup_end)] if (plan.rollup_start or plan.rollup_end) else []
    rollup_metrics = [
        "sum(requests)::bigint AS requests",
        "sum(errors)::bigint AS errors",
        token_sums,
        "sum(cost_usd) AS cost_usd",
    ]
    agg = (
        f"SELECT {', '.join([*group_exprs('bucket'), *rollup_metrics])} FROM metering.{plan.rollup} "
        f"{where('bucket', rollup_range)} {group_by_clause}"
    )
    if plan.raw_ranges:
        edges = (
            f"SELECT {', '.join([*group_exprs('ts'), *raw_metrics])} FROM metering.usage_events "
            f"{where('ts', plan.raw_ranges)} {group_by_clause}"
        )
        outer_groups = ", ".join(fields)
        agg = (
            f"SELECT {outer_groups + ', ' if n else ''}sum(requests)::bigint AS requests, "
            f"sum(errors)::bigint AS errors, {', '.join(f'sum({t})::bigint AS {t}' for t in TOKEN_FIELDS)}, "
            f"sum(cost_usd) AS cost_usd FROM ({agg} UNION ALL {edges}) parts {group_by_clause}"
        )
    if not query.percentiles:
        return f"SELECT * FROM ({agg}) q {order}", params, plan.source
    pct_select = ", ".join([*group_exprs("ts"), pct])
    pct_sql = f"SELECT {pct_select} FROM metering.usage_events {where('ts', whole_range)} {group_by_clause}"
    join = " AND ".join(f"q.{f} = p.{f}" for f in fields) or "TRUE"
    sql = f"WITH q AS ({agg}), p AS ({pct_sql}) SELECT q.*, p.lat, p.ttfb FROM q LEFT JOIN p ON {join} {order}"
    return sql, params, plan.source


def _pct(values, index: int) -> float | None:
    if not values:
        return None
    value = values[index]
    return None if value is None else round(float(value), 3)


def row_to_dict(row, fields: list[str]) -> dict:
    mapping = row._mapping
    out: dict = {}
    for name in fields:
        value = mapping[name]
        out[name] = iso(value) if name == "bucket" else value
    out["requests"] = int(mapping["requests"] or 0)
    out["errors"] = int(mapping["errors"] or 0)
    for token in TOKEN_FIELDS:
        out[token] = int(mapping[token] or 0)
    out["cost_usd"] = mapping["cost_usd"] if mapping["cost_usd"] is not None else Decimal(0)
    lat = mapping.get("lat")
    ttfb = mapping.get("ttfb")
    out["latency_ms_p50"], out["latency_ms_p95"], out["latency_ms_p99"] = (_pct(lat, i) for i in range(3))
    out["ttfb_ms_p50"], out["ttfb_ms_p95"], out["ttfb_ms_p99"] = (_pct(ttfb, i) for i in range(3))
    return out


async def _set_timeout(conn, seconds: float) -> None:
    """Analyst queries run under a statement timeout (LLMGW_METERING_QUERY_TIMEOUT_SECONDS)."""
    await conn.execute(text(f"SET LOCAL statement_timeout = {int(seconds * 1000)}"))


async def usage_rows(engine: AsyncEngine, query: UsageQuery, timeout: float) -> list[dict]:
    sql, params, _ = build_usage_sql(query)
    async with engine.connect() as conn:
        await _set_timeout(conn, timeout)
        result = await conn.execute(text(sql), params)
        rows = [row_to_dict(r, query.fields) for r in result]
        await conn.rollback()
    return rows


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def usage_csv(
    engine: AsyncEngine, query: UsageQuery, timeout: float, chunk_rows: int = 1000
) -> AsyncIterator[bytes]:
    """Streams the CSV export from a server-side cursor, ``chunk_rows`` rows at a time.

    The first chunk (header + first rows) is produced only once the query runs, so a caller that
    awaits it before starting the response turns a failing query into a proper error answer.
    """
    sql, params, _ = build_usage_sql(query)
    columns = query.columns
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)

    def take() -> bytes:
        data = buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        return data

    async with engine.connect() as conn:
        await _set_timeout(conn, timeout)
        result = await conn.stream(text(sql), params)
        try:
            produced = False
            async for partition in result.partitions(chunk_rows):
                for row in partition:
                    record = row_to_dict(row, query.fields)
                    writer.writerow([_csv_value(record[c]) for c in columns])
                produced = True
                yield take()
            if not produced:
                yield take()  # header only
        finally:
            await result.close()
            await conn.rollback()


# --- raw events -------------------------------------------------------------------------------------


def encode_cursor(ts: datetime, event_id: str, order: str) -> str:
    raw = json.dumps([iso(ts), event_id, order], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, order: str) -> tuple[datetime, str]:
    if len(cursor) > 1000:
        raise invalid("invalid cursor")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        ts_text, event_id, cursor_order = json.loads(base64.urlsafe_b64decode(padded.encode()))
        ts = parse_instant("cursor", ts_text)
        if not isinstance(event_id, str) or ts is None or "\x00" in event_id or len(event_id) > 300:
            raise ValueError
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise invalid("invalid cursor") from None
    except Exception:  # noqa: BLE001 - anything else in a hand-made cursor (incl. our own 422s)
        raise invalid("invalid cursor") from None
    if cursor_order != order:
        raise invalid("the cursor belongs to a listing in the other order")
    return ts, event_id


@dataclass(slots=True)
class EventsQuery:
    filters: dict[str, str]
    start: datetime | None
    end: datetime | None
    limit: int
    order: str
    after: tuple[datetime, str] | None


def parse_events_query(params: Mapping[str, list[str]]) -> EventsQuery:
    filters = {}
    for name in FILTERS:
        value = _one(params, name)
        if value is not None:
            filters[name] = value
    if "status" in filters and filters["status"] not in STATUSES:
        raise invalid(f"'status' must be one of {', '.join(STATUSES)}")
    start = parse_instant("from", _one(params, "from"))
    end = parse_instant("to", _one(params, "to"))
    if start and end and start >= end:
        raise invalid("'from' must be before 'to'")
    limit_raw = _one(params, "limit")
    try:
        limit = 100 if limit_raw is None else int(limit_raw)
    except ValueError:
        raise invalid("'limit' must be an integer") from None
    if not 1 <= limit <= 1000:
        raise invalid("'limit' must be between 1 and 1000")
    order = (_one(params, "order") or "desc").lower()
    if order not in ("asc", "desc"):
        raise invalid("'order' must be asc or desc")
    cursor = _one(params, "cursor")
    after = decode_cursor(cursor, order) if cursor else None
    return EventsQuery(filters, start, end, limit, order, after)


def event_to_dict(row) -> dict:
    mapping = row._mapping
    out = {}
    for name in EVENT_COLUMNS:
        value = mapping[name]
        if isinstance(value, datetime):
            value = iso(value)
        out[name] = value
    return out


async def list_events(engine: AsyncEngine, query: EventsQuery, timeout: float) -> tuple[list[dict], str | None]:
    clauses = []
    params: dict = {"limit": query.limit + 1}
    for name, value in query.filters.items():
        clauses.append(f"{name} = :f_{name}")
        params[f"f_{name}"] = value
    if query.start is not None:
        clauses.append("ts >= :start")
        params["start"] = query.start
    if query.end is not None:
        clauses.append("ts < :end")
        params["end"] = query.end
    op, direction = ("<", "DESC") if query.order == "desc" else (">", "ASC")
    if query.after is not None:
        clauses.append(f"(ts, event_id) {op} (:c_ts, :c_id)")
        params["c_ts"], params["c_id"] = query.after
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    sql = (
        f"SELECT {', '.join(EVENT_COLUMNS)} FROM metering.usage_events {where} "
        f"ORDER BY ts {direction}, event_id {direction} LIMIT :limit"
    )
    async with engine.connect() as conn:
        await _set_timeout(conn, timeout)
        rows = list(await conn.execute(text(sql), params))
        await conn.rollback()
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    next_cursor = None
    if more and rows:
        last = rows[-1]._mapping
        next_cursor = encode_cursor(last["ts"], last["event_id"], query.order)
    return [event_to_dict(r) for r in rows], next_cursor


# --- per-key summary --------------------------------------------------------------------------------

PERIOD_PREFIX = {"d": "daily", "w": "weekly", "m": "monthly"}


async def key_totals(engine: AsyncEngine, key_id: str) -> dict:
    sums = ", ".join(f"coalesce(sum({t}), 0)::bigint AS {t}" for t in TOKEN_FIELDS)
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    f"""
                    SELECT coalesce(sum(requests), 0)::bigint AS requests, coalesce(sum(errors), 0)::bigint AS errors,
                           {sums}, coalesce(sum(cost_usd), 0) AS cost_usd, min(bucket) AS first_day
                    FROM metering.usage_daily WHERE key_id = :k
                    """
                ),
                {"k": key_id},
            )
        ).one()
        last = (
            await conn.execute(text("SELECT max(ts) FROM metering.usage_events WHERE key_id = :k"), {"k": key_id})
        ).scalar()
        latest_period = (
            await conn.execute(
                text("SELECT period_key FROM metering.budget_spend WHERE key_id = :k ORDER BY updated_at DESC LIMIT 1"),
                {"k": key_id},
            )
        ).scalar()
        await conn.rollback()
    mapping = dict(row._mapping)
    totals = {name: int(mapping[name]) for name in ("requests", "errors", *TOKEN_FIELDS)}
    totals["cost_usd"] = mapping["cost_usd"]
    totals["first_day"] = iso(mapping["first_day"])
    totals["last_event_at"] = iso(last)
    return {"totals": totals, "latest_period_key": latest_period}


async def period_spend(engine: AsyncEngine, key_id: str, period_key: str) -> dict:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT spend_usd, reserved_usd, requests, updated_at FROM metering.budget_spend "
                    "WHERE key_id = :k AND period_key = :p"
                ),
                {"k": key_id, "p": period_key},
            )
        ).first()
        await conn.rollback()
    if row is None:
        return {"spend_usd": Decimal(0), "requests": 0, "released_reserved_usd": Decimal(0), "updated_at": None}
    return {
        "spend_usd": row.spend_usd,
        "requests": int(row.requests),
        "released_reserved_usd": row.reserved_usd,
        "updated_at": iso(row.updated_at),
    }
