"""Issue 2's walking skeleton, end to end with the official openai SDK:
create key → chat completion → the same call streamed → usage for that key in metering with the
right token counts → revoke → the next call gets 401."""

from __future__ import annotations

import time

import openai
import pytest

from conftest import OPENAI_PROVIDER_KEY, eventually

MESSAGES = [{"role": "user", "content": "Say hello to the gateway"}]


def provider_usage_for(mock_provider, model: str, since_seq: int) -> list[dict]:
    return [c for c in mock_provider.calls() if c["seq"] > since_seq and c["model"] == model and c["usage"]]


def last_seq(mock_provider) -> int:
    calls = mock_provider.calls()
    return max((c["seq"] for c in calls), default=0)


def test_key_chat_stream_usage_revoke(stack, mock_provider):
    created = stack.create_key(name="quickstart", project="proj-quickstart")
    secret, key_id = created["key"], created["id"]
    assert secret.startswith("sk-llmgw-")
    seq0 = last_seq(mock_provider)

    client = openai.OpenAI(base_url=stack.proxy_url() + "/v1", api_key=secret, max_retries=0)
    model = "gpt-4o-mini"

    completion = client.chat.completions.create(model=model, messages=MESSAGES)
    assert completion.choices[0].message.content
    assert completion.usage.total_tokens > 0

    chunks = list(client.chat.completions.create(model=model, messages=MESSAGES, stream=True))
    streamed_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed_text == completion.choices[0].message.content
    # The client did not ask for include_usage: it must not see the usage chunk the proxy asked for.
    assert all(c.usage is None for c in chunks)

    # The provider saw the REAL provider key, never the virtual key.
    upstream_calls = provider_usage_for(mock_provider, model, seq0)
    assert len(upstream_calls) == 2
    assert {c["api_key"] for c in upstream_calls} == {OPENAI_PROVIDER_KEY}
    assert upstream_calls[1]["stream"] is True

    expected_prompt = sum(c["usage"]["prompt_tokens"] for c in upstream_calls)
    expected_completion = sum(c["usage"]["completion_tokens"] for c in upstream_calls)

    def usage_row():
        rows = stack.usage(f"group_by=key&key_id={key_id}")["data"]
        assert rows and rows[0]["requests"] == 2, rows
        return rows[0]

    row = eventually(usage_row, timeout=15, what="usage rows in metering")
    assert row["key_id"] == key_id
    assert row["prompt_tokens"] == expected_prompt
    assert row["completion_tokens"] == expected_completion
    assert row["total_tokens"] == expected_prompt + expected_completion
    assert isinstance(row["cost_usd"], (int, float))

    by_model = stack.usage(f"group_by=model&key_id={key_id}")["data"]
    assert [(r["model"], r["requests"]) for r in by_model] == [(model, 2)]

    status, _ = stack.admin("DELETE", f"/v1/keys/{key_id}")
    assert status == 204
    revoked_at = time.monotonic()

    def rejected():
        try:
            client.chat.completions.create(model=model, messages=MESSAGES)
        except openai.AuthenticationError as error:
            return error
        return None

    error = eventually(rejected, timeout=1.0, interval=0.02, what="the revoked key to be rejected")
    assert time.monotonic() - revoked_at < 1.0
    assert error.status_code == 401
    body = error.response.json()
    assert set(body["error"]) >= {"message", "type", "code"}
    assert secret not in error.response.text


def test_unknown_key_gets_openai_401(stack):
    client = openai.OpenAI(base_url=stack.proxy_url() + "/v1", api_key="sk-llmgw-not-a-real-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.response.json()["error"]["type"]


def test_health_endpoints(stack):
    import urllib.request

    for url in (stack.proxy_url(), stack.keys_url, stack.metering_url):
        with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
            assert response.status == 200
