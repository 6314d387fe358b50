"""Virtual keys over REST: every endpoint, every error path, events and audit rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from llmgw_common.contract import hash_secret
from sqlalchemy import select

from llmgw_keys.models import AuditLog, PreviousKeyHash, VirtualKey

FULL = {
    "name": "search-backend",
    "project": "search",
    "metadata": {"owner": "alice@example.com", "nested": {"ticket": 42, "ok": True}},
    "tags": ["team:search", "prod"],
    "models": ["gpt-4o*", "claude-3-5-sonnet-latest", "o[13]-mini", "gpt-?"],
    "rpm_limit": 600,
    "tpm_limit": 200000,
    "max_parallel_requests": 20,
    "budget_usd": 250.5,
    "budget_period": "monthly",
    "expires_at": "2099-01-01T00:00:00Z",
}


async def create(client, **fields) -> dict:
    body = {"name": "k", **fields}
    response = await client.post("/v1/keys", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def audit_rows(db, target_id: str) -> list[AuditLog]:
    async with db() as session:
        return list(
            (await session.execute(select(AuditLog).where(AuditLog.target_id == target_id).order_by(AuditLog.id)))
            .scalars()
            .all()
        )


def assert_error(response, status: int, error_type: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["type"] == error_type, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body


# --- create -------------------------------------------------------------------------------------
async def test_create_returns_secret_once_and_stores_only_its_hash(client, db, events):
    created = await create(client, **FULL)
    secret = created["key"]
    assert secret.startswith("sk-llmgw-") and len(secret) >= len("sk-llmgw-") + 32
    assert created["prefix"] == secret[:14] and 12 <= len(created["prefix"]) <= 14
    for field_name, value in FULL.items():
        if field_name != "expires_at":
            assert created[field_name] == value, field_name
    assert datetime.fromisoformat(created["expires_at"]) == datetime(2099, 1, 1, tzinfo=UTC)
    assert created["status"] == "active" and created["revoked_at"] is None
    assert created["created_at"] and created["id"]

    async with db() as session:
        row = await session.get(VirtualKey, created["id"])
    assert row.key_hash == hash_secret(secret)

    # Read back: no secret, ever.
    fetched = (await client.get(f"/v1/keys/{created['id']}")).json()
    assert "key" not in fetched
    assert fetched == {k: v for k, v in created.items() if k != "key"}

    event = await events.wait_for("created", created["id"])
    assert event.key_hashes == [hash_secret(secret)]

    (row,) = await audit_rows(db, created["id"])
    assert row.actor == "bootstrap" and row.action == "key.created" and row.target_type == "key"
    assert secret not in str(row.details) and hash_secret(secret) not in str(row.details)


async def test_create_minimal_defaults(client):
    created = await create(client)
    assert created["project"] == "default"
    assert created["models"] == [] and created["tags"] == [] and created["metadata"] == {}
    for name in ("rpm_limit", "tpm_limit", "max_parallel_requests", "budget_usd", "budget_period", "expires_at"):
        assert created[name] is None


async def test_two_keys_get_distinct_secrets(client):
    first, second = await create(client), await create(client)
    assert first["key"] != second["key"] and first["id"] != second["id"]


async def test_naive_expires_at_is_utc(client):
    created = await create(client, expires_at="2098-06-01T12:30:00")
    assert datetime.fromisoformat(created["expires_at"]) == datetime(2098, 6, 1, 12, 30, tzinfo=UTC)
    offset = await create(client, expires_at="2098-06-01T14:30:00+02:00")
    assert datetime.fromisoformat(offset["expires_at"]) == datetime(2098, 6, 1, 12, 30, tzinfo=UTC)


async def test_wildcard_models_round_trip(client):
    models = ["gpt-4o*", "*", "claude-3-*-latest", "text-embedding-3-[sl]*", "o1?"]
    created = await create(client, models=models + ["gpt-4o*"])  # duplicates dropped, order kept
    assert created["models"] == models
    assert (await client.get(f"/v1/keys/{created['id']}")).json()["models"] == models
    patched = await client.patch(f"/v1/keys/{created['id']}", json={"models": ["mistral-*"]})
    assert patched.json()["models"] == ["mistral-*"]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "unknown": 1},
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x\u0000y"},
        {"name": "x", "budget_period": "yearly"},
        {"name": "x", "rpm_limit": 0},
        {"name": "x", "tpm_limit": -5},
        {"name": "x", "max_parallel_requests": 1.5},
        {"name": "x", "rpm_limit": 2**40},
        {"name": "x", "budget_usd": -0.01},
        {"name": "x", "budget_usd": "ten"},
        {"name": "x", "expires_at": "yesterday"},
        {"name": "x", "expires_at": "2001-01-01T00:00:00Z"},
        {"name": "x", "models": [""]},
        {"name": "x", "models": ["gpt 4o"]},
        {"name": "x", "models": "gpt-4o"},
        {"name": "x", "tags": [""]},
        {"name": "x", "metadata": ["not", "an", "object"]},
        {"name": "x", "metadata": {"k": "nul\u0000"}},
        {"name": "x", "metadata": {"k\u0000": 1}},
        {"name": "x", "metadata": {"blob": "a" * 70_000}},
        {"name": "x", "status": "revoked"},
        {"name": "x", "key": "sk-llmgw-chosen-by-client"},
    ],
)
async def test_create_validation_is_422(client, body):
    assert_error(await client.post("/v1/keys", json=body), 422, "invalid_request_error")


async def test_malformed_json_is_400(client):
    response = await client.post("/v1/keys", content=b"{not json", headers={"content-type": "application/json"})
    assert_error(response, 400, "invalid_request_error")


async def test_oversized_body_is_413(client):
    body = b'{"name": "x", "metadata": {"blob": "' + b"a" * (10 * 1024 * 1024) + b'"}}'
    response = await client.post("/v1/keys", content=body, headers={"content-type": "application/json"})
    assert_error(response, 413, "request_too_large")


# --- read ---------------------------------------------------------------------------------------
async def test_get_unknown_is_404(client):
    assert_error(await client.get("/v1/keys/00000000-0000-0000-0000-000000000000"), 404, "not_found_error")
    assert_error(await client.get("/v1/keys/%00"), 404, "not_found_error")
    assert_error(await client.get("/v1/keys/" + "x" * 500), 404, "not_found_error")


async def test_list_filters_and_stable_pagination(client):
    project = "proj-list"
    ids = []
    for i in range(7):
        tags = ["even"] if i % 2 == 0 else ["odd"]
        ids.append((await create(client, name=f"k{i}", project=project, tags=tags + ["all"]))["id"])
    await client.delete(f"/v1/keys/{ids[1]}")

    seen, cursor, pages = [], None, 0
    while True:
        params = {"project": project, "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/keys", params=params)).json()
        assert set(page) == {"data", "next_cursor"}
        assert len(page["data"]) <= 3
        seen += [k["id"] for k in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids and pages == 3  # creation order, no duplicates, no gaps

    everything = (await client.get("/v1/keys", params={"project": project, "limit": 1000})).json()
    assert [k["id"] for k in everything["data"]] == ids and everything["next_cursor"] is None
    for key in everything["data"]:
        assert "key" not in key

    even = (await client.get("/v1/keys", params={"project": project, "tag": "even"})).json()["data"]
    assert [k["id"] for k in even] == ids[0::2]
    revoked = (await client.get("/v1/keys", params={"project": project, "status": "revoked"})).json()["data"]
    assert [k["id"] for k in revoked] == [ids[1]]
    active = (await client.get("/v1/keys", params={"project": project, "status": "active"})).json()["data"]
    assert [k["id"] for k in active] == [i for i in ids if i != ids[1]]
    assert (await client.get("/v1/keys", params={"project": "nope"})).json() == {"data": [], "next_cursor": None}


async def test_list_default_limit_is_50(client):
    project = "proj-many"
    for i in range(52):
        await create(client, name=f"m{i}", project=project)
    page = (await client.get("/v1/keys", params={"project": project})).json()
    assert len(page["data"]) == 50 and page["next_cursor"]
    rest = (await client.get("/v1/keys", params={"project": project, "cursor": page["next_cursor"]})).json()
    assert len(rest["data"]) == 2 and rest["next_cursor"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 1001},
        {"limit": "ten"},
        {"status": "deleted"},
        {"cursor": "garbage!"},
        {"cursor": "WzEsMl0"},
        {"project": "x" * 300},
        {"tag": "a\u0000b"},
    ],
)
async def test_list_bad_params_are_422(client, params):
    assert_error(await client.get("/v1/keys", params=params), 422, "invalid_request_error")


# --- update -------------------------------------------------------------------------------------
async def test_patch_is_partial_and_null_clears(client, db, events):
    created = await create(client, **FULL)
    response = await client.patch(
        f"/v1/keys/{created['id']}", json={"rpm_limit": 1200, "tpm_limit": None, "budget_period": None}
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["rpm_limit"] == 1200 and updated["tpm_limit"] is None and updated["budget_period"] is None
    # untouched fields stay
    for name in ("name", "project", "metadata", "tags", "models", "max_parallel_requests", "budget_usd", "expires_at"):
        assert updated[name] == created[name], name
    assert updated["updated_at"] > created["updated_at"]
    assert updated["prefix"] == created["prefix"]
    assert (await client.get(f"/v1/keys/{created['id']}")).json() == updated

    event = await events.wait_for("updated", created["id"])
    assert hash_secret(created["key"]) in event.key_hashes
    rows = await audit_rows(db, created["id"])
    assert [r.action for r in rows] == ["key.created", "key.updated"]
    assert rows[-1].details["changes"] == {"rpm_limit": 1200, "tpm_limit": None, "budget_period": None}

    empty = await client.patch(f"/v1/keys/{created['id']}", json={})
    assert empty.status_code == 200 and empty.json() == updated  # a no-op: nothing written (updated_at kept)
    assert [r.action for r in await audit_rows(db, created["id"])] == ["key.created", "key.updated"]

    renamed = (
        await client.patch(f"/v1/keys/{created['id']}", json={"name": "new", "metadata": {"a": 1}, "expires_at": None})
    ).json()
    assert renamed["name"] == "new" and renamed["metadata"] == {"a": 1} and renamed["expires_at"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"unknown": 1},
        {"name": None},
        {"name": ""},
        {"rpm_limit": 0},
        {"budget_usd": -1},
        {"budget_period": "hourly"},
        {"models": [" "]},
        {"metadata": None},
        {"expires_at": "soon"},
        {"status": "active"},
        {"key_hash": "x"},
    ],
)
async def test_patch_validation_is_422(client, body):
    created = await create(client)
    assert_error(await client.patch(f"/v1/keys/{created['id']}", json=body), 422, "invalid_request_error")


async def test_patch_unknown_is_404(client):
    assert_error(await client.patch("/v1/keys/nope", json={"rpm_limit": 1}), 404, "not_found_error")


async def test_revoked_key_cannot_be_patched_or_rotated(client):
    created = await create(client)
    assert (await client.delete(f"/v1/keys/{created['id']}")).status_code == 204
    assert_error(await client.patch(f"/v1/keys/{created['id']}", json={"name": "again"}), 409, "conflict_error")
    assert_error(await client.patch(f"/v1/keys/{created['id']}", json={"expires_at": None}), 409, "conflict_error")
    assert_error(await client.post(f"/v1/keys/{created['id']}/rotate"), 409, "conflict_error")
    assert (await client.get(f"/v1/keys/{created['id']}")).json()["status"] == "revoked"


# --- rotate -------------------------------------------------------------------------------------
async def test_rotate_without_body_replaces_secret_at_once(client, db, events):
    created = await create(client)
    response = await client.post(f"/v1/keys/{created['id']}/rotate")
    assert response.status_code == 200, response.text
    rotated = response.json()
    assert rotated["key"] != created["key"] and rotated["key"].startswith("sk-llmgw-")
    assert rotated["prefix"] == rotated["key"][:14] and rotated["id"] == created["id"]

    async with db() as session:
        row = await session.get(VirtualKey, created["id"])
        previous = (
            (await session.execute(select(PreviousKeyHash).where(PreviousKeyHash.key_id == created["id"])))
            .scalars()
            .all()
        )
    assert row.key_hash == hash_secret(rotated["key"])
    assert [p.key_hash for p in previous] == [hash_secret(created["key"])]
    assert previous[0].grace_until <= datetime.now(UTC)

    event = await events.wait_for("rotated", created["id"])
    assert set(event.key_hashes) == {hash_secret(created["key"]), hash_secret(rotated["key"])}
    rows = await audit_rows(db, created["id"])
    assert rows[-1].action == "key.rotated"
    assert rows[-1].details == {"old_prefix": created["prefix"], "new_prefix": rotated["prefix"], "grace_seconds": 0}


async def test_rotate_with_grace_and_empty_body(client, db):
    created = await create(client)
    assert (await client.post(f"/v1/keys/{created['id']}/rotate", json={})).status_code == 200
    response = await client.post(f"/v1/keys/{created['id']}/rotate", json={"grace_seconds": 3600})
    assert response.status_code == 200
    async with db() as session:
        previous = (
            (
                await session.execute(
                    select(PreviousKeyHash)
                    .where(PreviousKeyHash.key_id == created["id"])
                    .order_by(PreviousKeyHash.rotated_at)
                )
            )
            .scalars()
            .all()
        )
    assert len(previous) == 2
    assert previous[1].grace_until > datetime.now(UTC) + timedelta(minutes=59)


@pytest.mark.parametrize(
    "body", [{"grace_seconds": -1}, {"grace_seconds": "1h"}, {"grace": 5}, {"grace_seconds": 10**9}]
)
async def test_rotate_validation_is_422(client, body):
    created = await create(client)
    assert_error(await client.post(f"/v1/keys/{created['id']}/rotate", json=body), 422, "invalid_request_error")


async def test_rotate_unknown_is_404(client):
    assert_error(await client.post("/v1/keys/nope/rotate"), 404, "not_found_error")


# --- revoke -------------------------------------------------------------------------------------
async def test_revoke_is_soft_and_idempotent(client, db, events):
    created = await create(client)
    rotated = (await client.post(f"/v1/keys/{created['id']}/rotate", json={"grace_seconds": 600})).json()
    response = await client.delete(f"/v1/keys/{created['id']}")
    assert response.status_code == 204 and response.content == b""
    fetched = (await client.get(f"/v1/keys/{created['id']}")).json()
    assert fetched["status"] == "revoked" and fetched["revoked_at"]

    event = await events.wait_for("revoked", created["id"])
    assert set(event.key_hashes) == {hash_secret(created["key"]), hash_secret(rotated["key"])}

    assert (await client.delete(f"/v1/keys/{created['id']}")).status_code == 204
    rows = await audit_rows(db, created["id"])
    assert [r.action for r in rows] == ["key.created", "key.rotated", "key.revoked"]
    assert len(events.matching("revoked", created["id"])) == 1


async def test_revoke_unknown_is_404(client):
    assert_error(await client.delete("/v1/keys/nope"), 404, "not_found_error")


# --- events carry trace context, audit endpoint ---------------------------------------------------
async def test_events_are_durable_in_jetstream(client, nc):
    created = await create(client)
    js = nc.jetstream()
    info = await js.stream_info("LLMGW_KEY_EVENTS")
    assert info.state.messages >= 1
    msg = await js.get_last_msg("LLMGW_KEY_EVENTS", "llmgw.v1.keys.changed")
    assert created["id"].encode() in msg.data


async def test_audit_endpoint_paginates_newest_first(client):
    created = await create(client)
    await client.patch(f"/v1/keys/{created['id']}", json={"rpm_limit": 5})
    await client.post(f"/v1/keys/{created['id']}/rotate")
    await client.delete(f"/v1/keys/{created['id']}")
    first = (await client.get("/v1/audit", params={"target_id": created["id"], "limit": 2})).json()
    assert [e["action"] for e in first["data"]] == ["key.revoked", "key.rotated"]
    second = (await client.get("/v1/audit", params={"target_id": created["id"], "cursor": first["next_cursor"]})).json()
    assert [e["action"] for e in second["data"]] == ["key.updated", "key.created"]
    assert second["next_cursor"] is None
    entry = second["data"][-1]
    assert set(entry) == {"id", "at", "actor", "action", "target_type", "target_id", "details"}
    assert entry["actor"] == "bootstrap"
    by_action = (await client.get("/v1/audit", params={"action": "key.revoked", "limit": 1000})).json()["data"]
    assert by_action and all(e["action"] == "key.revoked" for e in by_action)
    assert_error(await client.get("/v1/audit", params={"limit": 0}), 422, "invalid_request_error")
    assert_error(await client.get("/v1/audit", params={"cursor": "zz"}), 422, "invalid_request_error")
