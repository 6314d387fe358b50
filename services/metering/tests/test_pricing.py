"""llmgw_common.pricing against genai-prices' own numbers; overrides; the admin overrides API and
their effect at ingest."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import AUTH, event, new_key, publish, wait_for, wait_requests
from llmgw_common.pricing import PRICE_DATA_VERSION, PriceOverride, Pricer, price

AT = datetime(2026, 11, 23, 12, tzinfo=UTC)


def genai(provider: str, model: str, prompt: int, cached: int, write: int, completion: int) -> Decimal:
    usage = Usage(input_tokens=prompt, cache_read_tokens=cached, cache_write_tokens=write, output_tokens=completion)
    return calc_price(usage, model, provider_id=provider, genai_request_timestamp=AT).total_price


@pytest.mark.parametrize(
    "provider,model,prompt,cached,write,completion",
    [
        ("openai", "gpt-4o", 1200, 200, 0, 300),
        ("openai", "gpt-4o-mini", 50_000, 10_000, 0, 4_000),
        ("openai", "o3-mini", 900, 0, 0, 5_000),  # completion incl. reasoning tokens
        ("anthropic", "claude-sonnet-4-5", 3_000, 1_500, 1_000, 700),  # cache read + write
        ("anthropic", "claude-sonnet-4-5", 250_000, 20_000, 5_000, 1_000),  # long-context tier
        ("anthropic", "claude-3-5-haiku-latest", 10, 0, 0, 10),
        ("google", "gemini-2.5-pro", 300_000, 100_000, 0, 2_000),  # tiered above 200k
    ],
)
def test_equals_genai_prices(provider, model, prompt, cached, write, completion):
    expected = genai(provider, model, prompt, cached, write, completion)
    got = price(
        provider,
        model,
        prompt_tokens=prompt,
        cached_tokens=cached,
        cache_write_tokens=write,
        completion_tokens=completion,
        at=AT,
    )
    assert got.known is True
    assert got.cost_usd == expected
    assert got.price_version == PRICE_DATA_VERSION
    assert expected > 0


def test_cache_tokens_change_the_price():
    base = price("anthropic", "claude-sonnet-4-5", prompt_tokens=10_000, completion_tokens=100, at=AT).cost_usd
    read = price(
        "anthropic", "claude-sonnet-4-5", prompt_tokens=10_000, cached_tokens=8_000, completion_tokens=100, at=AT
    ).cost_usd
    write = price(
        "anthropic", "claude-sonnet-4-5", prompt_tokens=10_000, cache_write_tokens=8_000, completion_tokens=100, at=AT
    ).cost_usd
    assert read < base < write


@settings(max_examples=150, deadline=None)
@given(
    model=st.sampled_from(
        [("openai", "gpt-4o"), ("openai", "gpt-4.1"), ("anthropic", "claude-sonnet-4-5"), ("google", "gemini-2.5-pro")]
    ),
    prompt=st.integers(0, 1_200_000),
    data=st.data(),
)
def test_fast_path_matches_genai_prices_everywhere(model, prompt, data):
    provider, name = model
    cached = data.draw(st.integers(0, prompt))
    write = data.draw(st.integers(0, prompt - cached)) if provider == "anthropic" else 0
    completion = data.draw(st.integers(0, 200_000))
    got = price(
        provider,
        name,
        prompt_tokens=prompt,
        cached_tokens=cached,
        cache_write_tokens=write,
        completion_tokens=completion,
        at=AT,
    )
    assert got.cost_usd == genai(provider, name, prompt, cached, write, completion)


def test_unknown_model_is_zero_and_flagged():
    got = price("openai", "gpt-nonexistent-9", prompt_tokens=1000, completion_tokens=10)
    assert got.cost_usd == 0 and got.known is False
    got = price("vllm-local", "my-finetune", prompt_tokens=1000)
    assert got.cost_usd == 0 and got.known is False


def test_unknown_gateway_provider_falls_back_to_model_matching():
    assert price("mock", "gpt-4o", prompt_tokens=1000, at=AT).cost_usd == genai("openai", "gpt-4o", 1000, 0, 0, 0)


def test_aliases_price_by_the_public_name_when_the_upstream_one_is_unknown():
    got = price("openai", "my-azure-deployment-7", prompt_tokens=1000, aliases=("gpt-4o",), at=AT)
    assert got.known and got.cost_usd == genai("openai", "gpt-4o", 1000, 0, 0, 0)


def test_overrides():
    overrides = [
        PriceOverride(model="gpt-4o*", input_usd_per_mtok=Decimal("2"), output_usd_per_mtok=Decimal("8"), version="v1"),
        PriceOverride(
            model="gpt-4o*",
            provider="azure-eu",
            input_usd_per_mtok=Decimal("1.5"),
            cached_input_usd_per_mtok=Decimal("0.5"),
            output_usd_per_mtok=Decimal("6"),
        ),
        PriceOverride(model="gpt-4o-mini", input_usd_per_mtok=Decimal("0.1"), output_usd_per_mtok=Decimal("0.4")),
        PriceOverride(model="llama-*", input_usd_per_mtok=Decimal("0"), output_usd_per_mtok=Decimal("0.2")),
    ]
    pricer = Pricer(overrides)
    # glob; cached input defaults to the input price
    p = pricer.price(
        "openai", "gpt-4o-2024-08-06", prompt_tokens=1_000_000, cached_tokens=500_000, completion_tokens=1000
    )
    assert p.cost_usd == Decimal("2") + Decimal("0.008") and p.known and p.price_version == "override:gpt-4o*:v1"
    # provider-specific beats the global glob; cached price used
    p = pricer.price("azure-eu", "gpt-4o", prompt_tokens=1_000_000, cached_tokens=500_000)
    assert p.cost_usd == Decimal("0.75") + Decimal("0.25") and p.price_version == "override:gpt-4o*@azure-eu"
    # an exact name beats a glob
    assert pricer.price("openai", "gpt-4o-mini", prompt_tokens=1_000_000).cost_usd == Decimal("0.1")
    # self-hosted model: known because of the override
    p = pricer.price("vllm", "llama-3-70b", prompt_tokens=10, completion_tokens=1_000_000)
    assert p.known and p.cost_usd == Decimal("0.2")
    # the public name (alias) is matched too
    assert pricer.price("x", "deployment-1", prompt_tokens=1_000_000, aliases=("gpt-4o-mini",)).cost_usd == Decimal(
        "0.1"
    )
    # price() with overrides= is the same thing
    assert price("openai", "gpt-4o", prompt_tokens=1_000_000, overrides=overrides).cost_usd == Decimal("2")


def test_bad_token_counts():
    with pytest.raises(ValueError):
        price("openai", "gpt-4o", prompt_tokens=-1)
    # a prompt smaller than its cache parts is raised to their sum (cache tokens are input tokens)
    assert price("openai", "gpt-4o", prompt_tokens=0, cached_tokens=1000, at=AT).cost_usd == genai(
        "openai", "gpt-4o", 1000, 1000, 0, 0
    )


# --- the overrides API and ingest ------------------------------------------------------------------


async def test_overrides_api_crud_and_validation(client):
    body = {"input_usd_per_mtok": 1.25, "output_usd_per_mtok": "5", "note": "negotiated"}
    created = await client.put("/v1/prices/overrides/acme-model-*", json=body, headers=AUTH)
    assert created.status_code == 201, created.text
    record = json.loads(created.text, parse_float=Decimal)
    assert record["model"] == "acme-model-*" and record["provider"] is None
    assert record["input_usd_per_mtok"] == Decimal("1.25") and record["output_usd_per_mtok"] == 5
    assert record["cached_input_usd_per_mtok"] is None

    replaced = await client.put(
        "/v1/prices/overrides/acme-model-*", json={**body, "output_usd_per_mtok": 6}, headers=AUTH
    )
    assert replaced.status_code == 200 and replaced.json()["output_usd_per_mtok"] == 6
    scoped = await client.put(
        "/v1/prices/overrides/org/model-with-slash", json={**body, "provider": "vllm"}, headers=AUTH
    )
    assert scoped.status_code == 201 and scoped.json()["model"] == "org/model-with-slash"

    listed = (await client.get("/v1/prices/overrides", headers=AUTH)).json()["data"]
    assert {(o["model"], o["provider"]) for o in listed} >= {("acme-model-*", None), ("org/model-with-slash", "vllm")}
    one = await client.get("/v1/prices/overrides/org/model-with-slash", params={"provider": "vllm"}, headers=AUTH)
    assert one.status_code == 200
    assert (await client.get("/v1/prices/overrides/org/model-with-slash", headers=AUTH)).status_code == 404

    for bad in ({"input_usd_per_mtok": -1, "output_usd_per_mtok": 1}, {"output_usd_per_mtok": 1}, {"x": 1}):
        response = await client.put("/v1/prices/overrides/m", json={**bad}, headers=AUTH)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["error"]["type"] == "invalid_request_error"
    malformed = await client.put(
        "/v1/prices/overrides/m", content=b"{not json", headers={**AUTH, "content-type": "application/json"}
    )
    assert malformed.status_code == 400 and malformed.json()["error"]["type"] == "invalid_request_error"

    gone = await client.delete("/v1/prices/overrides/org/model-with-slash", params={"provider": "vllm"}, headers=AUTH)
    assert gone.status_code == 204
    again = await client.delete("/v1/prices/overrides/org/model-with-slash", params={"provider": "vllm"}, headers=AUTH)
    assert again.status_code == 404 and again.json()["error"]["type"] == "not_found_error"


async def test_override_applied_at_ingest(client, nc):
    key = new_key()
    response = await client.put(
        "/v1/prices/overrides/selfhosted-llama-*",
        json={"input_usd_per_mtok": "0.3", "cached_input_usd_per_mtok": "0.1", "output_usd_per_mtok": "0.9"},
        headers=AUTH,
    )
    assert response.status_code in (200, 201)
    quote = (
        await client.get(
            "/v1/prices/quote",
            params={"provider": "vllm", "model": "selfhosted-llama-70b", "prompt_tokens": 1_000_000},
            headers=AUTH,
        )
    ).json()
    assert quote["known"] is True and quote["cost_usd"] == 0.3

    async def refreshed():  # the ingest path re-reads overrides every 0.2 s in the tests
        pricer = client.app.state.overrides.pricer
        return pricer.override_for("vllm", "selfhosted-llama-70b") is not None

    await wait_for(refreshed, what="overrides refreshed")
    ev = event(
        key_id=key,
        provider="vllm",
        model="selfhosted-llama-70b",
        prompt_tokens=2_000_000,
        cached_tokens=1_000_000,
        completion_tokens=1_000_000,
    )
    await publish(nc, [ev])
    await wait_requests(client, key, 1)
    stored = json.loads(
        (await client.get("/v1/usage/events", params={"key_id": key}, headers=AUTH)).text, parse_float=Decimal
    )["data"][0]
    assert stored["cost_usd"] == Decimal("0.3") + Decimal("0.1") + Decimal("0.9")
    assert stored["price_known"] is True
    assert stored["price_version"].startswith("override:selfhosted-llama-*:")
