"""pytest fixtures for the mock provider.

``pytest_plugins = ["llmgw_devstack.mock_provider.pytest_fixtures"]`` gives:
``mock_provider_server`` (session: one in-thread server requiring ``MOCK_OPENAI_KEY`` /
``MOCK_ANTHROPIC_KEY``) and ``mock_provider`` (the same server, with recorded calls and fault rules
cleared before the test).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .config import MOCK_ANTHROPIC_KEY, MOCK_OPENAI_KEY
from .server import MockProviderServer

__all__ = ["MOCK_ANTHROPIC_KEY", "MOCK_OPENAI_KEY", "mock_provider", "mock_provider_server"]


@pytest.fixture(scope="session")
def mock_provider_server() -> Iterator[MockProviderServer]:
    server = MockProviderServer(openai_key=MOCK_OPENAI_KEY, anthropic_key=MOCK_ANTHROPIC_KEY)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mock_provider(mock_provider_server: MockProviderServer) -> Iterator[MockProviderServer]:
    mock_provider_server.reset()
    yield mock_provider_server
    mock_provider_server.reset()
