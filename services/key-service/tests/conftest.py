"""Fixtures: a real NATS (JetStream) and PostgreSQL from llmgw_devstack, one migrated database per
module, the app under Litestar's AsyncTestClient, a NATS client for the tests themselves, and a
registry of every plaintext secret the tests saw (scanned for in the database at the end)."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import nats
import pytest
from cryptography.fernet import Fernet
from litestar.testing import AsyncTestClient
from llmgw_common import contract

from llmgw_keys.app import create_app
from llmgw_keys.migrate import migrate
from llmgw_keys.settings import Settings

pytest_plugins = ["llmgw_devstack.pytest_plugin"]

ADMIN_TOKEN = "llmgw-admin-test-" + secrets.token_urlsafe(24)
ENV_OPENAI_KEY = "sk-env-openai-" + secrets.token_urlsafe(24)
ENV_ANTHROPIC_KEY = "sk-ant-env-" + secrets.token_urlsafe(24)


@pytest.fixture(scope="session", autouse=True)
def _clean_environment():
    """The suite sets everything explicitly: no LLMGW_* from the caller's shell leaks in."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("LLMGW_") and not k.startswith("LLMGW_TEST_")}
    for key in saved:
        del os.environ[key]
    yield
    os.environ.update(saved)


@dataclass
class SecretRegistry:
    """Every plaintext secret the tests handled, per database: none may be stored in clear."""

    by_database: dict[str, set[str]] = field(default_factory=dict)

    def add(self, database_url: str, *values: str) -> None:
        self.by_database.setdefault(database_url, set()).update(v for v in values if v)


@pytest.fixture(scope="session")
def secret_registry() -> SecretRegistry:
    return SecretRegistry()


async def wait_until(predicate: Callable, timeout: float = 5.0, interval: float = 0.02, what: str = "condition"):
    """Poll ``predicate`` (sync or async) until it returns something truthy, or fail."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def make_settings(database_url: str, nats_url: str, state_dir, **overrides) -> Settings:
    values = dict(
        database_url=database_url,
        nats_url=nats_url,
        admin_token=ADMIN_TOKEN,
        encryption_key=Fernet.generate_key().decode(),
        state_dir=state_dir,
        openai_api_key=ENV_OPENAI_KEY,
        anthropic_api_key=ENV_ANTHROPIC_KEY,
        keys_expiry_interval_seconds=0.2,
        keys_outbox_retry_seconds=0.3,
        keys_db_pool_size=5,
        log_level="INFO",
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
async def migrated_database(database_url) -> str:
    await migrate(Settings(database_url=database_url))
    return database_url


@pytest.fixture(scope="module")
def settings(migrated_database, nats_url, tmp_path_factory, secret_registry) -> Settings:
    settings = make_settings(migrated_database, nats_url, tmp_path_factory.mktemp("state"))
    secret_registry.add(migrated_database, ADMIN_TOKEN, ENV_OPENAI_KEY, ENV_ANTHROPIC_KEY)
    return settings


class Client(AsyncTestClient):
    """AsyncTestClient that records every secret the API hands out."""

    registry: SecretRegistry
    database_url: str

    async def request(self, *args, **kwargs):
        response = await super().request(*args, **kwargs)
        if response.headers.get("content-type", "").startswith("application/json") and response.content:
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict):
                self.registry.add(self.database_url, *(str(body[k]) for k in ("key", "token") if body.get(k)))
        return response


@pytest.fixture(scope="module")
async def app(settings):
    return create_app(settings)


@pytest.fixture(scope="module")
async def client(app, settings, secret_registry):
    async with Client(app) as test_client:
        test_client.registry = secret_registry
        test_client.database_url = settings.database_url
        test_client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        yield test_client


@pytest.fixture(scope="module")
def runtime(app, client):
    """The app's runtime. Its engine and NATS connection live on the test client's portal loop:
    inspect the database through ``db`` instead."""
    return app.state.runtime


@pytest.fixture(scope="module")
async def db(settings):
    """A session factory on the tests' own event loop, for looking into the database."""
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
    from sqlalchemy.pool import NullPool

    engine = create_async_engine(settings.async_database_url, poolclass=NullPool)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


@pytest.fixture(scope="module")
async def nc(nats_url):
    connection = await nats.connect(
        nats_url, name="key-service-tests", reconnect_time_wait=0.2, max_reconnect_attempts=-1
    )
    yield connection
    await connection.close()


class EventCollector:
    def __init__(self) -> None:
        self.events: list[contract.KeyChanged] = []
        self.headers: list[dict] = []

    async def cb(self, msg) -> None:
        self.events.append(contract.key_changed_decoder.decode(msg.data))
        self.headers.append(dict(msg.headers or {}))

    def matching(self, action: str | None = None, key_id: str | None = None) -> list[contract.KeyChanged]:
        return [
            e for e in self.events if (action is None or e.action == action) and (key_id is None or e.key_id == key_id)
        ]

    async def wait_for(self, action: str, key_id: str | None = None, timeout: float = 5.0) -> contract.KeyChanged:
        found = await wait_until(lambda: self.matching(action, key_id), timeout, what=f"KeyChanged({action}, {key_id})")
        return found[-1]


@pytest.fixture(scope="module")
async def events(nc) -> EventCollector:
    collector = EventCollector()
    sub = await nc.subscribe(contract.SUBJECT_KEY_CHANGED, cb=collector.cb)
    await nc.flush()
    yield collector
    await sub.unsubscribe()


async def lookup(nc, key_hash: str, headers: dict | None = None) -> contract.KeyLookupReply:
    msg = await nc.request(
        contract.SUBJECT_KEY_LOOKUP,
        contract.encode(contract.KeyLookupRequest(key_hash=key_hash)),
        timeout=3,
        headers=headers,
    )
    return contract.key_lookup_reply_decoder.decode(msg.data)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
