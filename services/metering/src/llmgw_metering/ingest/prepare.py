"""Turn fetched JetStream messages into database rows (decode, validate, price) or dead letters."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from operator import attrgetter

import msgspec
from nats.aio.msg import Msg

from llmgw_common.contract import CONTRACT_VERSION, UsageEvent, usage_event_decoder
from llmgw_common.pricing import Pricer

#: column order of the COPY into the per-connection staging table (and of each row tuple)
COLUMNS: tuple[str, ...] = (
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
    "prompt_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "total_tokens",
    "latency_ms",
    "ttfb_ms",
    "upstream_latency_ms",
    "reserved_usd",
    "budget_period_key",
    "v",
    "cost_usd",
    "price_known",
    "price_version",
)

#: the event's values in COLUMNS order (one C call; a field added to the contract later is simply
#: not stored until a migration adds its column)
_event_values = attrgetter(*COLUMNS[:-3])
_TS = COLUMNS.index("ts")

INT32_MAX = 2**31 - 1
MAX_ID_LEN = 256
CACHE_HIT_PRICE_VERSION = "cache-hit"
ZERO = Decimal(0)


class _VersionOnly(msgspec.Struct):
    v: int = CONTRACT_VERSION


_version_decoder = msgspec.json.Decoder(_VersionOnly)


@dataclass(slots=True)
class Prepared:
    msgs: list[Msg]
    #: rows for the database, with the index (into ``msgs``) of the message each came from
    rows: list[tuple] = field(default_factory=list)
    row_msg: list[int] = field(default_factory=list)
    #: (index into msgs, reason code, detail) for messages that can never be stored
    dead: list[tuple[int, str, str]] = field(default_factory=list)
    months: set[int] = field(default_factory=set)
    unpriced: int = 0
    #: per-message consume spans (only when tracing is on)
    spans: list = field(default_factory=list)
    links: list = field(default_factory=list)


def _dead_reason(data: bytes, exc: Exception) -> tuple[str, str]:
    try:
        version = _version_decoder.decode(data).v
    except (msgspec.DecodeError, msgspec.ValidationError):
        try:
            msgspec.json.decode(data)
        except msgspec.DecodeError:
            return "invalid_json", str(exc)
        return "schema_mismatch", str(exc)
    if version != CONTRACT_VERSION:
        return "unsupported_version", f"v={version}, this consumer understands v={CONTRACT_VERSION}"
    return "schema_mismatch", str(exc)


_INT_FIELDS = (
    "prompt_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "total_tokens",
    "attempts",
    "status_code",
)
_FLOAT_FIELDS = ("latency_ms", "ttfb_ms", "upstream_latency_ms", "reserved_usd")


def _check(event: UsageEvent, ts: datetime, data: bytes, oldest: datetime, newest: datetime) -> tuple[str, str] | None:
    if event.v != CONTRACT_VERSION:
        return "unsupported_version", f"v={event.v}, this consumer understands v={CONTRACT_VERSION}"
    if not event.event_id or len(event.event_id) > MAX_ID_LEN:
        return "invalid_event", "event_id empty or too long"
    if b"\\u0000" in data:
        return "invalid_event", "NUL character in a string field"
    if ts < oldest:
        return "expired", f"ts {ts.isoformat()} is older than the raw-event retention"
    if ts > newest:
        return "invalid_event", f"ts {ts.isoformat()} is too far in the future"
    e = event
    # one chained comparison per field: the common (valid) case stays cheap
    if not (
        0 <= e.prompt_tokens <= INT32_MAX
        and 0 <= e.cached_tokens <= INT32_MAX
        and 0 <= e.cache_write_tokens <= INT32_MAX
        and 0 <= e.completion_tokens <= INT32_MAX
        and 0 <= e.reasoning_tokens <= INT32_MAX
        and 0 <= e.total_tokens <= INT32_MAX
        and 0 <= e.attempts <= INT32_MAX
        and 0 <= e.status_code <= INT32_MAX
    ):
        for name in _INT_FIELDS:
            value = getattr(e, name)
            if not 0 <= value <= INT32_MAX:
                return "invalid_event", f"{name}={value} out of range"
    # NaN fails every comparison, inf fails the upper bound
    if not (
        0 <= e.latency_ms < math.inf
        and 0 <= e.reserved_usd < math.inf
        and (e.ttfb_ms is None or 0 <= e.ttfb_ms < math.inf)
        and (e.upstream_latency_ms is None or 0 <= e.upstream_latency_ms < math.inf)
    ):
        for name in _FLOAT_FIELDS:
            value = getattr(e, name)
            if value is not None and not 0 <= value < math.inf:
                return "invalid_event", f"{name}={value} out of range"
    return None


def prepare(
    msgs: list[Msg],
    pricer: Pricer,
    *,
    retention_days: int,
    max_future_seconds: float,
    now: datetime | None = None,
) -> Prepared:
    now = now or datetime.now(UTC)
    oldest = now - timedelta(days=retention_days)
    newest = now + timedelta(seconds=max_future_seconds)
    out = Prepared(msgs=msgs)
    rows = out.rows
    row_msg = out.row_msg
    months = out.months
    decode = usage_event_decoder.decode
    price = pricer.price
    for index, msg in enumerate(msgs):
        data = msg.data
        try:
            event = decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            reason, detail = _dead_reason(data, exc)
            out.dead.append((index, reason, detail))
            continue
        ts = event.ts
        tz = ts.tzinfo
        if tz is None:  # the contract says UTC
            ts = ts.replace(tzinfo=UTC)
        elif tz is not UTC:
            ts = ts.astimezone(UTC)
        problem = _check(event, ts, data, oldest, newest)
        if problem is not None:
            out.dead.append((index, *problem))
            continue
        if event.cached:
            cost, known, version = ZERO, True, CACHE_HIT_PRICE_VERSION
        else:
            try:
                p = price(
                    event.provider,
                    event.upstream_model or event.model,
                    prompt_tokens=event.prompt_tokens,
                    cached_tokens=event.cached_tokens,
                    cache_write_tokens=event.cache_write_tokens,
                    completion_tokens=event.completion_tokens,
                    aliases=(event.model,),
                    at=ts,
                )
            except (ValueError, ArithmeticError) as exc:
                out.dead.append((index, "invalid_event", f"unpriceable usage: {exc}"))
                continue
            cost, known, version = p.cost_usd, p.known, p.price_version
            if not known:
                out.unpriced += 1
        months.add(ts.year * 12 + ts.month - 1)
        row = _event_values(event)
        if ts is not event.ts:
            row = (*row[:_TS], ts, *row[_TS + 1 :])
        rows.append((*row, cost, known, version))
        row_msg.append(index)
    return out
