from __future__ import annotations

import pytest

from harness import FakeKeyService, ProxyServer
from llmgw_common import contract
from llmgw_devstack.mock_provider import MockProviderServer
from llmgw_proxy.settings import Settings

pytest_plugins = ["llmgw_devstack.pytest_plugin"]

OPENAI_KEY = "sk-real-openai-" + "x" * 16
ANTHROPIC_KEY = "sk-ant-real-" + "y" * 16


@pytest.fixture(scope="session")
def mock():
    with MockProviderServer(openai_key=OPENAI_KEY, anthropic_key=ANTHROPIC_KEY) as server:
        yield server


@pytest.fixture(scope="session")
def mock_backup():
    """A second OpenAI-compatible provider, for fallback tests."""
    with MockProviderServer(openai_key=OPENAI_KEY + "-b") as server:
        yield server


@pytest.fixture(scope="session")
def keysvc(nats_url, mock, mock_backup):
    providers = [
        contract.ProviderCredential(name="openai", kind="openai", base_url=mock.openai_base_url, api_key=OPENAI_KEY),
        contract.ProviderCredential(
            name="anthropic", kind="anthropic", base_url=mock.anthropic_base_url, api_key=ANTHROPIC_KEY
        ),
        contract.ProviderCredential(
            name="backup", kind="openai-compatible", base_url=mock_backup.openai_base_url, api_key=OPENAI_KEY + "-b"
        ),
    ]
    D = contract.Deployment
    routes = [
        # primary on "openai", fallback (priority 1) on "backup"
        contract.Route(model="fallback-*", deployments=[D(provider="openai", model="*"), D(provider="backup", model="*", priority=1)]),
        # public name renamed upstream
        contract.Route(model="team-model", deployments=[D(provider="openai", model="gpt-4o-mini")]),
        contract.Route(model="claude-*", deployments=[D(provider="anthropic", model="*")]),
        # across providers: OpenAI first, then (translated) an Anthropic model
        contract.Route(
            model="xfb-gpt-4o",
            deployments=[D(provider="openai", model="xfb-gpt-4o"), D(provider="anthropic", model="claude-sonnet-4-5", priority=1)],
        ),
        contract.Route(model="*", deployments=[D(provider="openai", model="*")]),
    ]
    service = FakeKeyService(nats_url, providers, routes)
    yield service
    service.close()


def proxy_settings(tmp_path_factory, nats_url, **overrides) -> Settings:
    values = dict(
        nats_url=nats_url,
        state_dir=tmp_path_factory.mktemp("proxy-state"),
        upstream_retry_base=0.01,
        upstream_read_timeout=3.0,
        upstream_connect_timeout=2.0,
        breaker_failures=50,
        breaker_cooldown=2.0,
        key_lookup_timeout=0.5,
        usage_ack_timeout=1.0,
        usage_replay_interval=0.2,
        estimate_completion_tokens=256,
        log_level="WARNING",
        # many tests use bad keys on purpose; test_failed_auth.py tests the brute-force limit itself
        auth_failures_per_minute=100_000,
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def proxy(tmp_path_factory, nats_url, keysvc):
    server = ProxyServer(proxy_settings(tmp_path_factory, nats_url)).start()
    yield server
    server.stop()


@pytest.fixture
def key(keysvc):
    """A fresh unrestricted virtual key: (secret, record)."""
    return keysvc.add_key()
