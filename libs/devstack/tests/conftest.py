from __future__ import annotations

import anthropic
import openai
import pytest

from llmgw_devstack.mock_provider.config import MOCK_ANTHROPIC_KEY, MOCK_OPENAI_KEY

pytest_plugins = ["llmgw_devstack.pytest_plugin", "llmgw_devstack.mock_provider.pytest_fixtures"]


@pytest.fixture
def oai(mock_provider) -> openai.OpenAI:
    client = openai.OpenAI(base_url=mock_provider.openai_base_url, api_key=MOCK_OPENAI_KEY, max_retries=0, timeout=10)
    yield client
    client.close()


@pytest.fixture
def ant(mock_provider) -> anthropic.Anthropic:
    client = anthropic.Anthropic(
        base_url=mock_provider.anthropic_base_url, api_key=MOCK_ANTHROPIC_KEY, max_retries=0, timeout=10
    )
    yield client
    client.close()
