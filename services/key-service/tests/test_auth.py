"""Admin authentication and roles: bootstrap token, API tokens (admin/analyst), 401 vs 403."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import ADMIN_TOKEN, auth, wait_until
from llmgw_common.contract import SUBJECT_AUTH_CHANGED, auth_token_revoked_decoder, hash_secret
from sqlalchemy import select

from llmgw_keys.models import AdminToken

ADMIN_ROUTES = [
    ("POST", "/v1/keys", {"name": "x"}),
    ("PATCH", "/v1/keys/{id}", {"name": "y"}),
    ("POST", "/v1/keys/{id}/rotate", None),
    ("DELETE", "/v1/keys/{id}", None),
    ("GET", "/v1/providers", None),
    ("GET", "/v1/providers/openai", None),
    ("PUT", "/v1/providers/p1", {"kind": "openai", "base_url": "https://example.com/v1"}),
    ("DELETE", "/v1/providers/p1", None),
    ("GET", "/v1/routes", None),
    ("PUT", "/v1/routes", {"data": []}),
    ("GET", "/v1/admin-tokens", None),
    ("POST", "/v1/admin-tokens", {"name": "t", "role": "admin"}),
    ("DELETE", "/v1/admin-tokens/{id}", None),
    ("GET", "/v1/audit", None),
    ("GET", "/v1/cache", None),
    ("DELETE", "/v1/cache", None),
]
READ_ROUTES = [("GET", "/v1/keys", None), ("GET", "/v1/keys/{id}", None)]
ALL_ROUTES = ADMIN_ROUTES + READ_ROUTES


async def send(client, method, path, body, headers):
    return await client.request(method, path, json=body, headers=headers)


@pytest.fixture(scope="module")
async def some_key(client):
    return (await client.post("/v1/keys", json={"name": "target"})).json()


@pytest.fixture(scope="module")
async def tokens(client):
    admin = await client.post("/v1/admin-tokens", json={"name": "ops", "role": "admin"})
    analyst = await client.post("/v1/admin-tokens", json={"name": "grafana", "role": "analyst"})
    assert admin.status_code == 201 and analyst.status_code == 201, (admin.text, analyst.text)
    return {"admin": admin.json(), "analyst": analyst.json()}


def fill(path: str, key_id: str) -> str:
    return path.replace("{id}", key_id)


@pytest.mark.parametrize(("method", "path", "body"), ALL_ROUTES)
async def test_missing_token_is_401(client, some_key, method, path, body):
    response = await send(client, method, fill(path, some_key["id"]), body, {"Authorization": ""})
    assert response.status_code == 401, response.text
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer wrong",
        "Bearer " + ADMIN_TOKEN + "x",
        "Basic " + ADMIN_TOKEN,
        ADMIN_TOKEN,
        "Bearer ",
        "Bearer é-unicode".encode(),
    ],
)
async def test_invalid_token_is_401(client, header):
    response = await client.get("/v1/keys", headers={"Authorization": header})
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["error"]["type"] == "authentication_error"
    assert ADMIN_TOKEN not in response.text


async def test_virtual_key_is_not_an_admin_token(client, some_key):
    response = await client.get("/v1/keys", headers=auth(some_key["key"]))
    assert response.status_code == 401


async def test_bootstrap_token_scheme_is_case_insensitive(client):
    assert (await client.get("/v1/keys", headers={"Authorization": f"bearer {ADMIN_TOKEN}"})).status_code == 200


async def test_created_tokens_are_shown_once_and_stored_hashed(client, db, tokens):
    admin = tokens["admin"]
    assert admin["token"].startswith("llmgw-at-") and len(admin["token"]) > 40
    assert admin["prefix"] == admin["token"][:14] and admin["role"] == "admin"
    assert admin["created_by"] == "bootstrap" and admin["revoked_at"] is None
    listed = (await client.get("/v1/admin-tokens")).json()["data"]
    by_id = {t["id"]: t for t in listed}
    assert by_id[admin["id"]] == {k: v for k, v in admin.items() if k != "token"}
    assert "token" not in by_id[tokens["analyst"]["id"]]
    async with db() as session:
        row = (await session.execute(select(AdminToken).where(AdminToken.id == admin["id"]))).scalar_one()
    assert row.token_hash == hash_secret(admin["token"])


async def test_api_admin_token_can_do_everything_and_is_the_audit_actor(client, tokens):
    headers = auth(tokens["admin"]["token"])
    created = await client.post("/v1/keys", json={"name": "by-api-admin"}, headers=headers)
    assert created.status_code == 201
    audit = (await client.get("/v1/audit", params={"target_id": created.json()["id"]}, headers=headers)).json()
    assert audit["data"][0]["actor"] == tokens["admin"]["id"]
    assert (await client.get("/v1/providers", headers=headers)).status_code == 200


@pytest.mark.parametrize(("method", "path", "body"), ALL_ROUTES)
async def test_analyst_gets_403_on_admin_routes(client, tokens, some_key, method, path, body):
    response = await send(client, method, fill(path, some_key["id"]), body, auth(tokens["analyst"]["token"]))
    assert response.status_code == 403, response.text
    assert response.json()["error"]["type"] == "permission_error"


@pytest.mark.parametrize("path", ["/v1/keys/{id}", "/v1/keys/{id}/rotate"])
async def test_analyst_cannot_probe_existence(client, tokens, path):
    """Same 403 for an existing and a missing id: nothing leaks."""
    headers = auth(tokens["analyst"]["token"])
    unknown = await client.delete(fill("/v1/keys/{id}", "no-such-key"), headers=headers)
    assert unknown.status_code == 403
    patch_unknown = await client.patch("/v1/keys/no-such-key", json={"name": "x"}, headers=headers)
    assert patch_unknown.status_code == 403


async def test_analyst_reads_usage_only_not_key_records(client, tokens, some_key):
    """Issue: analyst = "read usage only". Key records (owner metadata, limits) stay admin-only."""
    headers = auth(tokens["analyst"]["token"])
    for path in ("/v1/keys", f"/v1/keys/{some_key['id']}", "/v1/keys/no-such-key"):
        response = await client.get(path, headers=headers)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["error"]["type"] == "permission_error"


async def test_revoked_admin_token_stops_working(client, db, nc):
    collected = SimpleNamespace(messages=[])

    async def collect(msg):
        collected.messages.append(msg)

    subscription = await nc.subscribe(SUBJECT_AUTH_CHANGED, cb=collect)
    await nc.flush()
    created = (await client.post("/v1/admin-tokens", json={"name": "temp", "role": "admin"})).json()
    assert (await client.get("/v1/keys", headers=auth(created["token"]))).status_code == 200
    assert (await client.delete(f"/v1/admin-tokens/{created['id']}")).status_code == 204
    assert (await client.get("/v1/keys", headers=auth(created["token"]))).status_code == 401
    # the revocation was announced (metering drops its cached verification at once)
    await wait_until(lambda: collected.messages, what="revocation announced on " + SUBJECT_AUTH_CHANGED)
    assert [auth_token_revoked_decoder.decode(m.data).token_hash for m in collected.messages] == [
        hash_secret(created["token"])
    ]
    assert created["token"].encode() not in collected.messages[0].data
    assert (await client.delete(f"/v1/admin-tokens/{created['id']}")).status_code == 204  # idempotent
    listed = {t["id"]: t for t in (await client.get("/v1/admin-tokens")).json()["data"]}
    assert listed[created["id"]]["revoked_at"] is not None
    audit = (await client.get("/v1/audit", params={"target_id": created["id"]})).json()["data"]
    assert [e["action"] for e in audit] == ["admin_token.revoked", "admin_token.created"]
    assert len(collected.messages) == 1  # the idempotent second DELETE announces nothing
    await subscription.unsubscribe()


async def test_admin_token_errors(client):
    assert (await client.delete("/v1/admin-tokens/nope")).status_code == 404
    for body in (
        {"name": "x", "role": "root"},
        {"role": "admin"},
        {"name": "x", "role": "admin", "token": "mine"},
        {"name": ""},
    ):
        response = await client.post("/v1/admin-tokens", json=body)
        assert response.status_code == 422, (body, response.text)
    default_role = await client.post("/v1/admin-tokens", json={"name": "default-role"})
    assert default_role.status_code == 201 and default_role.json()["role"] == "admin"


async def test_open_endpoints_need_no_token(client):
    no_auth = {"Authorization": ""}
    assert (await client.get("/healthz", headers=no_auth)).json() == {"status": "ok"}
    ready = await client.get("/readyz", headers=no_auth)
    assert ready.status_code == 200 and ready.json() == {"status": "ok", "database": True, "nats": True}
    schema = await client.get("/schema/openapi.json", headers=no_auth)
    assert schema.status_code == 200 and "/v1/keys" in schema.json()["paths"]


async def test_unknown_route_is_404_in_error_shape(client):
    response = await client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


async def test_wrong_method_is_405_in_error_shape(client):
    response = await client.put("/v1/keys")
    assert response.status_code == 405
    assert "error" in response.json()


async def test_openapi_documents_every_endpoint_with_examples(client):
    schema = (await client.get("/schema/openapi.json")).json()
    assert (await client.get("/schema", headers={"Authorization": ""})).status_code == 200
    assert (await client.get("/schema/swagger", headers={"Authorization": ""})).status_code == 200
    operations = 0
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            operations += 1
            where = f"{method.upper()} {path}"
            assert operation.get("summary"), where
            assert operation.get("description"), where
            if "requestBody" in operation:
                body_schema = operation["requestBody"]["content"]["application/json"]["schema"]
                assert body_schema.get("examples"), where
            if path.startswith("/v1/"):
                assert operation.get("security") == [{"BearerToken": []}] or schema.get("security"), where
                assert "401" in operation["responses"], where
                ok = [code for code in operation["responses"] if code.startswith("2") and code != "204"]
                for code in ok:
                    content = operation["responses"][code]["content"]["application/json"]
                    assert content.get("examples"), f"{where} {code}"
    assert operations == 20
