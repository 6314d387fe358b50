"""Faults under load (short versions; the long soak is `make soak`).

A steady mixed load (streaming and not, several keys) runs while a fault is injected; afterwards the
contract's invariant must hold exactly, per key: the usage events metering stored == the client
requests the proxy forwarded upstream (distinct request ids the provider saw), and their token sums ==
what the provider reported. No client request may hang past its timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import aiohttp
import pytest

from conftest import eventually

#: `make soak` scales the durations up (LLMGW_SOAK_SCALE=10); `make test` runs the short version.
SCALE = float(os.environ.get("LLMGW_SOAK_SCALE", "1"))
RATE_PER_S = int(os.environ.get("LLMGW_LOAD_RATE", "200"))
CLIENT_TIMEOUT_S = 30
NATS_DOWN_S = min(10.0, 3.0 * SCALE)


@dataclass
class LoadResult:
    statuses: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    request_ids: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    max_latency: float = 0.0
    exceptions: list[str] = field(default_factory=list)
    refused: int = 0
    outcome: dict[str, int | str] = field(default_factory=dict)  # request id -> HTTP status or error name


async def one_request(session, url: str, key: str, key_index: int, stream: bool, result: LoadResult) -> None:
    request_id = f"load-k{key_index}-{uuid.uuid4().hex}"
    result.request_ids[key].append(request_id)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"hello {request_id}"}], "stream": stream}
    started = time.monotonic()
    try:
        async with session.post(
            url + "/v1/chat/completions", json=body,
            headers={"Authorization": f"Bearer {key}", "x-request-id": request_id},
        ) as response:
            await response.read()
            result.statuses[response.status] += 1
            result.outcome[request_id] = response.status
    except aiohttp.ClientConnectorError:
        result.refused += 1  # nothing listening (a service restarting): never forwarded
        result.outcome[request_id] = "refused"
    except (aiohttp.ClientError, asyncio.TimeoutError) as error:
        result.exceptions.append(type(error).__name__)
        result.outcome[request_id] = type(error).__name__
    result.max_latency = max(result.max_latency, time.monotonic() - started)


async def drive_load(url: str, keys: list[str], seconds: float, result: LoadResult) -> None:
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        tasks = []
        interval = 1.0 / RATE_PER_S
        deadline = time.monotonic() + seconds
        n = 0
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            key_index = n % len(keys)
            tasks.append(asyncio.create_task(one_request(session, url, keys[key_index], key_index, n % 3 == 0, result)))
            n += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*tasks)


def assert_invariant(stack, mock_provider, keys: dict[str, str], load: LoadResult, timeout: float = 60) -> None:
    """Per key: stored events == forwarded requests; token sums == provider-reported usage."""
    calls = mock_provider.calls()
    by_request: dict[str, dict] = {}
    for call in calls:
        rid = call.get("request_id")
        if rid and rid.startswith("load-"):
            # Retries of one client request share its request id: the last attempt is the one metered.
            by_request[rid] = call
    for key_id, secret in keys.items():
        sent = set(load.request_ids[secret])
        forwarded = [c for rid, c in by_request.items() if rid in sent]
        expected_requests = len(forwarded)
        expected_prompt = sum((c["usage"] or {}).get("prompt_tokens", 0) for c in forwarded)
        expected_completion = sum((c["usage"] or {}).get("completion_tokens", 0) for c in forwarded)

        def matches():
            rows = stack.usage(f"group_by=key&key_id={key_id}")["data"]
            row = rows[0] if rows else {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0}
            assert (row["requests"], row["prompt_tokens"], row["completion_tokens"]) == (
                expected_requests, expected_prompt, expected_completion
            ), f"key {key_id}: metering {row} vs provider {expected_requests}/{expected_prompt}/{expected_completion}"
            return True

        eventually(matches, timeout=timeout, interval=0.5, what=f"usage invariant for key {key_id}")
    assert load.max_latency < CLIENT_TIMEOUT_S + 1


@pytest.fixture
def fresh_keys(stack):
    created = [stack.create_key(name=f"load-{i}", project="faults") for i in range(3)]
    return {c["id"]: c["key"] for c in created}


def run_with_fault(stack, keys: dict[str, str], seconds: float, fault_at: float, fault) -> LoadResult:
    load = LoadResult()

    async def main():
        async def inject():
            await asyncio.sleep(fault_at)
            await asyncio.to_thread(fault)

        await asyncio.gather(drive_load(stack.proxy_url(), list(keys.values()), seconds, load), inject())

    asyncio.run(main())
    return load


def test_metering_killed_and_restarted(stack, mock_provider, fresh_keys):
    def fault():
        stack.kill("metering")
        time.sleep(1)
        stack.restart("metering")

    load = run_with_fault(stack, fresh_keys, 4 * SCALE, 1.5, fault)
    assert load.statuses[200] > 0 and not load.exceptions
    assert_invariant(stack, mock_provider, fresh_keys, load)


def test_nats_stopped_then_restarted(stack, mock_provider, fresh_keys, embedded_nats):
    def fault():
        embedded_nats.stop()
        time.sleep(NATS_DOWN_S)
        embedded_nats.start()

    load = run_with_fault(stack, fresh_keys, NATS_DOWN_S + 3 * SCALE, 1.0, fault)
    # The proxy keeps serving while NATS is away (keys are cached), spooling usage events.
    assert load.statuses[200] > 0 and not load.exceptions, (dict(load.statuses), load.exceptions[:5])
    assert_invariant(stack, mock_provider, fresh_keys, load, timeout=90)


def test_postgres_restarted(stack, mock_provider, fresh_keys, embedded_postgres):
    def fault():
        embedded_postgres.restart()

    load = run_with_fault(stack, fresh_keys, 4 * SCALE, 1.5, fault)
    assert load.statuses[200] > 0 and not load.exceptions
    assert_invariant(stack, mock_provider, fresh_keys, load, timeout=90)


def test_key_service_killed(stack, mock_provider, fresh_keys):
    """Cached keys keep working; a key the proxy never saw fails closed (503); both recover."""
    import openai

    load_before = run_with_fault(stack, fresh_keys, 1, 0, lambda: None)  # warms the cache
    assert load_before.statuses[200] > 0
    unknown = stack.create_key(name="never-seen", project="faults")
    stack.kill("key-service")
    try:
        cached_client = openai.OpenAI(base_url=stack.proxy_url() + "/v1", api_key=next(iter(fresh_keys.values())), max_retries=0)
        assert cached_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]).choices
        new_client = openai.OpenAI(base_url=stack.proxy_url() + "/v1", api_key=unknown["key"], max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            new_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        assert caught.value.status_code == 503
    finally:
        stack.restart("key-service")

    def recovered():
        try:
            return new_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        except openai.APIStatusError as error:
            raise AssertionError(error.status_code) from error

    eventually(recovered, timeout=15, interval=0.3, what="the new key to work after key-service is back")


def test_upstream_errors_and_resets(stack, mock_provider, fresh_keys):
    """500s and mid-stream resets from the provider: retried where allowed, metered exactly."""

    def fault():
        mock_provider.set_fault(mode="status", status=500, count=20)
        time.sleep(1)
        mock_provider.set_fault(mode="reset_mid_stream", count=10, stream=True)

    try:
        load = run_with_fault(stack, fresh_keys, 4 * SCALE, 1.0, fault)
    finally:
        mock_provider._call("DELETE", "/_mock/faults")
    assert load.statuses[200] > 0
    assert_invariant(stack, mock_provider, fresh_keys, load)


@pytest.mark.parametrize("service", ["edge-proxy", "metering", "key-service"])
def test_graceful_sigterm_under_load(stack, mock_provider, fresh_keys, service):
    """SIGTERM (then a fresh start) of each service under load loses nothing: in-flight requests
    finish, the proxy flushes its usage events, metering commits and acks what it holds."""

    def fault():
        stack.restart(service)

    load = run_with_fault(stack, fresh_keys, 4 * SCALE, 1.0, fault)
    assert load.statuses[200] > 0
    # A stopping proxy finishes what it accepted: every request that reached the upstream got its
    # answer. (Requests refused or reset before the proxy read them were never forwarded.)
    forwarded = {c["request_id"] for c in mock_provider.calls() if (c.get("request_id") or "").startswith("load-")}
    cut = {rid: out for rid, out in load.outcome.items() if rid in forwarded and not isinstance(out, int)}
    assert not cut, list(cut.items())[:5]
    assert_invariant(stack, mock_provider, fresh_keys, load, timeout=90)
