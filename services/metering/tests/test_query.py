"""Analyst REST against hand-computed expectations: every group_by combination, filters, time
ranges served from each source (daily/hourly rollups, raw events), CSV, pagination, key summary."""

from __future__ import annotations

import csv
import io
import itertools
import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from helpers import AUTH, event, new_key, publish, wait_for
from llmgw_common.pricing import Pricer
from llmgw_metering.services.usage_query import build_usage_sql, parse_usage_query

GROUPS = {"key": "key_id", "project": "project", "model": "model", "provider": "provider"}
TOKENS = (
    "prompt_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "total_tokens",
)
MODELS = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5")]
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
# two months, several days, several hours, minutes inside hours
BASE = (NOW - timedelta(days=35)).replace(hour=0)


def _dataset():
    rnd = random.Random(7)
    keys = [new_key(), new_key()]
    projects = ["proj-" + keys[0][-4:], "proj-" + keys[1][-4:]]
    events = []
    for _ in range(240):
        provider, model = MODELS[rnd.randrange(3)]
        k = rnd.randrange(2)
        ts = BASE + timedelta(
            days=rnd.choice([0, 1, 2, 20, 34, 35]), hours=rnd.randrange(24), minutes=rnd.randrange(60)
        )
        ts = min(ts, NOW - timedelta(minutes=1))
        status = rnd.choice(["ok"] * 8 + ["error", "incomplete"])
        prompt = rnd.randint(0, 5000)
        cached = rnd.randint(0, prompt // 2)
        write = rnd.randint(0, (prompt - cached) // 3) if provider == "anthropic" else 0
        completion = rnd.randint(0, 800)
        events.append(
            event(
                key_id=keys[k],
                project=projects[k] if rnd.random() < 0.8 else projects[1 - k],
                provider=provider,
                model=model,
                ts=ts + timedelta(seconds=rnd.randrange(60), microseconds=rnd.randrange(10**6)),
                status=status,
                status_code=200 if status != "error" else 502,
                prompt_tokens=prompt,
                cached_tokens=cached,
                cache_write_tokens=write,
                completion_tokens=completion,
                reasoning_tokens=rnd.randint(0, completion),
                total_tokens=prompt + completion,
                latency_ms=round(rnd.uniform(10, 3000), 3),
                ttfb_ms=None if rnd.random() < 0.2 else round(rnd.uniform(5, 500), 3),
                cached=rnd.random() < 0.05,
            )
        )
    return keys, projects, events


KEYS, PROJECTS, EVENTS = _dataset()
PRICER = Pricer()


def cost_of(ev) -> Decimal:
    if ev.cached:
        return Decimal(0)
    return PRICER.price(
        ev.provider,
        ev.upstream_model or ev.model,
        prompt_tokens=ev.prompt_tokens,
        cached_tokens=ev.cached_tokens,
        cache_write_tokens=ev.cache_write_tokens,
        completion_tokens=ev.completion_tokens,
        aliases=(ev.model,),
        at=ev.ts,
    ).cost_usd


def bucket(ts: datetime, grain: str) -> str:
    if grain == "hour":
        ts = ts.replace(minute=0, second=0, microsecond=0)
    elif grain == "day":
        ts = ts.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        ts = ts.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def percentile_cont(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    pos = p * (len(values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def expected(group_by: list[str], start=None, end=None, **filters) -> list[dict]:
    groups: dict[tuple, list] = defaultdict(list)
    for ev in EVENTS:
        if start is not None and ev.ts < start or end is not None and ev.ts >= end:
            continue
        if any(getattr(ev, name) != value for name, value in filters.items()):
            continue
        key = tuple(getattr(ev, GROUPS[g]) if g in GROUPS else bucket(ev.ts, g) for g in group_by)
        groups[key].append(ev)
    rows = []
    for key, evs in sorted(groups.items()):
        row = {(GROUPS.get(g, "bucket")): value for g, value in zip(group_by, key, strict=True)}
        row["requests"] = len(evs)
        row["errors"] = sum(1 for e in evs if e.status == "error")
        for t in TOKENS:
            row[t] = sum(getattr(e, t) for e in evs)
        row["cost_usd"] = sum((cost_of(e) for e in evs), Decimal(0))
        lat = [e.latency_ms for e in evs]
        ttfb = [e.ttfb_ms for e in evs if e.ttfb_ms is not None]
        for name, values in (("latency_ms", lat), ("ttfb_ms", ttfb)):
            for p, label in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
                row[f"{name}_{label}"] = percentile_cont(values, p)
        rows.append(row)
    if not group_by and not rows:
        rows = [{**{k: 0 for k in ("requests", "errors", *TOKENS)}, "cost_usd": Decimal(0)}]
    return rows


def assert_rows_equal(actual: list[dict], wanted: list[dict], context: str) -> None:
    assert len(actual) == len(wanted), f"{context}: {len(actual)} rows, expected {len(wanted)}"
    for got, exp in zip(actual, wanted, strict=True):
        for name, value in exp.items():
            if name.endswith(("_p50", "_p95", "_p99")):
                if value is None:
                    assert got[name] is None, (context, name)
                else:
                    assert float(got[name]) == pytest.approx(value, abs=0.002), (context, name)
            else:
                assert got[name] == value, (context, name, got, exp)


async def get_usage(client, **params) -> dict:
    response = await client.get("/v1/usage", params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    return json.loads(response.text, parse_float=Decimal)


@pytest.fixture(scope="module")
async def loaded(client, nc):
    await publish(nc, EVENTS)

    async def all_in():
        data = (await get_usage(client, group_by="key"))["data"]
        return sum(r["requests"] for r in data if r["key_id"] in KEYS) == len(EVENTS)

    await wait_for(all_in, timeout=30, what="dataset ingested")
    return client


def _order(rows: list[dict], fields: list[str]) -> list[dict]:
    return sorted(rows, key=lambda r: tuple(r[f] for f in fields))


DIM_SUBSETS = [list(c) for n in range(5) for c in itertools.combinations(GROUPS, n)]
TIME_OPTIONS = [None, "hour", "day", "month"]


@pytest.mark.parametrize("time_grain", TIME_OPTIONS)
async def test_every_group_by_combination(loaded, time_grain):
    client = loaded
    for dims in DIM_SUBSETS:
        group_by = dims + ([time_grain] if time_grain else [])
        body = await get_usage(client, group_by=",".join(group_by))
        assert body["group_by"] == group_by
        fields = [GROUPS.get(g, "bucket") for g in group_by]
        assert_rows_equal(body["data"], _order(expected(group_by), fields), f"group_by={group_by}")
        # rows come back ordered by the group fields, in group_by order
        assert body["data"] == _order(body["data"], fields)


async def test_group_by_order_and_key_field_names(loaded):
    body = await get_usage(loaded, group_by="day,key,model")
    assert list(body["data"][0])[:3] == ["bucket", "key_id", "model"]
    assert body["data"][0]["bucket"].endswith("T00:00:00Z")


@pytest.mark.parametrize(
    "filters",
    [
        {"key_id": KEYS[0]},
        {"project": PROJECTS[1]},
        {"model": "gpt-4o-mini"},
        {"provider": "anthropic"},
        {"status": "error"},
        {"key_id": KEYS[1], "model": "gpt-4o", "status": "ok"},
    ],
)
async def test_filters(loaded, filters):
    for group_by in (["model"], ["key", "day"], []):
        body = await get_usage(loaded, group_by=",".join(group_by), **filters)
        fields = [GROUPS.get(g, "bucket") for g in group_by]
        assert_rows_equal(body["data"], _order(expected(group_by, **filters), fields), f"{filters} {group_by}")


@pytest.mark.parametrize(
    "start,end,source",
    [
        (BASE + timedelta(days=1), BASE + timedelta(days=34), "usage_daily"),
        (BASE + timedelta(days=1, hours=5), BASE + timedelta(days=34, hours=13), "usage_hourly"),
        (
            BASE + timedelta(days=1, hours=5, minutes=17),
            BASE + timedelta(days=34, hours=13, seconds=1),
            "usage_hourly+usage_events",
        ),
        (BASE + timedelta(days=1, hours=5, minutes=1), BASE + timedelta(days=1, hours=6, minutes=59), "usage_events"),
        (BASE + timedelta(days=2, hours=7, minutes=3), BASE + timedelta(days=2, hours=7, minutes=58), "usage_events"),
        (BASE + timedelta(days=20, hours=3), None, "usage_hourly"),
        (None, BASE + timedelta(days=2), "usage_daily"),
    ],
)
async def test_time_ranges_from_each_source(loaded, start, end, source):
    params = {}
    if start is not None:
        params["from"] = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    if end is not None:
        params["to"] = end.strftime("%Y-%m-%dT%H:%M:%S")  # no offset: UTC
    for group_by in (["key", "model", "day"], ["provider"], [], ["hour"], ["month"]):
        query = parse_usage_query({**{k: [v] for k, v in params.items()}, "group_by": [",".join(group_by)]})
        _, _, chosen = build_usage_sql(query)
        if "hour" not in group_by or source != "usage_daily":
            assert chosen == source, (group_by, chosen)
        body = await get_usage(loaded, group_by=",".join(group_by), **params)
        assert body["from"] == (start.strftime("%Y-%m-%dT%H:%M:%SZ") if start else None)
        fields = [GROUPS.get(g, "bucket") for g in group_by]
        assert_rows_equal(body["data"], _order(expected(group_by, start, end), fields), f"{params} {group_by}")


async def test_percentiles_can_be_skipped(loaded):
    body = await get_usage(loaded, group_by="model", percentiles="false")
    assert all(row["latency_ms_p50"] is None for row in body["data"])
    assert_rows_equal(
        body["data"],
        [{k: v for k, v in r.items() if not k.endswith(("p50", "p95", "p99"))} for r in expected(["model"])],
        "no percentiles",
    )


@pytest.mark.parametrize("group_by", ["key,model,day", "project,provider", "hour", ""])
async def test_csv_parses_back_to_the_json_rows(loaded, group_by):
    client = loaded
    body = await get_usage(client, group_by=group_by)
    response = await client.get("/v1/usage", params={"group_by": group_by, "format": "csv"}, headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    reader = csv.DictReader(io.StringIO(response.text))
    rows = list(reader)
    assert len(rows) == len(body["data"])
    assert reader.fieldnames == list(body["data"][0].keys())
    for csv_row, json_row in zip(rows, body["data"], strict=True):
        for name, value in json_row.items():
            text = csv_row[name]
            if value is None:
                assert text == ""
            elif isinstance(value, int):
                assert int(text) == value
            elif isinstance(value, Decimal):
                assert Decimal(text) == value
            else:
                assert text == str(value)


async def test_csv_export_streams_in_chunks(migrated):
    """The CSV is produced from a server-side cursor, chunk by chunk (never the whole result at once)."""
    from llmgw_metering.db import create_engine
    from llmgw_metering.services.usage_query import usage_csv

    engine = create_engine(migrated, pool_size=1)
    try:
        query = parse_usage_query({"group_by": ["key,model,hour"]})
        chunks = [chunk async for chunk in usage_csv(engine, query, 30, chunk_rows=5)]
    finally:
        await engine.dispose()
    rows = len(expected(["key", "model", "hour"]))
    assert len(chunks) == -(-rows // 5)  # header travels with the first rows
    assert sum(chunk.count(b"\n") for chunk in chunks) == rows + 1


async def test_events_pagination_is_stable_and_complete(loaded):
    client = loaded
    for order in ("desc", "asc"):
        seen, cursor, pages = [], None, 0
        while True:
            params = {"key_id": KEYS[0], "limit": 7, "order": order}
            if cursor:
                params["cursor"] = cursor
            response = await client.get("/v1/usage/events", params=params, headers=AUTH)
            assert response.status_code == 200, response.text
            page = response.json()
            seen.extend(page["data"])
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        mine = [e for e in EVENTS if e.key_id == KEYS[0]]
        assert len(seen) == len(mine) and pages == -(-len(mine) // 7)
        assert {e["event_id"] for e in seen} == {e.event_id for e in mine}
        keys = [(e["ts"], e["event_id"]) for e in seen]
        assert keys == sorted(keys, reverse=order == "desc")


async def test_key_summary_totals(loaded):
    response = await loaded.get(f"/v1/usage/keys/{KEYS[1]}", headers=AUTH)
    assert response.status_code == 200
    body = json.loads(response.text, parse_float=Decimal)
    exp = expected([], key_id=KEYS[1])[0]
    for name in ("requests", "errors", *TOKENS, "cost_usd"):
        assert body["totals"][name] == exp[name], name
    assert body["budget_period"] is None  # no budget_period_key on these events
    unknown = (await loaded.get("/v1/usage/keys/key_never_seen", headers=AUTH)).json()
    assert unknown["totals"]["requests"] == 0


@pytest.mark.parametrize(
    "path,params,needle",
    [
        ("/v1/usage", {"group_by": "key,tenant"}, "tenant"),
        ("/v1/usage", {"group_by": "hour,day"}, "only one"),
        ("/v1/usage", {"group_by": "key,key"}, "twice"),
        ("/v1/usage", {"from": "yesterday"}, "from"),
        ("/v1/usage", {"to": "2026-13-01"}, "to"),
        ("/v1/usage", {"from": "2026-02-01", "to": "2026-01-01"}, "before"),
        ("/v1/usage", {"status": "failed"}, "status"),
        ("/v1/usage", {"format": "xml"}, "format"),
        ("/v1/usage", {"percentiles": "maybe"}, "percentiles"),
        ("/v1/usage/events", {"limit": "0"}, "limit"),
        ("/v1/usage/events", {"limit": "many"}, "limit"),
        ("/v1/usage/events", {"cursor": "not-a-cursor"}, "cursor"),
        ("/v1/usage/events", {"order": "sideways"}, "order"),
        ("/v1/usage/keys/k1", {"period": "yearly"}, "period"),
        ("/v1/usage/keys/%00", {}, "NUL"),
        ("/v1/usage", {"key_id": "a\x00b"}, "NUL"),
        ("/v1/usage", {"project": "p" * 5000}, "longer"),
        ("/v1/usage", {"from": "9999-12-31T23:30:00-14:00"}, "from"),
        ("/v1/usage", {"from": "0001-01-01"}, "range"),
        ("/v1/usage/events", {"key_id": "\x00"}, "NUL"),
    ],
)
async def test_bad_parameters_are_422(loaded, path, params, needle):
    response = await loaded.get(path, params=params, headers=AUTH)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert needle in error["message"]


async def test_offsets_in_from_to_are_honoured(loaded):
    start = BASE + timedelta(days=1)
    local = start.astimezone(__import__("datetime").timezone(timedelta(hours=2)))
    a = await get_usage(loaded, **{"from": start.strftime("%Y-%m-%dT%H:%M:%SZ")})
    b = await get_usage(loaded, **{"from": local.isoformat()})
    assert a["data"] == b["data"] and a["from"] == b["from"]
