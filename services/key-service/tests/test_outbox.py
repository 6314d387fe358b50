"""A key change made while NATS is down is not lost: the outbox keeps it and the retry loop
publishes it once NATS is back. Meanwhile the REST API keeps working and /readyz says 503."""

from __future__ import annotations

from conftest import wait_until
from llmgw_common import contract
from sqlalchemy import func, select

from llmgw_keys.models import Outbox


async def outbox_size(db) -> int:
    async with db() as session:
        return (await session.execute(select(func.count()).select_from(Outbox))).scalar_one()


async def test_change_during_nats_outage_is_published_after_reconnect(client, db, events, embedded_nats, runtime, nc):
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

    # A core subscriber that was itself disconnected may miss it (the proxies drop their whole
    # cache on reconnect for that reason); the stream has it, durably.
    js = nc.jetstream()

    async def in_stream():
        try:
            msg = await js.get_last_msg(contract.STREAM_KEY_EVENTS, contract.SUBJECT_KEY_CHANGED)
        except Exception:  # noqa: BLE001 - JetStream still recovering
            return None
        event = contract.key_changed_decoder.decode(msg.data)
        return event if event.key_id == key_id else None

    event = await wait_until(in_stream, timeout=15, what="the outage's event in LLMGW_KEY_EVENTS")
    assert event.action == "created" and event.key_hashes
    await wait_until(lambda: _empty(db), timeout=10, what="outbox drained")
    await wait_until(_ready(client), timeout=10, what="/readyz back to 200")


async def _empty(db) -> bool:
    return await outbox_size(db) == 0


def _ready(client):
    async def check() -> bool:
        return (await client.get("/readyz")).status_code == 200

    return check
