"""End-to-end fixtures: the three services as real processes, real NATS + PostgreSQL, the mock
provider as the only fake, and the official SDKs as clients."""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from llmgw_devstack.ports import free_port
from llmgw_devstack.processes import Child, wait_healthy
from llmgw_devstack.stack import ServiceStack

pytest_plugins = ["llmgw_devstack.pytest_plugin"]

OPENAI_PROVIDER_KEY = "sk-real-openai-provider-key-e2e"
ANTHROPIC_PROVIDER_KEY = "sk-ant-real-anthropic-provider-key-e2e"


class MockProvider:
    """The mock upstream as its own process, driven through its HTTP control API."""

    def __init__(self, tmp_dir):
        self.port = free_port()
        self.child = Child(
            "mock-provider",
            [sys.executable, "-m", "llmgw_devstack.mock_provider", "--host", "127.0.0.1", "--port", str(self.port),
             "--openai-key", OPENAI_PROVIDER_KEY, "--anthropic-key", ANTHROPIC_PROVIDER_KEY],
            {**__import__("os").environ},
            health_url=f"http://127.0.0.1:{self.port}/_mock/calls",
            log_file=tmp_dir / "mock-provider.log",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.child.start()
        wait_healthy(self.child.health_url, 30, self.child.alive, "mock provider")

    def stop(self) -> None:
        self.child.stop()

    def _call(self, method: str, path: str, body: dict | list | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return json.loads(raw) if raw else {}

    def calls(self) -> list[dict]:
        return self._call("GET", "/_mock/calls")["data"]

    def reset(self) -> None:
        self._call("DELETE", "/_mock/calls")
        self._call("DELETE", "/_mock/faults")

    def set_fault(self, **rule) -> None:
        self._call("POST", "/_mock/faults", rule)


@pytest.fixture(scope="session")
def mock_provider(tmp_path_factory) -> Iterator[MockProvider]:
    provider = MockProvider(tmp_path_factory.mktemp("mock"))
    provider.start()
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def stack(nats_url, make_database, mock_provider, tmp_path_factory) -> Iterator[ServiceStack]:
    services = ServiceStack(
        nats_url=nats_url,
        database_url=make_database("e2e"),
        state_dir=tmp_path_factory.mktemp("state"),
        openai_base_url=mock_provider.url + "/v1",
        anthropic_base_url=mock_provider.url,
        openai_api_key=OPENAI_PROVIDER_KEY,
        anthropic_api_key=ANTHROPIC_PROVIDER_KEY,
        proxy_replicas=2,  # limits and budgets must hold across replicas
        # Fault tests open circuit breakers on purpose; a short cooldown keeps one test's injected
        # upstream failures from starving the next test's load.
        # The hostile-input and fuzz tests send many bad keys from one address on purpose.
        extra_env={"LLMGW_BREAKER_COOLDOWN": "2", "LLMGW_AUTH_FAILURES_PER_MINUTE": "100000"},
    )
    try:
        services.start()
    except Exception:
        for name in services.children:
            print(f"----- {name} log -----\n{services.log(name)[-4000:]}")
        services.stop()
        raise
    yield services
    services.stop()


def eventually(check: Callable[[], object], timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    """Polls until check() returns a truthy value (returned) or raises AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except AssertionError as error:
            last_error = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}: {last_error}")


#: Error bodies (HTTP status >= 400) the e2e tests received, deduplicated, with where they came from;
#: test_zz_no_secret_leaks scans them for secrets at the end of the session.
ERROR_BODIES: dict[str, str] = {}
_MAX_ERROR_BODIES = 50_000


def record_error_body(where: str, body: bytes | str) -> None:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if len(ERROR_BODIES) < _MAX_ERROR_BODIES:
        ERROR_BODIES.setdefault(text, where)
