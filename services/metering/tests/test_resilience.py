"""Faults and volume: PostgreSQL restart mid-ingest, NATS restart, a 100k-event backlog, graceful
shutdown with batches in hand. Exact totals every time: no loss, no double count."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from helpers import event, new_key, publish, wait_for
from llmgw_common.contract import STREAM_USAGE, UsageEvent, encode, usage_subject
from llmgw_metering.db import create_engine

log = logging.getLogger(__name__)


async def db_totals(settings, key_ids: list[str]) -> tuple[int, int, int]:
    """(events, sum of prompt tokens, rollup requests) straight from the tables."""
    engine = create_engine(settings, pool_size=1)
    try:
        async with engine.connect() as conn:
            events, tokens = (
                await conn.execute(
                    text(
                        "SELECT count(*), coalesce(sum(prompt_tokens), 0) FROM metering.usage_events "
                        "WHERE key_id = ANY(:k)"
                    ),
                    {"k": key_ids},
                )
            ).one()
            rolled = (
                await conn.execute(
                    text("SELECT coalesce(sum(requests), 0) FROM metering.usage_hourly WHERE key_id = ANY(:k)"),
                    {"k": key_ids},
                )
            ).scalar()
            return int(events), int(tokens), int(rolled)
    finally:
        await engine.dispose()


async def fast_publish(nc, events: list[UsageEvent], chunk: int = 5000) -> None:
    """Publish a big backlog: core publishes captured by the stream, flushed per chunk."""
    js = nc.jetstream()
    base = (await js.stream_info(STREAM_USAGE)).state.messages
    for start in range(0, len(events), chunk):
        for ev in events[start : start + chunk]:
            await nc.publish(usage_subject(ev.provider), encode(ev), headers={"Nats-Msg-Id": ev.event_id})
        await nc.flush()
    await wait_for(lambda: _stream_has(js, base + len(events)), timeout=60, what="backlog stored in the stream")


async def _stream_has(js, n):
    return (await js.stream_info(STREAM_USAGE)).state.messages >= n


def bulk_events(key_ids: list[str], n: int) -> list[UsageEvent]:
    now = datetime.now(UTC)
    return [
        UsageEvent(
            event_id=uuid.uuid4().hex,
            request_id=f"r{i}",
            ts=now - timedelta(seconds=i % 3600),
            key_id=key_ids[i % len(key_ids)],
            project="bulk",
            provider="openai",
            model="gpt-4o-mini" if i % 3 else "gpt-4o",
            endpoint="/v1/chat/completions",
            prompt_tokens=i % 1000 + 1,
            completion_tokens=i % 100,
            total_tokens=i % 1000 + 1 + i % 100,
            latency_ms=float(i % 500),
        )
        for i in range(n)
    ]


async def test_postgres_restart_mid_ingest_loses_and_duplicates_nothing(client, nc, migrated, embedded_postgres):
    keys = [new_key() for _ in range(5)]
    events = bulk_events(keys, 20_000)
    await fast_publish(nc, events[:10_000])

    async def some_stored():
        n, _, _ = await db_totals(migrated, keys)
        return n > 0

    await wait_for(some_stored, timeout=30, what="ingest under way")
    embedded_postgres.restart()  # stop (in-flight transactions roll back) and start again
    await fast_publish(nc, events[10_000:])

    expected_tokens = sum(e.prompt_tokens for e in events)

    async def complete():
        n, tokens, rolled = await db_totals(migrated, keys)
        assert n <= len(events) and rolled <= len(events), (n, rolled)
        return (n, tokens, rolled) == (len(events), expected_tokens, len(events))

    await wait_for(complete, timeout=60, interval=0.25, what="every event exactly once")
    assert client.app.state.consumer.alive
    assert (await client.get("/readyz")).status_code == 200


async def test_nats_restart_is_survived(client, nc, migrated, embedded_nats):
    key = new_key()
    first = [event(key_id=key) for _ in range(50)]
    second = [event(key_id=key) for _ in range(50)]
    await publish(nc, first)
    app_nc = client.app.state.nc
    before = (nc.stats["reconnects"], app_nc.stats["reconnects"])
    embedded_nats.restart()  # JetStream state is on disk; every client reconnects

    async def reconnected():
        now = (nc.stats["reconnects"], app_nc.stats["reconnects"])
        return all(a > b for a, b in zip(now, before, strict=True)) and nc.is_connected and app_nc.is_connected

    await wait_for(reconnected, timeout=30, what="reconnected")
    await publish(nc, second)

    async def complete():
        n, _, _ = await db_totals(migrated, [key])
        return n == 100

    await wait_for(complete, timeout=40, interval=0.2, what="all 100 events after the NATS restart")


async def test_database_down_answers_503_and_not_ready(client, nc, migrated, embedded_postgres):
    from helpers import AUTH

    embedded_postgres.stop()
    try:
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "down"
        response = await client.get("/v1/usage", headers=AUTH)
        assert response.status_code == 503
        assert response.json()["error"]["type"] == "service_unavailable"
        csv = await client.get("/v1/usage", params={"format": "csv"}, headers=AUTH)
        assert csv.status_code == 503
        # events published meanwhile wait in the stream
        key = new_key()
        await publish(nc, [event(key_id=key) for _ in range(10)])
    finally:
        embedded_postgres.start()

    async def ready_again():
        return (await client.get("/readyz")).status_code == 200

    await wait_for(ready_again, timeout=30, what="ready again")

    async def stored():
        n, _, _ = await db_totals(migrated, [key])
        return n == 10

    await wait_for(stored, timeout=30, what="events stored after the outage")
