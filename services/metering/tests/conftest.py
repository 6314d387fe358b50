"""Fixtures: a real NATS (JetStream) and PostgreSQL from llmgw_devstack, the metering app on them.

Each test module gets a fresh database and a clean JetStream state (durable consumer deleted,
usage + dead-letter streams purged, budget bucket removed); tests inside a module use their own
key ids so they do not see each other's events.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest
import pytest_asyncio

from helpers import ADMIN_TOKEN
from llmgw_common.contract import CONSUMER_METERING, KV_BUCKET_BUDGET, STREAM_DEAD_LETTER, STREAM_USAGE
from llmgw_common.messaging import connect, ensure_streams
from llmgw_metering.app import create_app
from llmgw_metering.migrate import run_migrations
from llmgw_metering.settings import Settings

pytest_plugins = ["llmgw_devstack.pytest_plugin"]


def make_settings(database_url: str, nats_url: str, state_dir, **overrides) -> Settings:
    values = dict(
        database_url=database_url,
        nats_url=nats_url,
        admin_token=ADMIN_TOKEN,
        state_dir=state_dir,
        metering_fetch_wait_seconds=0.05,
        metering_reconcile_seconds=3600,
        metering_maintenance_seconds=3600,
        metering_auth_timeout_seconds=0.5,
        metering_backoff_max_seconds=1.0,
        metering_overrides_refresh_seconds=0.2,
    )
    values.update(overrides)
    return Settings(**values)


async def reset_jetstream(nats_url: str) -> None:
    nc = await connect(nats_url, name="metering-tests-reset")
    try:
        js = nc.jetstream()
        await ensure_streams(js, STREAM_USAGE, STREAM_DEAD_LETTER)
        try:
            await js.delete_consumer(STREAM_USAGE, CONSUMER_METERING)
        except Exception:  # noqa: BLE001 - not there
            pass
        await js.purge_stream(STREAM_USAGE)
        await js.purge_stream(STREAM_DEAD_LETTER)
        try:
            await js.delete_key_value(KV_BUCKET_BUDGET)
        except Exception:  # noqa: BLE001
            pass
    finally:
        await nc.close()


@pytest.fixture(scope="module")
def settings(database_url, nats_url, tmp_path_factory) -> Settings:
    return make_settings(database_url, nats_url, tmp_path_factory.mktemp("state"))


@pytest_asyncio.fixture(scope="module")
async def migrated(settings) -> Settings:
    await run_migrations(settings)
    return settings


@pytest_asyncio.fixture(scope="module")
async def nc(nats_url):
    client = await connect(nats_url, name="metering-tests")
    yield client
    await client.close()


class AppClient(httpx.AsyncClient):
    """An HTTP client bound to the app, in the test's own event loop (so NATS stubs, the ingest
    pipeline and the test share one loop; Litestar's AsyncTestClient would run the app in a
    separate thread)."""

    def __init__(self, app):
        super().__init__(transport=httpx.ASGITransport(app=app), base_url="http://metering.test", timeout=30)
        self.app = app


@contextlib.asynccontextmanager
async def running_app(settings: Settings):
    """The whole app: lifespan (NATS, DB, consumer, budget sync) plus a client for its REST API."""
    app = create_app(settings)
    started, stop = asyncio.Event(), asyncio.Event()
    failure: list[BaseException] = []

    async def lifespan() -> None:
        # one task enters and exits the lifespan (anyio task groups insist on it)
        try:
            async with app.lifespan():
                started.set()
                await stop.wait()
        except BaseException as exc:
            failure.append(exc)
            started.set()
            raise

    task = asyncio.create_task(lifespan())
    await started.wait()
    if failure:
        raise failure[0]
    try:
        async with AppClient(app) as http:
            yield http
    finally:
        stop.set()
        await task


@pytest_asyncio.fixture(scope="module")
async def client(migrated, nats_url):
    """The metering app (REST + ingest) running on the module's database."""
    await reset_jetstream(nats_url)
    async with running_app(migrated) as http:
        yield http
