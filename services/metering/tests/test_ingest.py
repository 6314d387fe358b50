"""Ingest correctness on real JetStream + PostgreSQL: duplicates, redeliveries, ordering, poison."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
from nats.aio.msg import Msg
from sqlalchemy import text

from helpers import AUTH, event, new_key, publish, publish_raw, usage, wait_for, wait_requests
from llmgw_common.contract import (
    CONSUMER_METERING,
    HEADER_DEAD_LETTER_REASON,
    STREAM_DEAD_LETTER,
    STREAM_USAGE,
    SUBJECT_USAGE_DEAD_LETTER,
    usage_subject,
)
from llmgw_metering import metrics


async def test_event_stored_with_every_field(client, nc):
    key = new_key()
    ev = event(
        key_id=key,
        project="search",
        provider="anthropic",
        model="claude-sonnet-4-5",
        upstream_model="claude-sonnet-4-5-20250929",
        deployment="anthropic/claude-sonnet-4-5-20250929",
        endpoint="/v1/messages",
        streamed=True,
        status="incomplete",
        status_code=200,
        attempts=2,
        prompt_tokens=1500,
        cached_tokens=1000,
        cache_write_tokens=200,
        completion_tokens=300,
        reasoning_tokens=50,
        latency_ms=812.5,
        ttfb_ms=120.25,
        upstream_latency_ms=800.0,
        reserved_usd=0.05,
        budget_period_key="m202611",
    )
    await publish(nc, [ev])
    await wait_requests(client, key, 1)
    page = (await client.get("/v1/usage/events", params={"key_id": key}, headers=AUTH)).json()
    stored = page["data"][0]
    expected = msgspec.to_builtins(ev)
    for name, value in expected.items():
        if name == "ts":
            assert stored["ts"].replace("Z", "+00:00")[:26] == value.replace("Z", "+00:00")[:26]
        else:
            assert stored[name] == value, name
    assert stored["price_known"] is True
    assert stored["cost_usd"] > 0
    assert stored["price_version"].startswith("genai-prices-")
    assert stored["ingested_at"]


async def test_duplicate_publishes_count_once(client, nc):
    key = new_key()
    events = [event(key_id=key, prompt_tokens=10 * i + 1) for i in range(5)]
    # the same events again: once within JetStream's duplicate window (dropped by the server),
    # once without the message id (stored twice in the stream, deduplicated by the ledger)
    await publish(nc, events)
    await publish(nc, events)
    await publish(nc, events, msg_id=False)
    await publish(nc, events[:2], msg_id=False)
    await wait_requests(client, key, 5)
    # give the consumer every chance to over-count, then check again
    await wait_for(lambda: _stream_drained(nc), what="consumer drained")
    rows = await usage(client, key_id=key)
    assert rows[0]["requests"] == 5
    assert rows[0]["prompt_tokens"] == sum(e.prompt_tokens for e in events)
    hourly = await usage(client, key_id=key, group_by="hour")
    assert sum(r["requests"] for r in hourly) == 5


async def _stream_drained(nc) -> bool:
    js = nc.jetstream()
    info = await js.consumer_info(STREAM_USAGE, CONSUMER_METERING)
    return info.num_pending == 0 and info.num_ack_pending == 0


async def test_redelivered_message_counts_once(client, nc, monkeypatch):
    """The first delivery is committed but its ack is lost (nak instead): JetStream redelivers it."""
    key = new_key()
    target = event(key_id=key, prompt_tokens=777, completion_tokens=1)
    others = [event(key_id=key) for _ in range(3)]
    seen: list[int] = []
    original_ack = Msg.ack

    async def flaky_ack(self: Msg):
        if self.data and target.event_id.encode() in self.data:
            seen.append(self.metadata.num_delivered)
            if len(seen) == 1:
                await self.nak()  # as if the process died after COMMIT, before the ack
                return
        await original_ack(self)

    monkeypatch.setattr(Msg, "ack", flaky_ack)
    await publish(nc, [target, *others])
    await wait_for(lambda: _len_at_least(seen, 2), what="redelivery")
    assert seen[:2] == [1, 2]
    await wait_for(lambda: _stream_drained(nc), what="consumer drained")
    rows = await usage(client, key_id=key)
    assert rows[0]["requests"] == 4
    assert rows[0]["prompt_tokens"] == 777 + 3 * 100


async def _len_at_least(items, n):
    return len(items) >= n


async def test_out_of_order_timestamps(client, nc):
    key = new_key()
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    stamps = [
        now,
        now - timedelta(days=2),
        now - timedelta(hours=1),
        now - timedelta(days=1),
        now - timedelta(days=2, hours=3),
    ]
    events = [event(key_id=key, ts=ts, prompt_tokens=i + 1, completion_tokens=0) for i, ts in enumerate(stamps)]
    await publish(nc, events)
    await wait_requests(client, key, 5)
    daily = await usage(client, key_id=key, group_by="day")
    by_day = {row["bucket"]: row["prompt_tokens"] for row in daily}
    expected: dict[str, int] = {}
    for ev in events:
        bucket = ev.ts.strftime("%Y-%m-%dT00:00:00Z")
        expected[bucket] = expected.get(bucket, 0) + ev.prompt_tokens
    assert by_day == expected
    hourly = await usage(client, key_id=key, group_by="hour")
    assert len(hourly) == len({ev.ts.replace(minute=0) for ev in events})
    # raw events listed newest first regardless of arrival order
    page = (await client.get("/v1/usage/events", params={"key_id": key}, headers=AUTH)).json()
    assert [e["prompt_tokens"] for e in page["data"]] == [1, 3, 4, 2, 5]


async def test_poisoned_messages_go_to_dead_letter_without_blocking(client, nc):
    key = new_key()
    js = nc.jetstream()
    before = (await js.stream_info(STREAM_DEAD_LETTER)).state.messages
    dead_before = {
        reason: metrics.DEAD_LETTERS.labels(reason)._value.get()
        for reason in ("invalid_json", "unsupported_version", "invalid_event")
    }
    good_before = [event(key_id=key) for _ in range(3)]
    good_after = [event(key_id=key) for _ in range(3)]
    v2 = msgspec.json.encode({**msgspec.to_builtins(event(key_id=key)), "v": 2, "new_field": 1})
    v2_renamed = msgspec.json.encode({"v": 2, "id": "x", "tokens": {"in": 1}})
    negative = msgspec.json.encode({**msgspec.to_builtins(event(key_id=key)), "prompt_tokens": -5})
    await publish(nc, good_before)
    await publish_raw(
        nc,
        usage_subject("openai"),
        b'{"event_id": "broken',
        headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    )
    await publish_raw(nc, usage_subject("openai"), v2)
    await publish_raw(nc, usage_subject("anthropic"), v2_renamed)
    await publish_raw(nc, usage_subject("openai"), negative)
    await publish(nc, good_after)
    await wait_requests(client, key, 6)

    async def dead_count():
        return (await js.stream_info(STREAM_DEAD_LETTER)).state.messages - before

    await wait_for(lambda: _ge(dead_count(), 4), what="4 dead letters")
    sub = await js.pull_subscribe(SUBJECT_USAGE_DEAD_LETTER, stream=STREAM_DEAD_LETTER)
    try:
        msgs = await sub.fetch(100, timeout=2)
    finally:
        await sub.unsubscribe()
    ours = msgs[-4:]
    reasons = [m.headers[HEADER_DEAD_LETTER_REASON].split(":")[0] for m in ours]
    assert reasons == ["invalid_json", "unsupported_version", "unsupported_version", "invalid_event"]
    assert ours[0].data == b'{"event_id": "broken'
    assert ours[0].headers["Llmgw-Original-Subject"] == usage_subject("openai")
    assert ours[0].headers["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c")
    assert ours[1].data == v2
    assert ours[2].headers["Llmgw-Original-Subject"] == usage_subject("anthropic")
    assert "prompt_tokens" in ours[3].headers[HEADER_DEAD_LETTER_REASON]
    assert metrics.DEAD_LETTERS.labels("invalid_json")._value.get() == dead_before["invalid_json"] + 1
    assert metrics.DEAD_LETTERS.labels("unsupported_version")._value.get() == dead_before["unsupported_version"] + 2
    assert metrics.DEAD_LETTERS.labels("invalid_event")._value.get() == dead_before["invalid_event"] + 1
    # terminated, not redelivered: the consumer has nothing outstanding
    await wait_for(lambda: _stream_drained(nc), what="consumer drained")
    metrics_text = (await client.get("/metrics")).text
    assert 'llmgw_metering_dead_letter_total{reason="invalid_json"}' in metrics_text


async def _ge(awaitable, n):
    return (await awaitable) >= n


async def test_event_older_than_retention_is_dead_lettered(client, nc):
    key = new_key()
    js = nc.jetstream()
    before = (await js.stream_info(STREAM_DEAD_LETTER)).state.messages
    old = event(key_id=key, ts=datetime.now(UTC) - timedelta(days=500))
    fine = event(key_id=key)
    await publish(nc, [old, fine])
    await wait_requests(client, key, 1)
    await wait_for(lambda: _ge(_dead(js, before), 1), what="dead letter")


async def _dead(js, before):
    return (await js.stream_info(STREAM_DEAD_LETTER)).state.messages - before


async def test_string_with_nul_is_dead_lettered_not_blocking(client, nc):
    key = new_key()
    bad = event(key_id=key, request_id="a\x00b")
    fine = event(key_id=key)
    await publish(nc, [bad, fine])
    await wait_requests(client, key, 1)


async def test_batch_rows_refused_by_postgres_are_isolated(client, nc, monkeypatch):
    """A row PostgreSQL refuses (a data error) is dead-lettered; the rest of its batch is stored."""
    from llmgw_metering.ingest import prepare as prepare_module

    key = new_key()
    bad = event(key_id=key, model="refused-by-db")
    good = [event(key_id=key) for _ in range(5)]
    original = prepare_module.prepare

    def sabotage(msgs, pricer, **kwargs):
        prepared = original(msgs, pricer, **kwargs)
        for i, row in enumerate(prepared.rows):
            if row[6] == "refused-by-db":
                row = list(row)
                row[28] = "not-a-number"  # cost_usd: PostgreSQL rejects the COPY value
                prepared.rows[i] = tuple(row)
        return prepared

    from llmgw_metering.ingest import consumer as consumer_module

    monkeypatch.setattr(consumer_module, "prepare", sabotage)
    js = nc.jetstream()
    before = (await js.stream_info(STREAM_DEAD_LETTER)).state.messages
    await publish(nc, [good[0], good[1], bad, *good[2:]])
    await wait_requests(client, key, 5)
    await wait_for(lambda: _ge(_dead(js, before), 1), what="dead letter")


async def test_unknown_model_priced_zero_and_flagged(client, nc):
    key = new_key()
    await publish(nc, [event(key_id=key, provider="vllm-local", model="my-finetune-7b", prompt_tokens=1000)])
    await wait_requests(client, key, 1)
    page = (await client.get("/v1/usage/events", params={"key_id": key}, headers=AUTH)).json()
    assert page["data"][0]["cost_usd"] == 0
    assert page["data"][0]["price_known"] is False


async def test_cache_hits_priced_zero(client, nc):
    key = new_key()
    await publish(nc, [event(key_id=key, cached=True, prompt_tokens=5000, completion_tokens=500)])
    await wait_requests(client, key, 1)
    page = (await client.get("/v1/usage/events", params={"key_id": key}, headers=AUTH)).json()
    assert page["data"][0]["cost_usd"] == 0
    assert page["data"][0]["price_known"] is True
    assert page["data"][0]["price_version"] == "cache-hit"


async def test_rollups_match_raw_events(client, nc, settings):
    """Every committed batch folded exactly the new rows into both rollups."""
    from llmgw_metering.db import create_engine

    await wait_for(lambda: _stream_drained(nc), what="consumer drained")
    engine = create_engine(settings, pool_size=1)
    try:
        async with engine.connect() as conn:
            raw = (
                await conn.execute(
                    text("SELECT count(*), sum(prompt_tokens), sum(cost_usd) FROM metering.usage_events")
                )
            ).one()
            hourly = (
                await conn.execute(
                    text("SELECT sum(requests), sum(prompt_tokens), sum(cost_usd) FROM metering.usage_hourly")
                )
            ).one()
            daily = (
                await conn.execute(
                    text("SELECT sum(requests), sum(prompt_tokens), sum(cost_usd) FROM metering.usage_daily")
                )
            ).one()
    finally:
        await engine.dispose()
    assert tuple(raw) == tuple(hourly) == tuple(daily)


async def test_batch_mixing_stored_and_new_events_takes_the_conflict_path_exactly(migrated):
    """The writer's fast statement assumes an all-new batch; one stored event in it must send the
    whole batch through ON CONFLICT DO NOTHING: new events stored once, the stored one not again,
    rollups counting each event exactly once."""
    from llmgw_common.pricing import Pricer
    from llmgw_metering.db import create_engine
    from llmgw_metering.ingest.prepare import prepare
    from llmgw_metering.ingest.writer import BatchWriter
    from llmgw_common.contract import encode

    class FakeMsg:
        def __init__(self, data: bytes) -> None:
            self.data, self.subject, self.headers = data, "llmgw.v1.usage.openai", None

    key = new_key()
    first, second, third = (event(key_id=key, prompt_tokens=100 * (i + 1)) for i in range(3))
    engine = create_engine(migrated, pool_size=1)
    writer = BatchWriter(engine, set())
    try:
        def rows(*events):
            prepared = prepare([FakeMsg(encode(e)) for e in events], Pricer(), retention_days=400, max_future_seconds=3600)
            return prepared.rows, prepared.months

        assert (await writer.write(*rows(first))).inserted == 1  # fast path
        result = await writer.write(*rows(first, second, third))  # `first` again: conflict path
        assert result.inserted == 2 and not result.rejected  # not isolated as a poison row
        async with engine.connect() as conn:
            events = (await conn.execute(text("SELECT count(*) FROM metering.usage_events WHERE key_id = :k"), {"k": key})).scalar()
            hourly = (await conn.execute(
                text("SELECT sum(requests), sum(prompt_tokens) FROM metering.usage_hourly WHERE key_id = :k"), {"k": key}
            )).one()
        assert events == 3
        assert tuple(hourly) == (3, 600)
    finally:
        await writer.release()
        await engine.dispose()
