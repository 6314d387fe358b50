"""Fixtures for the translation tests: pure functions, plus a tiny local HTTP server so the official
``openai`` and ``anthropic`` SDKs can consume translated answers over a real HTTP exchange."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

try:  # the edge-proxy package may not be installed in the shared venv yet
    import llmgw_proxy.domain.translation  # noqa: F401
except ModuleNotFoundError:  # pragma: no cover - depends on the environment
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from translation_helpers import SDKServer  # noqa: E402


@pytest.fixture(scope="session")
def _sdk_server() -> Iterator[SDKServer]:
    server = SDKServer()
    yield server
    server.close()


@pytest.fixture
def sdk_server(_sdk_server: SDKServer) -> Iterator[SDKServer]:
    """The shared local server, reset for this test; errors raised in handlers fail the test."""
    _sdk_server.handler = None
    _sdk_server.requests.clear()
    _sdk_server.errors.clear()
    yield _sdk_server
    errors = list(_sdk_server.errors)
    _sdk_server.handler = None
    if errors:
        raise errors[0]
