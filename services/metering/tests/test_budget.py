"""Budget spend in the JetStream KV bucket: spend += cost and reserved -= reserved exactly once,
with proxies writing reservations concurrently, redeliveries, duplicates, and a reconcile."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from helpers import AUTH, event, new_key, publish, wait_for, wait_requests
from llmgw_common.contract import KV_BUCKET_BUDGET, BudgetState, budget_kv_key, budget_state_decoder, encode
from llmgw_common.pricing import Pricer

PERIOD = "m202611"


def cost(ev) -> Decimal:
    return (
        Pricer()
        .price(
            ev.provider,
            ev.model,
            prompt_tokens=ev.prompt_tokens,
            cached_tokens=ev.cached_tokens,
            cache_write_tokens=ev.cache_write_tokens,
            completion_tokens=ev.completion_tokens,
            at=ev.ts,
        )
        .cost_usd
    )


async def kv(nc):
    return await nc.jetstream().key_value(KV_BUCKET_BUDGET)


async def read(bucket, key_id) -> BudgetState | None:
    try:
        entry = await bucket.get(budget_kv_key(key_id, PERIOD))
    except KeyNotFoundError:
        return None
    return budget_state_decoder.decode(entry.value)


async def reserve(bucket, key_id: str, amount: float) -> None:
    """What a proxy does before dispatch: add a reservation with compare-and-set."""
    key = budget_kv_key(key_id, PERIOD)
    while True:
        try:
            entry = await bucket.get(key)
            state, revision = budget_state_decoder.decode(entry.value), entry.revision
        except KeyNotFoundError:
            state, revision = BudgetState(), 0
        state.reserved_usd = round(state.reserved_usd + amount, 9)
        try:
            if revision:
                await bucket.update(key, encode(state), last=revision)
            else:
                await bucket.create(key, encode(state))
            return
        except KeyWrongLastSequenceError:
            continue


def events_for(key_id: str, n: int, reserved: float):
    return [
        event(
            key_id=key_id,
            prompt_tokens=1000 * (i + 1),
            cached_tokens=100 * i,
            completion_tokens=50 * (i + 1),
            reserved_usd=reserved,
            budget_period_key=PERIOD,
        )
        for i in range(n)
    ]


async def test_spend_added_and_reservation_released_exactly_once(client, nc, monkeypatch):
    key = new_key()
    bucket = await kv(nc)
    await reserve(bucket, key, 1.0)
    events = events_for(key, 3, 0.25)
    expected_spend = float(sum(cost(e) for e in events))

    # first delivery of events[0] is committed but not acked -> redelivered; events[1] published twice
    first_seen: set[str] = set()
    original_ack = Msg.ack

    async def lossy_ack(self: Msg):
        if self.data and events[0].event_id.encode() in self.data and events[0].event_id not in first_seen:
            first_seen.add(events[0].event_id)
            await self.nak()
            return
        await original_ack(self)

    monkeypatch.setattr(Msg, "ack", lossy_ack)
    await publish(nc, events)
    await publish(nc, [events[1]], msg_id=False)
    await wait_requests(client, key, 3)

    async def settled():
        state = await read(bucket, key)
        return state if state and abs(state.reserved_usd - 0.25) < 1e-9 else None

    state = await wait_for(settled, what="reservations released")
    assert state.spend_usd == pytest.approx(expected_spend, abs=1e-12)
    assert first_seen  # the redelivery really happened
    await client.app.state.budget.flush()
    await asyncio.sleep(0.3)  # nothing late may change it any more
    again = await read(bucket, key)
    assert again.spend_usd == pytest.approx(expected_spend, abs=1e-12)
    assert again.reserved_usd == pytest.approx(0.25, abs=1e-9)


async def test_entry_created_when_missing_and_reserved_never_negative(client, nc):
    key = new_key()
    bucket = await kv(nc)
    events = events_for(key, 2, 0.5)  # the proxy's reservation entry was lost / never written
    await publish(nc, events)
    state = await wait_for(lambda: read(bucket, key), what="entry created")
    await wait_for(lambda: _spend_is(bucket, key, float(sum(cost(e) for e in events))), what="spend")
    state = await read(bucket, key)
    assert state.reserved_usd == 0.0


async def _spend_is(bucket, key, value):
    state = await read(bucket, key)
    return state is not None and abs(state.spend_usd - value) < 1e-12


async def test_concurrent_proxy_reservations_are_not_lost(client, nc):
    key = new_key()
    bucket = await kv(nc)
    events = events_for(key, 40, 0.1)

    async def proxy():
        for _ in range(60):
            await reserve(bucket, key, 0.1)
            await asyncio.sleep(0)

    async def ingest():
        for i in range(0, len(events), 5):
            await publish(nc, events[i : i + 5])
            await asyncio.sleep(0.01)

    await asyncio.gather(proxy(), proxy(), ingest())
    await wait_requests(client, key, 40)
    expected_spend = float(sum(cost(e) for e in events))

    async def settled():
        state = await read(bucket, key)
        return (
            state is not None
            and abs(state.reserved_usd - (120 * 0.1 - 40 * 0.1)) < 1e-6
            and abs(state.spend_usd - expected_spend) < 1e-9
        )

    await wait_for(settled, what="reservations = 120*0.1 reserved - 40*0.1 released")


async def test_reconcile_resets_spend_from_the_ledger_keeping_reserved(client, nc):
    key = new_key()
    bucket = await kv(nc)
    events = events_for(key, 2, 0.0)
    await reserve(bucket, key, 0.3)
    await publish(nc, events)
    expected_spend = float(sum(cost(e) for e in events))
    await wait_for(lambda: _spend_is(bucket, key, expected_spend), what="spend")
    # someone (an old proxy build, an operator) wrote a wrong spend
    entry = await bucket.get(budget_kv_key(key, PERIOD))
    await bucket.update(
        budget_kv_key(key, PERIOD), encode(BudgetState(spend_usd=999.0, reserved_usd=0.3)), last=entry.revision
    )
    touched = await client.app.state.budget.reconcile_once()
    assert touched >= 1
    state = await read(bucket, key)
    assert state.spend_usd == pytest.approx(expected_spend, abs=1e-12)
    assert state.reserved_usd == pytest.approx(0.3)


async def test_key_summary_shows_period_spend_from_ledger_and_kv(client, nc):
    from datetime import UTC, datetime

    period = datetime.now(UTC).strftime("m%Y%m")
    key = new_key()
    evs = [event(key_id=key, budget_period_key=period, reserved_usd=0.01, prompt_tokens=2000) for _ in range(2)]
    await publish(nc, evs)
    await wait_requests(client, key, 2)

    async def summary():
        body = (await client.get(f"/v1/usage/keys/{key}", headers=AUTH)).json()
        return body if body["budget_period"] and body["budget_period"]["kv"] else None

    body = await wait_for(summary, what="kv state in summary")
    budget = body["budget_period"]
    assert budget["period"] == "monthly" and budget["period_key"] == period
    assert budget["requests"] == 2
    assert budget["spend_usd"] == pytest.approx(float(sum(cost(e) for e in evs)))
    assert budget["kv"]["spend_usd"] == pytest.approx(budget["spend_usd"])
    assert budget["kv"]["reserved_usd"] == 0.0
    daily = (await client.get(f"/v1/usage/keys/{key}", params={"period": "daily"}, headers=AUTH)).json()
    assert daily["budget_period"]["period_key"] == datetime.now(UTC).strftime("d%Y%m%d")
    assert daily["budget_period"]["requests"] == 0


async def test_release_lost_in_a_crash_is_applied_by_the_next_sync(client, nc, monkeypatch):
    """metering dies after COMMIT, before the KV write: the batch's release lives only in memory and
    is gone. The next sync of that entry (here the reconcile pass) releases it from the ledger."""
    from llmgw_metering.ingest.budget import BudgetSync

    key = new_key()
    bucket = await kv(nc)
    await reserve(bucket, key, 1.0)
    events = events_for(key, 2, 0.25)
    monkeypatch.setattr(BudgetSync, "note", lambda self, entries: None)  # the "crash": notes lost
    await publish(nc, events)
    await wait_requests(client, key, 2)
    assert (await read(bucket, key)).reserved_usd == pytest.approx(1.0)  # nothing released yet
    monkeypatch.undo()

    await client.app.state.budget.reconcile_once()
    state = await read(bucket, key)
    assert state.reserved_usd == pytest.approx(0.5, abs=1e-9)
    assert state.spend_usd == pytest.approx(float(sum(cost(e) for e in events)), abs=1e-12)
    # and only once: syncing again (or the next batch of another key) releases nothing more
    await client.app.state.budget.reconcile_once()
    assert (await read(bucket, key)).reserved_usd == pytest.approx(0.5, abs=1e-9)
    more = events_for(key, 1, 0.25)
    await publish(nc, more)
    await wait_requests(client, key, 3)

    async def settled():
        state = await read(bucket, key)
        return state if state and abs(state.reserved_usd - 0.25) < 1e-9 else None

    await wait_for(settled, what="the next batch's release, and only it")


def test_next_state_watermark_rules():
    from llmgw_metering.ingest.budget import next_state

    # new entry: nothing in flight, watermark at the ledger
    assert next_state(None, 2.0, 0.7) == BudgetState(spend_usd=2.0, reserved_usd=0.0, released_usd=0.7)
    # release = ledger - watermark, never below zero reserved
    state = BudgetState(spend_usd=1.0, reserved_usd=0.5, released_usd=0.2)
    assert next_state(state, 1.5, 0.5) == BudgetState(spend_usd=1.5, reserved_usd=0.2, released_usd=0.5)
    assert next_state(state, 1.5, 5.0).reserved_usd == 0.0
    # idempotent: the same ledger again changes nothing
    once = next_state(state, 1.5, 0.5)
    assert next_state(once, 1.5, 0.5) == once
    # a ledger below the watermark (restored backup) releases nothing and moves the watermark back
    assert next_state(state, 1.0, 0.1) == BudgetState(spend_usd=1.0, reserved_usd=0.5, released_usd=0.1)
