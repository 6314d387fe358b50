"""``GET|DELETE /v1/cache``: stats and purge of the edge proxies' response cache (the JetStream KV
bucket ``llmgw_response_cache``), against a real NATS. Entries are written here the way the proxies
key them (``<project token>.<digest>``)."""

from __future__ import annotations

import nats.js.errors
import pytest
from conftest import auth
from llmgw_common import contract

BUCKET = contract.KV_BUCKET_RESPONSE_CACHE


def cache_key(project: str, n: int) -> str:
    return f"{contract.response_cache_project_token(project)}.{n:064x}"


@pytest.fixture
async def no_bucket(nc):
    js = nc.jetstream()
    try:
        await js.delete_key_value(BUCKET)
    except nats.js.errors.NotFoundError:
        pass
    yield js
    try:
        await js.delete_key_value(BUCKET)
    except nats.js.errors.NotFoundError:
        pass


async def test_stats_and_purge_before_any_proxy_created_the_bucket(client, no_bucket):
    response = await client.get("/v1/cache")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "bucket": BUCKET, "exists": False, "project": None, "entries": 0, "bytes": 0, "max_bytes": None,
        "max_age_seconds": None,
    }
    response = await client.delete("/v1/cache")
    assert response.status_code == 200, response.text
    assert response.json() == {"bucket": BUCKET, "project": None, "purged": 0}


async def test_stats_then_purge_one_project_then_everything(client, no_bucket):
    kv = await no_bucket.create_key_value(bucket=BUCKET, history=1, ttl=600, max_bytes=10 * 1024 * 1024)
    for n in range(3):
        await kv.put(cache_key("search", n), b"x" * 100)
    await kv.put(cache_key("billing team", 0), b"y" * 100)
    await kv.put(cache_key("search", 0), b"z" * 100)  # overwritten: still one entry (history 1)

    stats = (await client.get("/v1/cache")).json()
    assert stats["exists"] is True and stats["entries"] == 4 and stats["bytes"] > 400
    assert stats["max_bytes"] == 10 * 1024 * 1024 and stats["max_age_seconds"] == 600
    assert (await client.get("/v1/cache", params={"project": "search"})).json() == {
        "bucket": BUCKET, "exists": True, "project": "search", "entries": 3, "bytes": None,
        "max_bytes": 10 * 1024 * 1024, "max_age_seconds": 600,
    }
    assert (await client.get("/v1/cache", params={"project": "billing team"})).json()["entries"] == 1
    assert (await client.get("/v1/cache", params={"project": "nobody"})).json()["entries"] == 0

    response = await client.delete("/v1/cache", params={"project": "search"})
    assert response.status_code == 200 and response.json() == {"bucket": BUCKET, "project": "search", "purged": 3}
    with pytest.raises(nats.js.errors.KeyNotFoundError):
        await kv.get(cache_key("search", 1))
    assert (await kv.get(cache_key("billing team", 0))).value == b"y" * 100  # other projects untouched
    assert (await client.get("/v1/cache")).json()["entries"] == 1

    response = await client.delete("/v1/cache")
    assert response.json() == {"bucket": BUCKET, "project": None, "purged": 1}
    assert (await client.get("/v1/cache")).json()["entries"] == 0
    # purges are audited (who, what, how many)
    audit = (await client.get("/v1/audit", params={"action": "response_cache.purged"})).json()["data"]
    assert [entry["details"] for entry in audit[:2]] == [
        {"purged": 1, "project": None},
        {"purged": 3, "project": "search"},
    ]


async def test_cache_endpoints_are_admin_only(client):
    analyst = (await client.post("/v1/admin-tokens", json={"name": "cache-reader", "role": "analyst"})).json()
    for method in ("GET", "DELETE"):
        assert (await client.request(method, "/v1/cache", headers=auth(analyst["token"]))).status_code == 403
        assert (await client.request(method, "/v1/cache", headers={"Authorization": ""})).status_code == 401


async def test_project_filter_is_validated(client):
    response = await client.get("/v1/cache", params={"project": "x" * 201})
    assert response.status_code in (400, 422)
    assert response.json()["error"]["type"] == "invalid_request_error"
