"""Volume and shutdown, each with its own metering process on the stream (no other consumer runs)."""

from __future__ import annotations

import logging
import time

from conftest import reset_jetstream, running_app
from sqlalchemy import text
from test_resilience import bulk_events, db_totals, fast_publish

from helpers import AUTH, new_key, wait_for
from llmgw_common.contract import CONSUMER_METERING, STREAM_USAGE
from llmgw_metering.db import create_engine

log = logging.getLogger(__name__)


async def rollup_requests(engine, keys: list[str]) -> int:
    """Cheap progress probe (the small hourly rollup, not a scan of the raw events being written)."""
    async with engine.connect() as conn:
        value = (
            await conn.execute(
                text("SELECT coalesce(sum(requests), 0) FROM metering.usage_hourly WHERE key_id = ANY(:k)"),
                {"k": keys},
            )
        ).scalar()
    return int(value)


async def test_backlog_of_100k_events_drained_with_exact_totals(migrated, nats_url, nc):
    """The consumer starts on a stream already holding 100k events."""
    settings = migrated
    await reset_jetstream(nats_url)
    keys = [new_key() for _ in range(50)]
    events = bulk_events(keys, 100_000)
    await fast_publish(nc, events)
    expected_tokens = sum(e.prompt_tokens for e in events)
    engine = create_engine(settings, pool_size=1)
    started = time.monotonic()
    try:
        async with running_app(settings) as app_client:

            async def drained():
                done = await rollup_requests(engine, keys)
                assert done <= len(events), done
                return done == len(events)

            await wait_for(drained, timeout=90, interval=0.25, what="100k backlog drained")
            elapsed = time.monotonic() - started
            log.warning("100k backlog drained in %.1fs (%.0f events/s)", elapsed, len(events) / elapsed)
            # exact, from the raw events and through the API
            assert await db_totals(settings, keys) == (len(events), expected_tokens, len(events))
            params = {"group_by": "model", "project": "bulk"}
            rows = (await app_client.get("/v1/usage", params=params, headers=AUTH)).json()["data"]
            assert sum(r["requests"] for r in rows) == len(events)
            assert sum(r["prompt_tokens"] for r in rows) == expected_tokens
    finally:
        await engine.dispose()


async def test_graceful_shutdown_commits_what_it_holds(migrated, nats_url, nc):
    settings = migrated.model_copy(update={"metering_batch_size": 500})
    await reset_jetstream(nats_url)
    keys = [new_key()]
    events = bulk_events(keys, 15_000)
    await fast_publish(nc, events)
    async with running_app(settings):

        async def some():
            n, _, _ = await db_totals(settings, keys)
            return n > 0

        await wait_for(some, timeout=30, what="first batches")
    # stopped mid-backlog: every fetched message was committed and acked, or handed back (nak)
    info = await nc.jetstream().consumer_info(STREAM_USAGE, CONSUMER_METERING)
    stored, _, rolled = await db_totals(settings, keys)
    assert info.num_ack_pending == 0, info
    assert stored == rolled and stored + info.num_pending <= len(events)
    # a new process continues where this one stopped
    async with running_app(settings):

        async def complete():
            n, _, rolled = await db_totals(settings, keys)
            return n == rolled == len(events)

        await wait_for(complete, timeout=60, interval=0.25, what="rest of the backlog")
