"""Providers (encrypted at rest, masked in listings, env-configured ones) and the routing table."""

from __future__ import annotations

import secrets

import pytest
from conftest import ENV_ANTHROPIC_KEY, ENV_OPENAI_KEY
from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy import select, text

from llmgw_keys.models import Provider

OPENAI_DB_KEY = "sk-proj-" + secrets.token_urlsafe(30)


def mask(secret: str) -> str:
    return f"{secret[:3]}...{secret[-4:]}"


@pytest.fixture(autouse=True)
def _register(secret_registry, settings):
    secret_registry.add(settings.database_url, OPENAI_DB_KEY)


async def test_environment_providers_exist_implicitly(client, db):
    listed = (await client.get("/v1/providers")).json()["data"]
    by_name = {p["name"]: p for p in listed}
    assert by_name["openai"] == {
        "name": "openai",
        "kind": "openai",
        "base_url": "https://api.openai.com/v1",
        "api_key": mask(ENV_OPENAI_KEY),
        "source": "environment",
        "created_at": None,
        "updated_at": None,
    }
    assert by_name["anthropic"]["base_url"] == "https://api.anthropic.com"
    assert by_name["anthropic"]["api_key"] == mask(ENV_ANTHROPIC_KEY)
    assert (await client.get("/v1/providers/anthropic")).json()["source"] == "environment"
    async with db() as session:
        assert (await session.execute(select(Provider))).scalars().all() == []  # not persisted


async def test_put_provider_encrypts_and_masks(client, db, settings, events):
    response = await client.put(
        "/v1/providers/azure-east",
        json={
            "kind": "openai-compatible",
            "base_url": "https://azure.example.com/openai/v1/",
            "api_key": OPENAI_DB_KEY,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["api_key"] == mask(OPENAI_DB_KEY) and OPENAI_DB_KEY not in response.text
    assert body["base_url"] == "https://azure.example.com/openai/v1" and body["source"] == "database"
    assert (await client.get("/v1/providers/azure-east")).json() == body
    assert OPENAI_DB_KEY not in (await client.get("/v1/providers")).text

    async with db() as session:
        row = await session.get(Provider, "azure-east")
        raw = (await session.execute(text("SELECT row_to_json(p)::text FROM keys.providers p"))).scalars().all()
    assert OPENAI_DB_KEY not in "".join(raw)
    cipher = MultiFernet([Fernet(settings.encryption_key.encode())])
    assert cipher.decrypt(row.api_key_encrypted.encode()).decode() == OPENAI_DB_KEY  # round trip

    event = await events.wait_for("providers")
    assert event.key_id is None and event.key_hashes == []
    audit = (await client.get("/v1/audit", params={"target_id": "azure-east"})).json()["data"]
    assert audit[0]["action"] == "provider.created"
    assert audit[0]["details"] == {
        "kind": "openai-compatible",
        "base_url": "https://azure.example.com/openai/v1",
        "api_key_changed": True,
    }


async def test_put_without_api_key_keeps_it_and_empty_clears_it(client, db):
    await client.put(
        "/v1/providers/keepme", json={"kind": "openai", "base_url": "https://a.example/v1", "api_key": OPENAI_DB_KEY}
    )
    replaced = await client.put("/v1/providers/keepme", json={"kind": "openai", "base_url": "https://b.example/v1"})
    assert replaced.status_code == 200
    assert replaced.json()["api_key"] == mask(OPENAI_DB_KEY) and replaced.json()["base_url"] == "https://b.example/v1"
    cleared = await client.put(
        "/v1/providers/keepme", json={"kind": "openai", "base_url": "https://b.example/v1", "api_key": ""}
    )
    assert cleared.json()["api_key"] == ""
    async with db() as session:
        assert (await session.get(Provider, "keepme")).api_key_encrypted is None
    actions = [e["action"] for e in (await client.get("/v1/audit", params={"target_id": "keepme"})).json()["data"]]
    assert actions == ["provider.updated", "provider.updated", "provider.created"]


async def test_database_row_overrides_environment_provider(client):
    own_key = "sk-override-" + secrets.token_urlsafe(20)
    client.registry.add(client.database_url, own_key)
    response = await client.put(
        "/v1/providers/openai", json={"kind": "openai", "base_url": "http://mock:9000/v1", "api_key": own_key}
    )
    assert response.status_code == 200
    listed = {p["name"]: p for p in (await client.get("/v1/providers")).json()["data"]}
    assert listed["openai"]["source"] == "database" and listed["openai"]["base_url"] == "http://mock:9000/v1"
    # deleting the row brings the environment provider back
    assert (await client.delete("/v1/providers/openai")).status_code == 204
    assert (await client.get("/v1/providers/openai")).json()["source"] == "environment"


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "bedrock", "base_url": "https://x.example"},
        {"kind": "openai", "base_url": "ftp://x.example"},
        {"kind": "openai", "base_url": "not a url"},
        {"kind": "openai"},
        {"base_url": "https://x.example"},
        {"kind": "openai", "base_url": "https://x.example", "api_key": "a\u0000b"},
        {"kind": "openai", "base_url": "https://x.example", "extra": True},
    ],
)
async def test_put_provider_validation_is_422(client, body):
    response = await client.put("/v1/providers/p-bad", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("name", ["has.dot", "has space", "x" * 65, "star*"])
async def test_provider_name_rules(client, name):
    response = await client.put(f"/v1/providers/{name}", json={"kind": "openai", "base_url": "https://x.example/v1"})
    assert response.status_code == 422
    assert (await client.get(f"/v1/providers/{name}")).status_code == 404
    assert (await client.delete(f"/v1/providers/{name}")).status_code == 404


async def test_provider_not_found_and_delete_conflicts(client):
    assert (await client.get("/v1/providers/nope")).status_code == 404
    assert (await client.delete("/v1/providers/nope")).status_code == 404
    env_only = await client.delete("/v1/providers/anthropic")
    assert env_only.status_code == 409 and "LLMGW_ANTHROPIC" in env_only.json()["error"]["message"]

    await client.put("/v1/providers/vllm", json={"kind": "openai-compatible", "base_url": "http://vllm:8000/v1"})
    routes = {"data": [{"model": "llama-*", "deployments": [{"provider": "vllm", "model": "*"}]}]}
    assert (await client.put("/v1/routes", json=routes)).status_code == 200
    in_use = await client.delete("/v1/providers/vllm")
    assert in_use.status_code == 409 and in_use.json()["error"]["type"] == "conflict_error"
    assert (await client.put("/v1/routes", json={"data": []})).status_code == 200
    assert (await client.delete("/v1/providers/vllm")).status_code == 204
    assert (await client.get("/v1/providers/vllm")).status_code == 404


# --- routes --------------------------------------------------------------------------------------
DEFAULTS = [
    {"model": "claude-*", "deployments": [{"provider": "anthropic", "model": "*", "weight": 1, "priority": 0}]},
    {"model": "*", "deployments": [{"provider": "openai", "model": "*", "weight": 1, "priority": 0}]},
]


async def test_routes_default_replace_and_reset(client, events):
    assert (await client.put("/v1/routes", json={"data": []})).status_code == 200
    assert (await client.get("/v1/routes")).json() == {"data": DEFAULTS, "source": "default"}

    await client.put(
        "/v1/providers/azure-east", json={"kind": "openai-compatible", "base_url": "https://azure.example.com/v1"}
    )
    table = [
        {
            "model": "gpt-4o",
            "deployments": [
                {"provider": "azure-east", "model": "gpt-4o", "weight": 3},
                {"provider": "openai", "model": "gpt-4o", "weight": 1, "priority": 0},
                {"provider": "openai", "model": "gpt-4o-mini", "priority": 1},
            ],
        },
        {"model": "claude-*", "deployments": [{"provider": "anthropic", "model": "*"}]},
    ]
    before = len(events.matching("routes"))
    response = await client.put("/v1/routes", json={"data": table})
    assert response.status_code == 200, response.text
    expected = [
        {
            "model": "gpt-4o",
            "deployments": [
                {"provider": "azure-east", "model": "gpt-4o", "weight": 3, "priority": 0},
                {"provider": "openai", "model": "gpt-4o", "weight": 1, "priority": 0},
                {"provider": "openai", "model": "gpt-4o-mini", "weight": 1, "priority": 1},
            ],
        },
        {"model": "claude-*", "deployments": [{"provider": "anthropic", "model": "*", "weight": 1, "priority": 0}]},
    ]
    assert response.json() == {"data": expected, "source": "configured"}
    assert (await client.get("/v1/routes")).json() == {"data": expected, "source": "configured"}
    await events.wait_for("routes")
    assert len(events.matching("routes")) > before

    # the bare list is accepted too
    bare = await client.put(
        "/v1/routes", json=[{"model": "x-*", "deployments": [{"provider": "openai", "model": "*"}]}]
    )
    assert bare.status_code == 200 and [r["model"] for r in bare.json()["data"]] == ["x-*"]

    audit = (await client.get("/v1/audit", params={"action": "routes.replaced", "limit": 1})).json()["data"]
    assert audit[0]["details"] == {"models": ["x-*"]}
    assert (await client.put("/v1/routes", json={"data": []})).json()["source"] == "default"


@pytest.mark.parametrize(
    "body",
    [
        {"data": [{"model": "m", "deployments": [{"provider": "ghost", "model": "*"}]}]},
        {"data": [{"model": "m", "deployments": []}]},
        {"data": [{"model": "m", "deployments": [{"provider": "openai", "model": "*", "weight": 0}]}]},
        {"data": [{"model": "m", "deployments": [{"provider": "openai", "model": "*", "priority": -1}]}]},
        {
            "data": [
                {"model": "m", "deployments": [{"provider": "openai", "model": "*"}]},
                {"model": "m", "deployments": [{"provider": "openai", "model": "*"}]},
            ]
        },
        {"data": [{"model": "", "deployments": [{"provider": "openai", "model": "*"}]}]},
        {"data": [{"model": "m", "deployments": [{"provider": "openai"}]}]},
        {"routes": []},
        {"data": [{"model": "m", "deployments": [{"provider": "openai", "model": "*", "region": "eu"}]}]},
    ],
)
async def test_put_routes_validation_is_422(client, body):
    response = await client.put("/v1/routes", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
