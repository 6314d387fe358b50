"""Rate limits (requests, tokens, in-flight) and budget reservations, incl. several replicas."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import msgspec
import openai
import pytest

from conftest import proxy_settings
from harness import ProxyServer
from llmgw_common import contract, pricing

MSG = [{"role": "user", "content": "hi"}]


def chat(proxy, secret, model="gpt-4o-mini", **extra):
    return httpx.post(
        proxy.url + "/v1/chat/completions",
        json={"model": model, "messages": MSG, **extra},
        headers={"authorization": f"Bearer {secret}"},
        timeout=30,
    )


def away_from_minute_boundary(margin: float = 4.0) -> None:
    """Fixed one-minute windows: keep a short test inside one window (waits at most ``margin`` s)."""
    left = 60 - time.time() % 60
    if left < margin:
        time.sleep(left + 0.05)


@pytest.fixture(scope="module")
def replica(tmp_path_factory, nats_url, keysvc):
    server = ProxyServer(proxy_settings(tmp_path_factory, nats_url)).start()
    yield server
    server.stop()


def test_rpm_limit_429_with_headers(proxy, keysvc):
    secret, _ = keysvc.add_key(rpm_limit=3)
    away_from_minute_boundary()
    assert [chat(proxy, secret).status_code for _ in range(3)] == [200, 200, 200]
    r = chat(proxy, secret)
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limit_exceeded" and r.json()["error"]["type"] == "requests"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert r.headers["x-ratelimit-limit-requests"] == "3"
    assert r.headers["x-ratelimit-remaining-requests"] == "0"
    assert r.headers["x-ratelimit-reset-requests"].endswith("s")
    with pytest.raises(openai.RateLimitError):
        openai.OpenAI(base_url=proxy.url + "/v1", api_key=secret, max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=MSG
        )
    r = httpx.post(proxy.url + "/v1/messages", json={"model": "claude-haiku-4-5-20251001", "max_tokens": 5, "messages": MSG},
                   headers={"x-api-key": secret})
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"


def test_rpm_limit_holds_across_two_replicas(proxy, replica, keysvc):
    secret, _ = keysvc.add_key(rpm_limit=40)
    away_from_minute_boundary(6)
    headers = {"authorization": f"Bearer {secret}"}
    body = {"model": "gpt-4o-mini", "messages": MSG}
    with httpx.Client(timeout=30) as http:
        statuses = [
            http.post((proxy if i % 2 else replica).url + "/v1/chat/completions", json=body, headers=headers).status_code
            for i in range(60)
        ]
    admitted = statuses.count(200)
    # never more than the limit; at most one unused lease chunk (2) per other replica left behind
    assert 38 <= admitted <= 40, statuses
    assert set(statuses) == {200, 429}


def test_tpm_limit_counts_reported_usage(proxy, keysvc):
    secret, record = keysvc.add_key(tpm_limit=100)
    away_from_minute_boundary()
    statuses = []
    for _ in range(8):
        r = chat(proxy, secret, max_tokens=50)
        statuses.append(r.status_code)
        if r.status_code == 429:
            break
    assert statuses[0] == 200 and statuses[-1] == 429, statuses
    assert r.json()["error"]["type"] == "tokens"
    assert r.headers["x-ratelimit-limit-tokens"] == "100"
    # each call reported ~22 tokens and was charged that (not its 50+ estimate): several fit
    assert statuses.count(200) >= 2
    events = keysvc.wait_usage(record.id, statuses.count(200))
    assert sum(e.total_tokens for e in events) <= 100


def test_max_parallel_requests(proxy, mock, keysvc):
    secret, _ = keysvc.add_key(max_parallel_requests=2)
    mock.set_fault("latency", latency_ms=800, model="gpt-4o-2024-08-06", count=2)
    with ThreadPoolExecutor(2) as pool:
        slow = [pool.submit(chat, proxy, secret, "gpt-4o-2024-08-06") for _ in range(2)]
        time.sleep(0.3)  # let both reach the upstream (they are held there for 0.8 s)
        r = chat(proxy, secret)
        assert r.status_code == 429 and "parallel" in r.json()["error"]["message"]
        assert r.headers["retry-after"] == "1"
        assert [f.result().status_code for f in slow] == [200, 200]
    assert chat(proxy, secret).status_code == 200


def _estimate(max_tokens: int) -> float:
    body = msgspec.json.encode({"model": "gpt-4o-mini", "messages": MSG, "max_tokens": max_tokens})
    return float(pricing.price("openai", "gpt-4o-mini", prompt_tokens=len(body) // 4, completion_tokens=max_tokens).cost_usd)


def test_budget_reservations_hold_under_concurrency(proxy, replica, keysvc):
    """50 concurrent requests on two replicas against a budget that fits 9 estimates: exactly 9 pass."""
    estimate = _estimate(1000)
    assert estimate > 0
    budget = estimate * 9.5
    secret, record = keysvc.add_key(budget_usd=budget, budget_period="daily")
    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda i: chat(proxy if i % 2 else replica, secret, max_tokens=1000), range(50)))
    statuses = [r.status_code for r in results]
    assert statuses.count(200) == 9, statuses
    refused = [r for r in results if r.status_code == 429]
    assert all(r.json()["error"]["code"] == "insufficient_quota" for r in refused)
    assert all(r.json()["error"]["type"] == "insufficient_quota" for r in refused)
    period = contract.budget_period_key("daily", datetime.now(UTC))
    entry = keysvc.kv_get(contract.KV_BUCKET_BUDGET, contract.budget_kv_key(record.id, period))
    state = contract.budget_state_decoder.decode(entry.value)
    assert state.reserved_usd == pytest.approx(9 * estimate)
    assert state.reserved_usd <= budget
    events = keysvc.wait_usage(record.id, 9)
    assert all(e.reserved_usd == pytest.approx(estimate) and e.budget_period_key == period for e in events)
    # the maximum overshoot: real cost of the admitted requests never exceeds their estimates here
    real = sum(
        float(pricing.price("openai", "gpt-4o-mini", prompt_tokens=e.prompt_tokens, completion_tokens=e.completion_tokens).cost_usd)
        for e in events
    )
    assert real <= budget


def test_budget_exhausted_by_recorded_spend(proxy, keysvc):
    secret, record = keysvc.add_key(budget_usd=1.0, budget_period="monthly")
    period = contract.budget_period_key("monthly", datetime.now(UTC))

    async def put():
        kv = await keysvc.js.key_value(contract.KV_BUCKET_BUDGET)
        await kv.put(contract.budget_kv_key(record.id, period), contract.encode(contract.BudgetState(spend_usd=1.0)))

    keysvc.lt.run(put())
    r = chat(proxy, secret)
    assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
    with pytest.raises(openai.RateLimitError) as exc:
        openai.OpenAI(base_url=proxy.url + "/v1", api_key=secret, max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=MSG
        )
    assert exc.value.code == "insufficient_quota"
    info = httpx.get(proxy.url + "/v1/key/info", headers={"authorization": f"Bearer {secret}"}).json()
    assert info["budget"]["remaining_usd"] == 0 and info["budget"]["spend_usd"] == 1.0


def test_reservation_released_when_request_never_reaches_upstream(tmp_path_factory, nats_url, keysvc, mock):
    """Every deployment cooling down: no upstream attempt, no usage event, the reservation goes back."""
    server = ProxyServer(proxy_settings(tmp_path_factory, nats_url, breaker_failures=1, breaker_cooldown=30,
                                        upstream_max_attempts=1)).start()
    try:
        secret, record = keysvc.add_key(budget_usd=10.0, budget_period="daily")
        mock.set_fault("status", status=500, model="gpt-4o-breaker-test", count=1)
        assert chat(server, secret, "gpt-4o-breaker-test").status_code == 500  # opens the breaker
        r = chat(server, secret, "gpt-4o-breaker-test")
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_unavailable"
        period = contract.budget_period_key("daily", datetime.now(UTC))
        key = contract.budget_kv_key(record.id, period)

        def reserved():
            return contract.budget_state_decoder.decode(keysvc.kv_get(contract.KV_BUCKET_BUDGET, key).value).reserved_usd

        first = keysvc.wait_usage(record.id, 1)[0]
        from harness import wait_until

        wait_until(lambda: reserved() == pytest.approx(first.reserved_usd), 3, what="reservation released")
        assert len(keysvc.usage_events(record.id)) == 1
    finally:
        server.stop()
