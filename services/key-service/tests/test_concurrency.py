"""Concurrent rotations of one key, with truly concurrent requests.

Litestar's AsyncTestClient runs each request to completion on its portal thread, so here the app
runs on the tests' own event loop (ASGI lifespan driven by hand, httpx's ASGITransport) and
``asyncio.gather`` really interleaves the requests: they race into Postgres, where the row lock
(``SELECT … FOR UPDATE``) must serialise them.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import httpx
import pytest
from conftest import ADMIN_TOKEN, auth, lookup
from llmgw_common.contract import hash_secret
from sqlalchemy import select

from llmgw_keys.app import create_app
from llmgw_keys.models import AuditLog, PreviousKeyHash, VirtualKey


@asynccontextmanager
async def running(app):
    to_app: asyncio.Queue = asyncio.Queue()
    from_app: asyncio.Queue = asyncio.Queue()
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, to_app.get, from_app.put)
    )
    await to_app.put({"type": "lifespan.startup"})
    message = await asyncio.wait_for(from_app.get(), 30)
    assert message["type"] == "lifespan.startup.complete", message
    try:
        yield
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(from_app.get(), 30)
        await task


@pytest.fixture(scope="module")
async def http(settings, secret_registry):
    app = create_app(settings)
    async with running(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://key-service", headers=auth(ADMIN_TOKEN)
        ) as client:
            yield client


async def rotate_concurrently(http, secret_registry, settings, n: int, grace: int):
    created = (await http.post("/v1/keys", json={"name": "contended"})).json()
    responses = await asyncio.gather(
        *(http.post(f"/v1/keys/{created['id']}/rotate", json={"grace_seconds": grace}) for _ in range(n))
    )
    assert [r.status_code for r in responses] == [200] * n, [r.text for r in responses]
    secrets_ = [r.json()["key"] for r in responses]
    secret_registry.add(settings.database_url, created["key"], *secrets_)
    assert len(set(secrets_)) == n
    return created, secrets_


async def test_concurrent_rotations_are_serialised(http, db, nc, secret_registry, settings):
    n = 8
    created, secrets_ = await rotate_concurrently(http, secret_registry, settings, n, grace=0)
    async with db() as session:
        row = await session.get(VirtualKey, created["id"])
        previous = set(
            (
                await session.execute(select(PreviousKeyHash.key_hash).where(PreviousKeyHash.key_id == created["id"]))
            ).scalars()
        )
        audit = (
            (
                await session.execute(
                    select(AuditLog)
                    .where(AuditLog.target_id == created["id"], AuditLog.action == "key.rotated")
                    .order_by(AuditLog.id)
                )
            )
            .scalars()
            .all()
        )

    # exactly one returned secret is current; every other one (and the original) became a previous hash
    current = [s for s in secrets_ if hash_secret(s) == row.key_hash]
    assert len(current) == 1
    winner = current[0]
    assert previous == {hash_secret(created["key"])} | {hash_secret(s) for s in secrets_ if s != winner}
    assert row.prefix == winner[:14]

    # the rotations form one chain: each replaced the secret the previous one installed (no lost update)
    assert len(audit) == n
    chain = [created["prefix"]] + [entry.details["new_prefix"] for entry in audit]
    assert [entry.details["old_prefix"] for entry in audit] == chain[:-1]
    assert chain[-1] == winner[:14]

    # and the lookups agree: only the winner authenticates
    reply = await lookup(nc, hash_secret(winner))
    assert reply.found and reply.key.status == "active" and reply.key.grace_until is None
    for secret in [created["key"], *(s for s in secrets_ if s != winner)]:
        assert (await lookup(nc, hash_secret(secret))).found is False


async def test_two_rotations_at_once_with_grace(http, nc, secret_registry, settings):
    created, secrets_ = await rotate_concurrently(http, secret_registry, settings, 2, grace=600)
    replies = {s: await lookup(nc, hash_secret(s)) for s in [created["key"], *secrets_]}
    assert all(r.found and r.key.id == created["id"] and r.key.status == "active" for r in replies.values())
    current = [s for s in secrets_ if replies[s].key.grace_until is None]
    assert len(current) == 1  # one current secret, the other two in their grace period
    assert replies[created["key"]].key.grace_until is not None


async def test_concurrent_revoke_and_rotate_leave_the_key_revoked(http, nc, secret_registry, settings):
    created = (await http.post("/v1/keys", json={"name": "race"})).json()
    rotate, revoke = await asyncio.gather(
        http.post(f"/v1/keys/{created['id']}/rotate", json={"grace_seconds": 600}),
        http.delete(f"/v1/keys/{created['id']}"),
    )
    assert revoke.status_code == 204
    assert rotate.status_code in (200, 409)  # before the revoke, or refused after it
    secrets_ = [created["key"]] + ([rotate.json()["key"]] if rotate.status_code == 200 else [])
    secret_registry.add(settings.database_url, *secrets_)
    for secret in secrets_:
        reply = await lookup(nc, hash_secret(secret))
        assert reply.found and reply.key.status == "revoked"
