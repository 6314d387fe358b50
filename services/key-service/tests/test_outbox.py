"""A key change made while NATS is down is not lost: the outbox keeps it and the retry loop
publishes it once NATS is back. Meanwhile the REST API keeps working and /readyz says 503."""

from __future__ import annotations

from sqlalchemy import func, select

from conftest import wait_until
from llmgw_keys.models import Outbox


async def outbox_size(db) -> int:
    async with db() as session:
        return (await session.execute(select(func.count()).select_from(Outbox))).scalar_one()


async def test_change_during_nats_outage_is_published_after_reconnect(client, db, events, embedded_nats, runtime):
    warm = (await client.post("/v1/keys", json={"name": "before-outage"})).json()
    await events.wait_for("created", warm["id"])
    assert await outbox_size(db) == 0  # published events leave the outbox

    embedded_nats.stop()
    try:
        await wait_until(lambda: not runtime.nats_ok(), what="key-service to notice NATS is gone")
        assert (await client.get("/readyz")).status_code == 503
        created = await client.post("/v1/keys", json={"name": "during-outage"})
        assert created.status_code == 201  # the change itself is committed
        key_id = created.json()["id"]
        assert await outbox_size(db) >= 1
    finally:
        embedded_nats.start()

    import asyncio
    for i in range(20):
        await asyncio.sleep(0.5)
        print(i, "nats_ok", runtime.nats_ok(), "outbox", await outbox_size(db), "test nc", events_nc_connected(events), [e.action for e in events.events], runtime.publisher.published, runtime.publisher.failed)
    event = await events.wait_for("created", key_id, timeout=15)
    assert event.key_id == key_id
    await wait_until(lambda: _empty(db), timeout=10, what="outbox drained")
    await wait_until(_ready(client), timeout=10, what="/readyz back to 200")
    assert len(runtime.cache) == 0 or runtime.nats_ok()


async def _empty(db) -> bool:
    return await outbox_size(db) == 0


def _ready(client):
    async def check() -> bool:
        return (await client.get("/readyz")).status_code == 200

    return check


def events_nc_connected(events):
    return None
