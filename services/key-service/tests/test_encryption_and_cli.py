"""Provider-key encryption at rest (round trip, MultiFernet rotation via the CLI), the generated
dev key, ``python -m llmgw_keys migrate`` under concurrency, and seeding routes from YAML."""

from __future__ import annotations

import asyncio
import os
import stat
import sys

import nats
import pytest
from conftest import ADMIN_TOKEN, auth, lookup, make_settings, wait_until
from cryptography.fernet import Fernet, InvalidToken
from litestar.testing import AsyncTestClient
from llmgw_common import contract
from llmgw_common.contract import hash_secret
from sqlalchemy import text

from llmgw_keys.app import create_app
from llmgw_keys.crypto import EncryptionKeyError, build_cipher
from llmgw_keys.services.providers import rotate_encryption
from llmgw_keys.settings import Settings

PROVIDER_KEY = "sk-rotate-me-" + "z" * 24


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGW_")}
    env.update(extra)
    return env


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "llmgw_keys",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


async def stored_token(db) -> str:
    async with db() as session:
        return (
            await session.execute(text("SELECT api_key_encrypted FROM keys.providers WHERE name = 'rot'"))
        ).scalar_one()


async def test_rotate_encryption_end_to_end(settings, nats_url, tmp_path, db, nc, secret_registry):
    key1, key2, key3 = (Fernet.generate_key().decode() for _ in range(3))
    secret_registry.add(settings.database_url, PROVIDER_KEY)
    first = make_settings(settings.database_url, nats_url, tmp_path, encryption_key=key1)
    async with AsyncTestClient(create_app(first)) as client:
        client.headers.update(auth(ADMIN_TOKEN))
        response = await client.put(
            "/v1/providers/rot",
            json={"kind": "openai-compatible", "base_url": "http://rot:1/v1", "api_key": PROVIDER_KEY},
        )
        assert response.status_code == 200
        await client.put(
            "/v1/routes", json={"data": [{"model": "*", "deployments": [{"provider": "rot", "model": "*"}]}]}
        )
        created = (await client.post("/v1/keys", json={"name": "enc"})).json()
        secret_registry.add(settings.database_url, created["key"])
    before = await stored_token(db)
    assert Fernet(key1.encode()).decrypt(before.encode()).decode() == PROVIDER_KEY

    # a key that cannot decrypt the rows: refused, nothing changed
    wrong = make_settings(settings.database_url, nats_url, tmp_path, encryption_key=key3)
    assert await rotate_encryption(db, build_cipher(wrong)) == (0, ["rot"])
    assert await stored_token(db) == before

    # new key first, old one after: every row re-encrypted with the new key
    code, out, err = await run_cli(
        "rotate-encryption",
        env=cli_env(LLMGW_DATABASE_URL=settings.database_url, LLMGW_ENCRYPTION_KEY=f"{key2},{key1}"),
    )
    assert code == 0, err
    assert "re-encrypted 1" in out
    after = await stored_token(db)
    assert after != before
    assert Fernet(key2.encode()).decrypt(after.encode()).decode() == PROVIDER_KEY
    with pytest.raises(InvalidToken):
        Fernet(key1.encode()).decrypt(after.encode())
    for secret in (key1, key2, PROVIDER_KEY):
        assert secret not in out + err

    # the old key can now be dropped: the service decrypts with the new one alone
    second = make_settings(settings.database_url, nats_url, tmp_path, encryption_key=key2)
    async with AsyncTestClient(create_app(second)):
        reply = await lookup(nc, hash_secret(created["key"]))
        assert [(p.name, p.api_key) for p in reply.providers] == [("rot", PROVIDER_KEY)]
    # ...while a service with only the old key cannot use that provider (and says so in its log)
    third = make_settings(settings.database_url, nats_url, tmp_path, encryption_key=key1)
    async with AsyncTestClient(create_app(third)):
        reply = await lookup(nc, hash_secret(created["key"]))
        assert reply.found and reply.providers == []


def test_invalid_encryption_key_is_refused_without_echoing_it(tmp_path):
    bad = "definitely-not-a-fernet-key"
    with pytest.raises(EncryptionKeyError) as info:
        build_cipher(Settings(encryption_key=bad, state_dir=tmp_path))
    assert bad not in str(info.value)
    with pytest.raises(EncryptionKeyError):
        build_cipher(Settings(encryption_key=f"{Fernet.generate_key().decode()},{bad}", state_dir=tmp_path))


def test_unset_encryption_key_is_generated_once_in_the_state_dir(tmp_path, caplog):
    cipher = build_cipher(Settings(encryption_key=None, state_dir=tmp_path))
    path = tmp_path / "encryption_key"
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "production MUST set LLMGW_ENCRYPTION_KEY" in caplog.text
    token = cipher.encrypt(b"x")
    again = build_cipher(Settings(encryption_key=None, state_dir=tmp_path))
    assert again.decrypt(token) == b"x"
    assert path.read_text().strip() not in caplog.text


async def test_migrate_cli_is_safe_to_run_concurrently(make_database):
    url = make_database("mig")
    env = cli_env(LLMGW_DATABASE_URL=url)
    results = await asyncio.gather(*(run_cli("migrate", env=env) for _ in range(2)))
    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT version_num FROM keys.alembic_version") == "0001"
        tables = {
            r["table_name"]
            for r in await conn.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = 'keys'")
        }
        assert {
            "virtual_keys",
            "previous_key_hashes",
            "providers",
            "route_table",
            "admin_tokens",
            "audit_log",
            "event_outbox",
            "alembic_version",
        } <= tables
        assert await conn.fetchval("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'") == 0
    finally:
        await conn.close()
    from llmgw_keys.migrate import migrate

    await migrate(Settings(database_url=url))  # idempotent


def test_cli_without_database_url_fails_clearly(capsys):
    from llmgw_keys.__main__ import main

    assert main(["migrate"]) == 2
    assert "LLMGW_DATABASE_URL" in capsys.readouterr().err


ROUTES_YAML = """\
# seeded at first start
routes:
  - model: gpt-4o
    deployments:
      - {provider: openai, model: gpt-4o, weight: 3}
      - {provider: openai, model: gpt-4o-mini, priority: 1}
  - model: claude-*
    deployments:
      - provider: anthropic
        model: "*"
"""


async def test_routes_are_seeded_from_yaml_once(make_database, nats_url, tmp_path):
    url = make_database("seed")
    from llmgw_keys.migrate import migrate

    await migrate(Settings(database_url=url))
    routes_file = tmp_path / "routes.yaml"
    routes_file.write_text(ROUTES_YAML)
    seeded = make_settings(url, nats_url, tmp_path, routes_file=routes_file)
    expected = [
        {
            "model": "gpt-4o",
            "deployments": [
                {"provider": "openai", "model": "gpt-4o", "weight": 3, "priority": 0},
                {"provider": "openai", "model": "gpt-4o-mini", "weight": 1, "priority": 1},
            ],
        },
        {"model": "claude-*", "deployments": [{"provider": "anthropic", "model": "*", "weight": 1, "priority": 0}]},
    ]
    async with AsyncTestClient(create_app(seeded)) as client:
        client.headers.update(auth(ADMIN_TOKEN))
        assert (await client.get("/v1/routes")).json() == {"data": expected, "source": "configured"}
        audit = (await client.get("/v1/audit", params={"action": "routes.seeded"})).json()["data"]
        assert len(audit) == 1 and audit[0]["actor"] == "system"
        await client.put("/v1/routes", json={"data": [expected[1]]})
    # a restart (even with another file) never overwrites a configured table
    routes_file.write_text("routes: []\n")
    async with AsyncTestClient(create_app(seeded)) as client:
        client.headers.update(auth(ADMIN_TOKEN))
        assert (await client.get("/v1/routes")).json() == {"data": [expected[1]], "source": "configured"}


async def test_invalid_routes_file_stops_startup(make_database, nats_url, tmp_path, nc):
    url = make_database("badseed")
    from llmgw_keys.migrate import migrate

    await migrate(Settings(database_url=url))
    routes_file = tmp_path / "routes.yaml"
    routes_file.write_text("routes:\n  - model: x\n    deployments: nope\n")
    with pytest.raises(BaseException) as info:
        async with AsyncTestClient(create_app(make_settings(url, nats_url, tmp_path, routes_file=routes_file))):
            pass
    assert "routes.yaml" in "".join(str(e) for e in flatten(info.value))

    # ...and leaves nothing behind: no zombie subscriber in the lookup queue group
    async def no_responders():
        try:
            await nc.request(contract.SUBJECT_KEY_LOOKUP, b"{}", timeout=0.5)
        except nats.errors.NoRespondersError:
            return True
        except nats.errors.TimeoutError:
            return False
        return False

    await wait_until(no_responders, timeout=5, what="the failed start to release its NATS subscriptions")


def flatten(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in flatten(inner)]
    return [exc]
