"""Expiry: computed status on read, the background task that marks and announces expired keys,
and re-activation by extending ``expires_at``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conftest import lookup, wait_until
from llmgw_common.contract import hash_secret


def soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def test_key_expires_on_time_and_is_announced(client, events, nc):
    created = (
        await client.post("/v1/keys", json={"name": "short-lived", "project": "exp", "expires_at": soon(0.8)})
    ).json()
    assert created["status"] == "active"

    async def status():
        return (await client.get(f"/v1/keys/{created['id']}")).json()["status"] == "expired"

    await wait_until(status, timeout=5, what="status expired")
    listed = (await client.get("/v1/keys", params={"project": "exp", "status": "expired"})).json()["data"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert (await client.get("/v1/keys", params={"project": "exp", "status": "active"})).json()["data"] == []

    # the background task marks it and publishes an event (with its hash) and an audit row
    event = await events.wait_for("expired", created["id"], timeout=5)
    assert event.key_hashes == [hash_secret(created["key"])]
    audit = (await client.get("/v1/audit", params={"target_id": created["id"]})).json()["data"]
    assert audit[0]["action"] == "key.expired" and audit[0]["actor"] == "system"
    assert (await lookup(nc, hash_secret(created["key"]))).key.status == "expired"

    # exactly once, however many passes the task makes: once a later key's expiry was announced,
    # the task has run again since, and must not have announced the first one twice
    later = (await client.post("/v1/keys", json={"name": "later", "expires_at": soon(0.4)})).json()
    await events.wait_for("expired", later["id"], timeout=5)
    assert len(events.matching("expired", created["id"])) == 1

    # extending expires_at re-activates it
    revived = await client.patch(f"/v1/keys/{created['id']}", json={"expires_at": soon(3600)})
    assert revived.status_code == 200 and revived.json()["status"] == "active"
    assert (await lookup(nc, hash_secret(created["key"]))).key.status == "active"
    # clearing it too
    assert (await client.patch(f"/v1/keys/{created['id']}", json={"expires_at": None})).json()["status"] == "active"


async def test_patch_into_the_past_expires_at_once(client, nc):
    created = (await client.post("/v1/keys", json={"name": "x"})).json()
    response = await client.patch(f"/v1/keys/{created['id']}", json={"expires_at": "2001-01-01T00:00:00Z"})
    assert response.status_code == 200 and response.json()["status"] == "expired"
    assert (await lookup(nc, hash_secret(created["key"]))).key.status == "expired"


async def test_revoked_wins_over_expired(client):
    created = (await client.post("/v1/keys", json={"name": "x", "expires_at": soon(0.3)})).json()
    await client.delete(f"/v1/keys/{created['id']}")

    async def expired_passed():
        return datetime.now(UTC) > datetime.fromisoformat(created["expires_at"])

    await wait_until(expired_passed)
    assert (await client.get(f"/v1/keys/{created['id']}")).json()["status"] == "revoked"
