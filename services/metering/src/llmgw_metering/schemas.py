"""Request bodies and documented response shapes (for /schema); JSON encoding with exact decimals."""

from __future__ import annotations

from decimal import Decimal

import msgspec
from litestar import Response

#: cost_usd and prices are written as JSON numbers with every digit of the exact decimal
json_encoder = msgspec.json.Encoder(decimal_format="number")


def json_response(content, status_code: int = 200) -> Response:
    return Response(content=json_encoder.encode(content), status_code=status_code, media_type="application/json")


class ErrorDetail(msgspec.Struct):
    type: str
    message: str


class ErrorResponse(msgspec.Struct):
    error: ErrorDetail


class UsageRow(msgspec.Struct, omit_defaults=True):
    requests: int
    errors: int
    prompt_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    total_tokens: int
    cost_usd: float
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    latency_ms_p99: float | None
    ttfb_ms_p50: float | None
    ttfb_ms_p95: float | None
    ttfb_ms_p99: float | None
    key_id: str | None = None
    project: str | None = None
    model: str | None = None
    provider: str | None = None
    #: UTC start of the hour/day/month (ISO 8601) when grouped by time
    bucket: str | None = None


class UsageResponse(msgspec.Struct, rename={"from_": "from"}):
    data: list[UsageRow]
    group_by: list[str]
    from_: str | None
    to: str | None


class UsageEventOut(msgspec.Struct):
    event_id: str
    request_id: str
    ts: str
    key_id: str
    project: str
    provider: str
    model: str
    upstream_model: str
    deployment: str
    endpoint: str
    streamed: bool
    status: str
    status_code: int
    error_type: str | None
    attempts: int
    cached: bool
    prompt_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    total_tokens: int
    latency_ms: float
    ttfb_ms: float | None
    upstream_latency_ms: float | None
    reserved_usd: float
    budget_period_key: str | None
    v: int
    cost_usd: float
    price_known: bool
    price_version: str
    ingested_at: str


class EventsResponse(msgspec.Struct):
    data: list[UsageEventOut]
    next_cursor: str | None


class KeyTotals(msgspec.Struct):
    requests: int
    errors: int
    prompt_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    total_tokens: int
    cost_usd: float
    first_day: str | None
    last_event_at: str | None


class BudgetKvState(msgspec.Struct):
    spend_usd: float
    reserved_usd: float
    revision: int


class BudgetPeriodSpend(msgspec.Struct):
    period: str | None
    period_key: str
    spend_usd: float
    requests: int
    released_reserved_usd: float
    updated_at: str | None
    kv: BudgetKvState | None


class KeyUsageResponse(msgspec.Struct):
    key_id: str
    totals: KeyTotals
    budget_period: BudgetPeriodSpend | None


class PriceOverrideIn(msgspec.Struct, forbid_unknown_fields=True):
    """USD per million tokens. ``cached_input``/``cache_write`` default to the input price."""

    input_usd_per_mtok: Decimal
    output_usd_per_mtok: Decimal
    cached_input_usd_per_mtok: Decimal | None = None
    cache_write_usd_per_mtok: Decimal | None = None
    #: restrict to one gateway provider name; null = every provider
    provider: str | None = None
    note: str = ""


class PriceOverrideOut(msgspec.Struct):
    model: str
    provider: str | None
    input_usd_per_mtok: float
    cached_input_usd_per_mtok: float | None
    cache_write_usd_per_mtok: float | None
    output_usd_per_mtok: float
    note: str
    created_at: str
    updated_at: str


class PriceOverrideList(msgspec.Struct):
    data: list[PriceOverrideOut]


class PriceQuote(msgspec.Struct):
    provider: str
    model: str
    cost_usd: float
    known: bool
    price_version: str
