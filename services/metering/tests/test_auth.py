"""Bearer auth: bootstrap admin token locally; API-created tokens verified over NATS (a real
subscription standing in for key-service), cached; roles; 401/403/503 shapes."""

from __future__ import annotations

import asyncio

import pytest_asyncio

from helpers import ADMIN_TOKEN
from llmgw_common.contract import (
    QUEUE_GROUP_KEY_SERVICE,
    SUBJECT_AUTH_CHANGED,
    SUBJECT_AUTH_VERIFY,
    AuthTokenRevoked,
    AuthVerifyReply,
    auth_verify_request_decoder,
    encode,
    hash_secret,
)

ANALYST = "llmgw-analyst-" + "a" * 40
ADMIN = "llmgw-admin-" + "b" * 40


class KeyServiceStub:
    def __init__(self):
        self.tokens = {
            hash_secret(ANALYST): AuthVerifyReply(valid=True, role="analyst", token_id="tok_analyst"),
            hash_secret(ADMIN): AuthVerifyReply(valid=True, role="admin", token_id="tok_admin"),
        }
        self.requests: list[bytes] = []
        self.sub = None

    async def handle(self, msg):
        self.requests.append(msg.data)
        request = auth_verify_request_decoder.decode(msg.data)
        await msg.respond(encode(self.tokens.get(request.token_hash, AuthVerifyReply(valid=False))))

    def asked(self, token: str) -> int:
        return sum(1 for r in self.requests if auth_verify_request_decoder.decode(r).token_hash == hash_secret(token))


@pytest_asyncio.fixture(scope="module")
async def key_service(nc):
    stub = KeyServiceStub()
    stub.sub = await nc.subscribe(SUBJECT_AUTH_VERIFY, queue=QUEUE_GROUP_KEY_SERVICE, cb=stub.handle)
    await nc.flush()
    yield stub
    if stub.sub is not None:
        await stub.sub.unsubscribe()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def test_missing_or_malformed_credentials_are_401(client, key_service):
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": f"Basic {ADMIN_TOKEN}"}, {"X-Api-Key": ADMIN}):
        response = await client.get("/v1/usage", headers=headers)
        assert response.status_code == 401, headers
        assert response.json() == {
            "error": {"type": "authentication_error", "message": response.json()["error"]["message"]}
        }


async def test_bootstrap_admin_token_is_checked_locally(client, key_service):
    before = len(key_service.requests)
    for path in ("/v1/usage", "/v1/prices/overrides"):
        response = await client.get(path, headers=bearer(ADMIN_TOKEN))
        assert response.status_code == 200, response.text
    assert len(key_service.requests) == before
    assert (await client.get("/v1/usage", headers=bearer(ADMIN_TOKEN + "x"))).status_code == 401


async def test_analyst_reads_usage_but_not_prices(client, key_service):
    assert (await client.get("/v1/usage", headers=bearer(ANALYST))).status_code == 200
    assert (await client.get("/v1/usage/events", headers=bearer(ANALYST))).status_code == 200
    assert (await client.get("/v1/usage/keys/k", headers=bearer(ANALYST))).status_code == 200
    for method, path in (
        ("GET", "/v1/prices/overrides"),
        ("PUT", "/v1/prices/overrides/m"),
        ("DELETE", "/v1/prices/overrides/m"),
    ):
        response = await client.request(
            method, path, headers=bearer(ANALYST), json={"input_usd_per_mtok": 1, "output_usd_per_mtok": 1}
        )
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"]["type"] == "permission_error"


async def test_api_created_admin_token_manages_prices(client, key_service):
    response = await client.get("/v1/prices/overrides", headers=bearer(ADMIN))
    assert response.status_code == 200


async def test_unknown_token_is_401_and_only_its_hash_travels(client, key_service):
    token = "llmgw-admin-not-issued-" + "c" * 30
    response = await client.get("/v1/usage", headers=bearer(token))
    assert response.status_code == 401
    assert response.json()["error"] == {"type": "authentication_error", "message": "invalid token"}
    assert key_service.asked(token) == 1
    assert all(token.encode() not in body for body in key_service.requests)
    # the negative answer is cached briefly: no second round trip
    assert (await client.get("/v1/usage", headers=bearer(token))).status_code == 401
    assert key_service.asked(token) == 1


async def test_valid_answers_are_cached(client, key_service):
    for _ in range(5):
        assert (await client.get("/v1/usage", headers=bearer(ANALYST))).status_code == 200
    assert key_service.asked(ANALYST) == 1


async def test_an_announced_revocation_drops_the_cached_answer_at_once(client, key_service, nc):
    token = "llmgw-analyst-soon-revoked-" + "e" * 30
    key_service.tokens[hash_secret(token)] = AuthVerifyReply(valid=True, role="analyst", token_id="tok_soon")
    assert (await client.get("/v1/usage", headers=bearer(token))).status_code == 200
    assert (await client.get("/v1/usage", headers=bearer(token))).status_code == 200
    assert key_service.asked(token) == 1  # cached (30 s by default)
    assert (await client.get("/v1/usage", headers=bearer(ANALYST))).status_code == 200
    asked = key_service.asked(ANALYST)
    # key-service revokes it: its verification now says invalid, and it announces the revocation
    key_service.tokens[hash_secret(token)] = AuthVerifyReply(valid=False)
    await nc.publish(SUBJECT_AUTH_CHANGED, encode(AuthTokenRevoked(token_hash=hash_secret(token))))
    await nc.flush()
    deadline = asyncio.get_running_loop().time() + 5
    while (status := (await client.get("/v1/usage", headers=bearer(token))).status_code) != 401:
        assert asyncio.get_running_loop().time() < deadline, f"revoked token still answered {status}"
        await asyncio.sleep(0.05)
    assert key_service.asked(token) == 2
    # other cached tokens are untouched
    assert (await client.get("/v1/usage", headers=bearer(ANALYST))).status_code == 200
    assert key_service.asked(ANALYST) == asked


async def test_key_service_down_is_503_but_bootstrap_still_works(client, key_service):
    await key_service.sub.unsubscribe()
    key_service.sub = None
    fresh = "llmgw-analyst-uncached-" + "d" * 30
    response = await client.get("/v1/usage", headers=bearer(fresh))
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "service_unavailable"
    assert (await client.get("/v1/usage", headers=bearer(ADMIN_TOKEN))).status_code == 200
    # cached valid answers keep working through a short key-service outage
    assert (await client.get("/v1/usage", headers=bearer(ANALYST))).status_code == 200


async def test_health_needs_no_token(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
    assert (await client.get("/metrics")).status_code == 200
