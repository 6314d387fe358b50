"""Analyst REST: ``GET /v1/usage``, ``/v1/usage/events``, ``/v1/usage/keys/{key_id}`` (analyst or admin)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream

from llmgw_common.contract import budget_kv_key, budget_period_key
from llmgw_metering.auth import require_reader
from llmgw_metering.controllers.examples import AUTH_ERRORS, EVENT_EXAMPLE, INVALID, KEY_EXAMPLE, USAGE_EXAMPLE
from llmgw_metering.errors import invalid
from llmgw_metering.ingest.budget import read_state
from llmgw_metering.schemas import EventsResponse, KeyUsageResponse, UsageResponse, json_response
from llmgw_metering.services import usage_query as uq


def _params(request: Request) -> dict[str, list[str]]:
    return {key: request.query_params.getall(key) for key in request.query_params.keys()}


class UsageController(Controller):
    path = "/v1/usage"
    guards = [require_reader]
    tags = ["usage"]

    @get(
        "/",
        summary="Aggregated usage",
        description=(
            "Requests, errors, tokens and exact cost, grouped by any of key, project, model, provider and one "
            "time bucket (hour, day, month; UTC). `from` is inclusive, `to` exclusive (ISO 8601, UTC when no "
            "offset; open when absent). Latency/TTFB percentiles are computed from the raw events of the range "
            "(`percentiles=false` skips them). `format=csv` streams a CSV with the same columns."
        ),
        responses={
            200: ResponseSpec(
                data_container=UsageResponse,
                description="Usage rows (JSON), or text/csv with format=csv",
                generate_examples=False,
                examples=[Example(summary="group_by=key,model,day", value=USAGE_EXAMPLE)],
            ),
            **INVALID,
            **AUTH_ERRORS,
        },
    )
    async def usage(
        self,
        request: Request,
        state: State,
        group_by: Annotated[
            str | None,
            QueryParameter(
                description="comma-separated: key, project, model, provider, hour, day, month",
                examples=[Example(value="key,model,day")],
            ),
        ] = None,
        from_: Annotated[
            str | None,
            QueryParameter(
                name="from", description="inclusive start, ISO 8601", examples=[Example(value="2026-11-01")]
            ),
        ] = None,
        to: Annotated[
            str | None,
            QueryParameter(description="exclusive end, ISO 8601", examples=[Example(value="2026-12-01T00:00:00Z")]),
        ] = None,
        key_id: Annotated[str | None, QueryParameter(description="only this key")] = None,
        project: Annotated[str | None, QueryParameter(description="only this project")] = None,
        model: Annotated[str | None, QueryParameter(description="only this (public) model name")] = None,
        provider: Annotated[str | None, QueryParameter(description="only this provider")] = None,
        status: Annotated[str | None, QueryParameter(description="ok, error or incomplete")] = None,
        percentiles: Annotated[str | None, QueryParameter(description="false: skip latency/ttfb percentiles")] = None,
        format_: Annotated[str | None, QueryParameter(name="format", description="json (default) or csv")] = None,
    ) -> Response:
        params = _params(request)
        query = uq.parse_usage_query(params)
        fmt = (format_ or "json").lower()
        if fmt not in ("json", "csv"):
            raise invalid("'format' must be json or csv")
        settings = state.settings
        if fmt == "csv":
            chunks = uq.usage_csv(state.engine, query, settings.metering_query_timeout_seconds)
            first = await anext(chunks)  # runs the query: its errors still become a JSON error answer

            async def body():
                yield first
                async for chunk in chunks:
                    yield chunk

            return Stream(
                body(),
                media_type="text/csv",
                headers={"content-disposition": 'attachment; filename="usage.csv"'},
            )
        rows = await uq.usage_rows(state.engine, query, settings.metering_query_timeout_seconds)
        return json_response(
            {"data": rows, "group_by": query.group_by, "from": uq.iso(query.start), "to": uq.iso(query.end)}
        )

    @get(
        "/events",
        summary="Raw usage events, newest first, cursor-paginated",
        description=(
            "Stable keyset pagination on (ts, event_id): pass `next_cursor` back as `cursor` until it is null. "
            "`order=asc` lists oldest first."
        ),
        responses={
            200: ResponseSpec(
                data_container=EventsResponse,
                description="One page of events",
                generate_examples=False,
                examples=[
                    Example(summary="a page", value={"data": [EVENT_EXAMPLE], "next_cursor": "WyIyMDI2LTExLTIz..."})
                ],
            ),
            **INVALID,
            **AUTH_ERRORS,
        },
    )
    async def events(
        self,
        request: Request,
        state: State,
        key_id: Annotated[str | None, QueryParameter(description="only this key")] = None,
        limit: Annotated[str | None, QueryParameter(description="1..1000, default 100")] = None,
        cursor: Annotated[str | None, QueryParameter(description="next_cursor of the previous page")] = None,
        from_: Annotated[str | None, QueryParameter(name="from", description="inclusive start, ISO 8601")] = None,
        to: Annotated[str | None, QueryParameter(description="exclusive end, ISO 8601")] = None,
        order: Annotated[str | None, QueryParameter(description="desc (default) or asc")] = None,
    ) -> Response:
        query = uq.parse_events_query(_params(request))
        data, next_cursor = await uq.list_events(state.engine, query, state.settings.metering_query_timeout_seconds)
        return json_response({"data": data, "next_cursor": next_cursor})

    @get(
        "/keys/{key_id:str}",
        summary="A key's totals and its current budget-period spend",
        description=(
            "Totals over all retained rollups, and the spend of the key's current budget period: from the ledger "
            "(`spend_usd`) and as the proxies see it in the budget KV bucket (`kv`). The period type is the one "
            "of the key's latest events, or `period=daily|weekly|monthly`."
        ),
        responses={
            200: ResponseSpec(
                data_container=KeyUsageResponse,
                description="Totals and budget spend",
                generate_examples=False,
                examples=[Example(summary="a key with a monthly budget", value=KEY_EXAMPLE)],
            ),
            **INVALID,
            **AUTH_ERRORS,
        },
    )
    async def key_usage(
        self,
        state: State,
        key_id: FromPath[str],
        period: Annotated[
            str | None, QueryParameter(description="daily, weekly or monthly (default: detected)")
        ] = None,
    ) -> Response:
        if period is not None and period not in ("daily", "weekly", "monthly"):
            raise invalid("'period' must be daily, weekly or monthly")
        key_id = uq.clean_text("key_id", key_id)
        summary = await uq.key_totals(state.engine, key_id)
        latest = summary["latest_period_key"]
        budget = None
        current = None
        kind = period
        if kind is not None:
            current = budget_period_key(kind, datetime.now(UTC))
        elif latest == "all":
            current = "all"
        elif latest:
            kind = uq.PERIOD_PREFIX.get(latest[:1])
            if kind is not None:
                current = budget_period_key(kind, datetime.now(UTC))
        if current is not None:
            spend = await uq.period_spend(state.engine, key_id, current)
            kv_state = None
            kv = getattr(state, "budget_kv", None)
            if kv is not None:
                try:
                    entry, revision = await read_state(kv, budget_kv_key(key_id, current))
                    if entry is not None:
                        kv_state = {
                            "spend_usd": entry.spend_usd,
                            "reserved_usd": entry.reserved_usd,
                            "revision": revision,
                        }
                except Exception:  # noqa: BLE001 - NATS away: the ledger figure still answers
                    kv_state = None
            budget = {"period": kind, "period_key": current, **spend, "kv": kv_state}
        return json_response({"key_id": key_id, "totals": summary["totals"], "budget_period": budget})
