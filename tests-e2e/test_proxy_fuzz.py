"""Property-based fuzzing of the proxy with generated variations of valid provider requests.

Whatever the body, the proxy never answers 5xx (no fault is injected here, so the mock provider never
fails: any 5xx, 502 and 504 included, would be the gateway's own), never crashes, and answers errors
in the caller's dialect. `make fuzz` runs the same with many more examples.
"""

from __future__ import annotations

import json
import os

import httpx
import pytest
from conftest import record_error_body
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("LLMGW_FUZZ_EXAMPLES", "60"))

json_scalars = st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)

roles = st.sampled_from(["user", "assistant", "system", "developer", "tool", "bogus", ""])
content = st.text(max_size=200) | st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "weird"]), "text": st.text(max_size=50)}), max_size=3) | json_values
message = st.fixed_dictionaries({"role": roles, "content": content}) | st.dictionaries(st.text(max_size=8), json_values, max_size=3)

openai_chat = st.fixed_dictionaries(
    {"model": st.sampled_from(["gpt-4o-mini", "gpt-4o", "o3-mini"]) | st.text(max_size=30), "messages": st.lists(message, max_size=4)},
    optional={
        "stream": st.booleans() | json_scalars,
        "temperature": json_scalars,
        "max_tokens": json_scalars,
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}) | json_values,
        "tools": json_values,
        "n": json_scalars,
        "extra_field": json_values,
    },
)
anthropic_messages = st.fixed_dictionaries(
    {"model": st.sampled_from(["claude-sonnet-4-5", "claude-haiku-4-5"]) | st.text(max_size=30),
     "max_tokens": st.integers(-5, 5000) | json_scalars, "messages": st.lists(message, max_size=4)},
    optional={"stream": st.booleans() | json_scalars, "system": json_values, "tools": json_values, "metadata": json_values},
)


@pytest.fixture(scope="module")
def fuzz_key(stack):
    return stack.create_key(name="fuzz", project="fuzz")["key"]


def check(response: httpx.Response, anthropic_dialect: bool, upstream_fault: bool = False) -> None:
    """``upstream_fault``: the test made the upstream fail, so a relayed 502/504 is the right answer."""
    allowed_5xx = (502, 504) if upstream_fault else ()
    assert response.status_code < 500 or response.status_code in allowed_5xx, (
        response.status_code, response.text[:300])
    if response.status_code >= 400:
        record_error_body("proxy fuzz", response.content)
        body = response.json()
        if anthropic_dialect:
            assert body["type"] == "error" and "message" in body["error"], body
        else:
            assert "message" in body["error"] and "type" in body["error"], body


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=openai_chat)
def test_fuzz_openai_chat(stack, fuzz_key, body):
    with httpx.Client(timeout=30) as client:
        response = client.post(stack.proxy_url() + "/v1/chat/completions", content=json.dumps(body),
                               headers={"Authorization": f"Bearer {fuzz_key}", "Content-Type": "application/json"})
        check(response, anthropic_dialect=False)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=anthropic_messages)
def test_fuzz_anthropic_messages(stack, fuzz_key, body):
    with httpx.Client(timeout=30) as client:
        response = client.post(stack.proxy_url() + "/v1/messages", content=json.dumps(body),
                               headers={"x-api-key": fuzz_key, "anthropic-version": "2023-06-01",
                                        "Content-Type": "application/json"})
        check(response, anthropic_dialect=True)
