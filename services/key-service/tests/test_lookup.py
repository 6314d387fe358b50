"""The NATS side: key lookups (found / unknown / revoked / expired / rotation grace), the warm cache,
invalidation by change events, admin-token verification, trace context."""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta

import pytest
from conftest import ADMIN_TOKEN, ENV_ANTHROPIC_KEY, ENV_OPENAI_KEY, lookup, wait_until
from llmgw_common import contract
from llmgw_common.contract import hash_secret
from llmgw_common.telemetry import inject_headers
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

SPANS = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def _tracing():
    """An SDK tracer provider with a synchronous in-memory exporter (the API's default is a no-op)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    processor = SimpleSpanProcessor(SPANS)
    provider.add_span_processor(processor)
    yield
    SPANS.shutdown()  # later spans are dropped silently (the provider is process-wide)


async def create(client, **fields) -> dict:
    response = await client.post("/v1/keys", json={"name": "lk", **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def test_unknown_hash_is_not_found(client, nc):
    reply = await lookup(nc, hash_secret("sk-llmgw-never-issued"))
    assert reply == contract.KeyLookupReply(found=False)
    for junk in ("", "x" * 64, "ABC", "0" * 63, "\u0000" * 64):
        assert (await lookup(nc, junk)).found is False
    raw = await nc.request(contract.SUBJECT_KEY_LOOKUP, b"not json", timeout=3)
    assert contract.key_lookup_reply_decoder.decode(raw.data).found is False


async def test_active_key_reply_carries_record_routes_and_decrypted_providers(client, nc):
    created = await create(
        client,
        project="p1",
        models=["gpt-4o*"],
        rpm_limit=10,
        tpm_limit=1000,
        max_parallel_requests=2,
        budget_usd=5.5,
        budget_period="daily",
        metadata={"team": "x"},
        tags=["t"],
        expires_at="2099-01-01T00:00:00Z",
    )
    reply = await lookup(nc, hash_secret(created["key"]))
    assert reply.found and reply.v == 1
    key = reply.key
    assert (key.id, key.name, key.project, key.status) == (created["id"], "lk", "p1", "active")
    assert key.models == ["gpt-4o*"] and key.rpm_limit == 10 and key.tpm_limit == 1000
    assert key.max_parallel_requests == 2 and key.budget_usd == 5.5 and key.budget_period == "daily"
    assert key.metadata == {"team": "x"} and key.tags == ["t"] and key.grace_until is None
    assert key.expires_at == datetime(2099, 1, 1, tzinfo=UTC)
    # default routes -> both environment providers, keys decrypted/plain for the proxy
    assert [r.model for r in reply.routes] == ["claude-*", "*"]
    creds = {p.name: p for p in reply.providers}
    assert creds["openai"] == contract.ProviderCredential(
        name="openai", kind="openai", base_url="https://api.openai.com/v1", api_key=ENV_OPENAI_KEY
    )
    assert creds["anthropic"].api_key == ENV_ANTHROPIC_KEY


async def test_db_provider_key_is_decrypted_in_replies(client, nc, events):
    db_key = "sk-vllm-secret-" + "q" * 20
    client.registry.add(client.database_url, db_key)
    await client.put(
        "/v1/providers/vllm", json={"kind": "openai-compatible", "base_url": "http://vllm:8000/v1", "api_key": db_key}
    )
    await client.put(
        "/v1/routes",
        json={
            "data": [
                {"model": "llama-*", "deployments": [{"provider": "vllm", "model": "*", "weight": 2}]},
                {"model": "*", "deployments": [{"provider": "openai", "model": "*"}]},
            ]
        },
    )
    created = await create(client)
    reply = await lookup(nc, hash_secret(created["key"]))
    assert {p.name: p.api_key for p in reply.providers} == {"vllm": db_key, "openai": ENV_OPENAI_KEY}
    assert reply.routes[0] == contract.Route(
        model="llama-*", deployments=[contract.Deployment(provider="vllm", model="*", weight=2, priority=0)]
    )
    # a routes change invalidates every cached answer at once
    await client.put("/v1/routes", json={"data": []})
    again = await lookup(nc, hash_secret(created["key"]))
    assert [r.model for r in again.routes] == ["claude-*", "*"]
    assert {p.name for p in again.providers} == {"openai", "anthropic"}


async def test_revoked_key_is_returned_with_its_status(client, nc):
    created = await create(client)
    key_hash = hash_secret(created["key"])
    assert (await lookup(nc, key_hash)).key.status == "active"  # now cached
    await client.delete(f"/v1/keys/{created['id']}")
    reply = await lookup(nc, key_hash)  # the cached "active" answer must be gone at once
    assert reply.found and reply.key.status == "revoked"
    assert reply.providers == [] and reply.routes == []  # no credentials for a dead key


async def test_expired_key_is_returned_with_its_status(client, nc):
    created = await create(client, expires_at=(datetime.now(UTC) + timedelta(seconds=1)).isoformat())
    key_hash = hash_secret(created["key"])
    assert (await lookup(nc, key_hash)).key.status == "active"
    # The cached answer may not outlive expires_at, whatever the TTL.
    reply = await wait_until(
        lambda: _status_is(nc, key_hash, "expired"), timeout=5, what="lookup to report the key expired"
    )
    assert reply.key.id == created["id"]


async def _status_is(nc, key_hash, status):
    reply = await lookup(nc, key_hash)
    return reply if reply.found and reply.key.status == status else None


async def test_rotation_without_grace_old_secret_unknown_at_once(client, nc):
    created = await create(client)
    old_hash = hash_secret(created["key"])
    assert (await lookup(nc, old_hash)).found  # cached
    rotated = (await client.post(f"/v1/keys/{created['id']}/rotate")).json()
    assert (await lookup(nc, old_hash)).found is False
    new = await lookup(nc, hash_secret(rotated["key"]))
    assert new.found and new.key.id == created["id"] and new.key.grace_until is None


async def test_rotation_with_grace_old_secret_answers_until_grace_ends(client, nc):
    created = await create(client)
    old_hash = hash_secret(created["key"])
    rotated = (await client.post(f"/v1/keys/{created['id']}/rotate", json={"grace_seconds": 2})).json()
    during = await lookup(nc, old_hash)
    assert during.found and during.key.id == created["id"] and during.key.status == "active"
    assert during.key.grace_until is not None
    assert datetime.now(UTC) < during.key.grace_until <= datetime.now(UTC) + timedelta(seconds=2.5)
    assert (await lookup(nc, hash_secret(rotated["key"]))).key.grace_until is None
    # after the grace, the old secret is unknown (the cache entry may not outlive grace_until)
    await wait_until(lambda: _not_found(nc, old_hash), timeout=6, what="grace to end")
    # revoking during a grace: the old secret answers "revoked"
    other = await create(client)
    (await client.post(f"/v1/keys/{other['id']}/rotate", json={"grace_seconds": 600}))
    await client.delete(f"/v1/keys/{other['id']}")
    assert (await lookup(nc, hash_secret(other["key"]))).key.status == "revoked"


async def _not_found(nc, key_hash):
    return (await lookup(nc, key_hash)).found is False


async def test_update_is_visible_to_the_next_lookup(client, nc):
    created = await create(client, rpm_limit=5)
    key_hash = hash_secret(created["key"])
    assert (await lookup(nc, key_hash)).key.rpm_limit == 5
    await client.patch(f"/v1/keys/{created['id']}", json={"rpm_limit": 50, "models": ["claude-*"]})
    reply = await lookup(nc, key_hash)
    assert reply.key.rpm_limit == 50 and reply.key.models == ["claude-*"]


async def test_new_key_is_not_shadowed_by_a_cached_miss(client, nc, runtime):
    # a client trying a key before it exists caches "not found"... which the creation must drop
    created = await create(client)
    key_hash = hash_secret(created["key"])
    runtime.cache.put(key_hash, contract.encode(contract.KeyLookupReply(found=False)), runtime.cache.generation)
    await client.patch(f"/v1/keys/{created['id']}", json={"name": "renamed"})
    assert (await lookup(nc, key_hash)).found


async def test_change_event_from_another_replica_invalidates_the_cache(client, nc, runtime):
    created = await create(client)
    key_hash = hash_secret(created["key"])
    await lookup(nc, key_hash)
    assert runtime.cache.get(key_hash) is not None
    # what another replica's mutation would publish
    await nc.publish(
        contract.SUBJECT_KEY_CHANGED,
        contract.encode(contract.KeyChanged(action="updated", key_id=created["id"], key_hashes=[key_hash])),
    )
    await wait_until(lambda: runtime.cache.get(key_hash) is None, what="cache entry dropped")
    await lookup(nc, key_hash)
    await nc.publish(contract.SUBJECT_KEY_CHANGED, contract.encode(contract.KeyChanged(action="providers")))
    await wait_until(lambda: len(runtime.cache) == 0, what="cache cleared")


async def test_cached_lookup_is_well_under_a_millisecond(client, nc, runtime):
    created = await create(client)
    key_hash = hash_secret(created["key"])
    await lookup(nc, key_hash)  # warm
    # in-process: what the responder does for a cached answer
    timings = []
    for _ in range(2000):
        start = time.perf_counter()
        data = runtime.cache.get(key_hash)
        timings.append(time.perf_counter() - start)
        assert data is not None
    assert statistics.median(timings) < 0.0001  # < 0.1 ms
    # and over the wire (loopback NATS request/reply round trip, both ends in Python)
    round_trips = []
    for _ in range(200):
        start = time.perf_counter()
        reply = await lookup(nc, key_hash)
        round_trips.append(time.perf_counter() - start)
        assert reply.found
    assert statistics.median(round_trips) < 0.005, statistics.median(round_trips)


async def test_concurrent_misses_resolve_once_and_all_get_answers(client, nc):
    import asyncio

    created = await create(client)
    replies = await asyncio.gather(*(lookup(nc, hash_secret(created["key"])) for _ in range(50)))
    assert all(r.found and r.key.id == created["id"] for r in replies)


async def test_lookup_span_continues_the_callers_trace(client, nc):
    created = await create(client)
    SPANS.clear()
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("proxy request") as parent:
        headers = inject_headers({})
        await lookup(nc, hash_secret(created["key"]), headers=headers)
        trace_id = parent.get_span_context().trace_id
    spans = await wait_until(
        lambda: [s for s in SPANS.get_finished_spans() if s.name == "process llmgw.v1.keys.lookup"],
        what="lookup span",
    )
    span = spans[-1]
    assert span.context.trace_id == trace_id
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    assert span.kind == trace.SpanKind.CONSUMER
    assert span.attributes["messaging.system"] == "nats"
    assert span.attributes["messaging.destination.name"] == contract.SUBJECT_KEY_LOOKUP
    assert span.attributes["messaging.consumer.group.name"] == contract.QUEUE_GROUP_KEY_SERVICE
    rendered = str(dict(span.attributes))
    assert created["key"] not in rendered and hash_secret(created["key"]) not in rendered


# --- auth verification ---------------------------------------------------------------------------
async def verify(nc, token: str) -> contract.AuthVerifyReply:
    msg = await nc.request(
        contract.SUBJECT_AUTH_VERIFY,
        contract.encode(contract.AuthVerifyRequest(token_hash=hash_secret(token))),
        timeout=3,
    )
    return contract.auth_verify_reply_decoder.decode(msg.data)


async def test_auth_verify_over_nats(client, nc):
    analyst = (await client.post("/v1/admin-tokens", json={"name": "metering-reader", "role": "analyst"})).json()
    admin = (await client.post("/v1/admin-tokens", json={"name": "ops", "role": "admin"})).json()
    assert await verify(nc, analyst["token"]) == contract.AuthVerifyReply(
        valid=True, role="analyst", token_id=analyst["id"]
    )
    assert (await verify(nc, admin["token"])).role == "admin"
    assert await verify(nc, ADMIN_TOKEN) == contract.AuthVerifyReply(valid=True, role="admin", token_id="bootstrap")
    assert (await verify(nc, "nope")).valid is False
    virtual_key = (await create(client))["key"]
    assert (await verify(nc, virtual_key)).valid is False
    await client.delete(f"/v1/admin-tokens/{analyst['id']}")
    assert (await verify(nc, analyst["token"])).valid is False
    raw = await nc.request(contract.SUBJECT_AUTH_VERIFY, b"[]", timeout=3)
    assert contract.auth_verify_reply_decoder.decode(raw.data).valid is False


async def test_lookup_survives_its_database_connections_being_dropped(client, nc, runtime, db):
    """The lookup path skips the pool's pre-ping: a connection PostgreSQL dropped (a restart, a
    failover, an idle timeout) must cost one retry on a fresh connection, not a failed lookup."""
    from sqlalchemy import text

    created = await create(client)
    key_hash = hash_secret(created["key"])
    assert (await lookup(nc, key_hash)).found  # the read pool now holds an open connection
    async with db() as session:
        killed = (
            await session.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :name AND pid <> pg_backend_pid()"
                ),
                {"name": runtime.settings.service_name + "-lookup"},
            )
        ).scalar_one()
    assert killed >= 1
    runtime.cache.clear()
    reply = await lookup(nc, key_hash)
    assert reply.found and reply.key.id == created["id"]
