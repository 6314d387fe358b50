"""Fixtures for the CLI tests.

Server-backed tests run the CLI against the REAL key-service and metering apps, started in this
process (uvicorn in a background thread, free port) on a real NATS and PostgreSQL from
``llmgw_devstack``. They skip when those packages are not installed.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmgw_cli.main import app

pytest_plugins = ["llmgw_devstack.pytest_plugin"]

ADMIN_TOKEN = "llmgw-admin-clitest-" + secrets.token_urlsafe(24)

#: what the CLI reads; cleared for every test so the developer's shell or config never leaks in
CLI_ENV = (
    "LLMGW_ADMIN_TOKEN",
    "LLMGW_KEY_SERVICE_URL",
    "LLMGW_METERING_URL",
    "LLMGW_CONFIG",
    "LLMGW_STATE_DIR",
    "LLMGW_OUTPUT",
    "XDG_CONFIG_HOME",
)


@pytest.fixture(autouse=True)
def isolated_cli_env(monkeypatch, tmp_path) -> Path:
    """No LLMGW_* settings, an empty HOME and a working directory without a .llmgw/ state dir."""
    for name in CLI_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    monkeypatch.setenv("COLUMNS", "200")  # wide rich tables: no cell gets folded in assertions
    return work


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(args: list[str], env: dict[str, str] | None = None, input: str | None = None) -> Run:
    """The CLI in-process, as a user would call it (stdout and stderr kept apart)."""
    result = CliRunner().invoke(app, args, env=env, input=input, catch_exceptions=False)
    return Run(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def cli() -> Callable[..., Run]:
    return run_cli


# --- the real services, in-process ---------------------------------------------------------------
class ThreadedServer:
    """A Litestar app under uvicorn in a background thread, on a free loopback port."""

    def __init__(self, app_, name: str):
        import uvicorn

        from llmgw_devstack.ports import free_port

        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app_, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", loop="asyncio", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{name}", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"{self.name} failed to start (see the log above)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not start within {timeout:.0f}s")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def apply_migrations(package: str, settings, env: dict[str, str]) -> None:
    """``<package>.migrate.migrate(settings)`` when it exists, else ``python -m <package> migrate``."""
    try:
        module = importlib.import_module(f"{package}.migrate")
        migrate = getattr(module, "migrate", None) or getattr(module, "run_migrations", None)
    except ImportError:
        migrate = None
    if migrate is not None and inspect.iscoroutinefunction(migrate):
        asyncio.run(migrate(settings))
        return
    if migrate is not None:
        migrate(settings)
        return
    subprocess.run([sys.executable, "-m", package, "migrate"], env={**os.environ, **env}, check=True, timeout=60)


def start_service(package: str, database_url: str, nats_url: str, state_dir: Path) -> ThreadedServer:
    settings_module = importlib.import_module(f"{package}.settings")
    app_module = importlib.import_module(f"{package}.app")
    values = {
        "database_url": database_url,
        "nats_url": nats_url,
        "admin_token": ADMIN_TOKEN,
        "state_dir": state_dir,
    }
    settings = settings_module.Settings(**values)
    env = {
        "LLMGW_DATABASE_URL": database_url,
        "LLMGW_NATS_URL": nats_url,
        "LLMGW_ADMIN_TOKEN": ADMIN_TOKEN,
        "LLMGW_STATE_DIR": str(state_dir),
    }
    apply_migrations(package, settings, env)
    server = ThreadedServer(app_module.create_app(settings), package)
    server.start()
    return server


@pytest.fixture(scope="session")
def key_service(nats_url, make_database, tmp_path_factory) -> Iterator[ThreadedServer]:
    pytest.importorskip("llmgw_keys.app", reason="key-service (llmgw_keys) is not installed")
    server = start_service("llmgw_keys", make_database("cli_keys"), nats_url, tmp_path_factory.mktemp("keys-state"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def metering(nats_url, make_database, tmp_path_factory) -> Iterator[ThreadedServer]:
    pytest.importorskip("llmgw_metering.app", reason="metering (llmgw_metering) is not installed")
    server = start_service(
        "llmgw_metering", make_database("cli_metering"), nats_url, tmp_path_factory.mktemp("metering-state")
    )
    yield server
    server.stop()


@pytest.fixture
def admin_env(key_service) -> dict[str, str]:
    """Environment for a CLI run against the in-process key-service, as an admin."""
    return {"LLMGW_KEY_SERVICE_URL": key_service.url, "LLMGW_ADMIN_TOKEN": ADMIN_TOKEN}


def wait_until(predicate: Callable[[], object], timeout: float = 15.0, interval: float = 0.1, what: str = "it"):
    """Poll ``predicate`` until it returns something truthy, or fail the test."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
