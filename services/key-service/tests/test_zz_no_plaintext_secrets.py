"""Runs last (file order): no plaintext secret is stored anywhere in the databases of this run.

Every virtual key, admin token and provider API key the tests handled was recorded per database
(``secret_registry``); this scans the text of every row of every table of those databases.
It also runs a scenario of its own, so it proves something when run alone too.
"""

from __future__ import annotations

import logging
import secrets

import asyncpg
from conftest import ADMIN_TOKEN


async def table_texts(database_url: str) -> dict[str, str]:
    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
        texts = {}
        for row in tables:
            name = f'"{row["table_schema"]}"."{row["table_name"]}"'
            rows = await conn.fetch(f"SELECT t::text AS line FROM {name} t")
            texts[name] = "\n".join(r["line"] for r in rows)
        return texts
    finally:
        await conn.close()


async def test_scenario_then_scan(client, settings, caplog, secret_registry):
    caplog.set_level(logging.DEBUG)
    provider_key = "sk-scan-provider-" + secrets.token_urlsafe(24)
    secret_registry.add(settings.database_url, provider_key)
    key = (await client.post("/v1/keys", json={"name": "scan", "metadata": {"note": "nothing secret"}})).json()
    rotated = (await client.post(f"/v1/keys/{key['id']}/rotate", json={"grace_seconds": 60})).json()
    token = (await client.post("/v1/admin-tokens", json={"name": "scan", "role": "analyst"})).json()
    assert (
        await client.put(
            "/v1/providers/scan", json={"kind": "openai", "base_url": "https://s.example/v1", "api_key": provider_key}
        )
    ).status_code == 200
    await client.delete(f"/v1/keys/{key['id']}")
    handed_out = [key["key"], rotated["key"], token["token"], provider_key, ADMIN_TOKEN]

    texts = await table_texts(settings.database_url)
    assert '"keys"."virtual_keys"' in texts and '"keys"."providers"' in texts
    everything = "\n".join(texts.values())
    assert key["prefix"] in everything  # the scan does see the data...
    for secret in handed_out:
        assert secret not in everything  # ...but never a secret
    for record in caplog.records:
        message = record.getMessage()
        for secret in handed_out:
            assert secret not in message, record.name


async def test_no_plaintext_secret_in_any_database_of_this_run(secret_registry):
    scanned = 0
    for database_url, values in secret_registry.by_database.items():
        values = {v for v in values if len(v) >= 16}
        texts = await table_texts(database_url)
        for table, content in texts.items():
            leaked = [v[:12] + "…" for v in values if v in content]
            assert not leaked, f"plaintext secret(s) {leaked} stored in {table} of {database_url}"
        scanned += len(values)
    assert scanned >= 5
