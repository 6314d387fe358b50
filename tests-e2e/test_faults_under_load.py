"""Faults under load (short versions; the long soak is `make soak`).

A steady mixed load (streaming and not, several keys) runs while a fault is injected; afterwards the
contract's invariant must hold exactly, per key: the usage events metering stored == the client
requests the proxy forwarded upstream (distinct request ids the provider saw), and their token sums ==
what the provider reported. No client request may hang past its timeout.

Each scenario prints (and, with ``LLMGW_RELIABILITY_REPORT=<file>``, appends as a JSON line) what it
measured: requests sent, answered by status, client errors, max client latency, events forwarded vs
stored and how long metering took to catch up, and the scenario's own numbers (spool depth, replay
time, hung requests). docs/reliability.md quotes a run of these.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import aiohttp
import pytest

from conftest import eventually, record_error_body

#: `make soak` scales the durations up (LLMGW_SOAK_SCALE=10); `make test` runs the short version.
SCALE = float(os.environ.get("LLMGW_SOAK_SCALE", "1"))
RATE_PER_S = int(os.environ.get("LLMGW_LOAD_RATE", "200"))
CLIENT_TIMEOUT_S = 30
#: longer than the proxy's usage ack timeout (LLMGW_USAGE_ACK_TIMEOUT, 5 s), so the outage outlasts
#: what the in-memory queue absorbs and the disk spool is used (and replayed) for certain
NATS_DOWN_S = max(7.0, min(10.0, 3.0 * SCALE))
#: the upstream-faults scenario's client timeout: a request the upstream never answers is given up
#: by its client after this long (the proxy's own LLMGW_UPSTREAM_READ_TIMEOUT is 600 s by default)
HANG_CLIENT_TIMEOUT_S = 5.0
#: upstream calls that hang (never answered) in that scenario
HANG_COUNT = int(6 * SCALE)
REPORT_FILE = os.environ.get("LLMGW_RELIABILITY_REPORT")


@dataclass
class LoadResult:
    statuses: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    request_ids: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    max_latency: float = 0.0
    exceptions: list[str] = field(default_factory=list)
    refused: int = 0
    outcome: dict[str, int | str] = field(default_factory=dict)  # request id -> HTTP status or error name
    latency: dict[str, float] = field(default_factory=dict)  # request id -> seconds until answered / given up
    client_timeout: float = CLIENT_TIMEOUT_S

    @property
    def sent(self) -> int:
        return len(self.outcome)

    def summary(self) -> dict:
        errors: dict[str, int] = defaultdict(int)
        for name in self.exceptions:
            errors[name] += 1
        return {
            "sent": self.sent, "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "client_errors": dict(errors), "refused": self.refused,
            "max_latency_s": round(self.max_latency, 3), "client_timeout_s": self.client_timeout,
        }


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
            raw = await response.read()
            result.statuses[response.status] += 1
            result.outcome[request_id] = response.status
            if response.status >= 400:
                record_error_body("faults-under-load", raw)
    except aiohttp.ClientConnectorError:
        result.refused += 1  # nothing listening (a service restarting): never forwarded
        result.outcome[request_id] = "refused"
    except (aiohttp.ClientError, asyncio.TimeoutError) as error:
        result.exceptions.append(type(error).__name__)
        result.outcome[request_id] = type(error).__name__
    elapsed = time.monotonic() - started
    result.latency[request_id] = elapsed
    result.max_latency = max(result.max_latency, elapsed)


async def drive_load(url: str, keys: list[str], seconds: float, result: LoadResult) -> None:
    # ceil_threshold: aiohttp rounds timeouts >= 5 s up to the next whole second unless told otherwise.
    timeout = aiohttp.ClientTimeout(total=result.client_timeout, ceil_threshold=result.client_timeout + 1)
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


def assert_invariant(stack, mock_provider, keys: dict[str, str], load: LoadResult, timeout: float = 60) -> dict:
    """Per key: stored events == forwarded requests; token sums == provider-reported usage.

    Returns what it measured: events forwarded (== stored once it holds), the tokens, and how long
    after the load ended metering had stored them all."""
    started = time.monotonic()
    totals = {"forwarded": 0, "stored": 0, "prompt_tokens": 0, "completion_tokens": 0}
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
            return row

        row = eventually(matches, timeout=timeout, interval=0.25, what=f"usage invariant for key {key_id}")
        totals["forwarded"] += expected_requests
        totals["stored"] += row["requests"]
        totals["prompt_tokens"] += expected_prompt
        totals["completion_tokens"] += expected_completion
    # No client request waited past its timeout (aiohttp's total timeout, plus scheduling slack).
    assert load.max_latency < load.client_timeout + 1, load.summary()
    totals["invariant_after_s"] = round(time.monotonic() - started, 2)
    return totals


def report(scenario: str, load: LoadResult, invariant: dict, **extra) -> None:
    """What a scenario measured: printed (pytest -s) and appended to LLMGW_RELIABILITY_REPORT."""
    line = {"scenario": scenario, "scale": SCALE, "rate_per_s": RATE_PER_S, **load.summary(),
            "events": invariant, **extra}
    print(f"MEASURED {json.dumps(line)}")
    if REPORT_FILE:
        with open(REPORT_FILE, "a") as out:
            out.write(json.dumps(line) + "\n")


def proxy_metrics(url: str) -> dict[str, float]:
    """One scrape of a proxy's /metrics: {"name{labels}": value} (comments skipped)."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


class MetricsSampler:
    """Scrapes a proxy's /metrics every ``interval`` s in a thread, keeping (time, values)."""

    def __init__(self, url: str, interval: float = 0.2):
        self.url, self.interval = url, interval
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic(), proxy_metrics(self.url)))
            except OSError:
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> MetricsSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def series(self, name: str) -> list[tuple[float, float]]:
        return [(at, values.get(name, 0.0)) for at, values in self.samples]


@pytest.fixture
def fresh_keys(stack):
    created = [stack.create_key(name=f"load-{i}", project="faults") for i in range(3)]
    return {c["id"]: c["key"] for c in created}


def run_with_fault(stack, keys: dict[str, str], seconds: float, fault_at: float, fault,
                   client_timeout: float = CLIENT_TIMEOUT_S, load: LoadResult | None = None) -> LoadResult:
    load = load if load is not None else LoadResult(client_timeout=client_timeout)

    async def main():
        async def inject():
            await asyncio.sleep(fault_at)
            await asyncio.to_thread(fault)

        await asyncio.gather(drive_load(stack.proxy_url(), list(keys.values()), seconds, load), inject())

    asyncio.run(main())
    return load


def assert_all_answered_200(load: LoadResult) -> None:
    """Every client request got a 200: no other status, no client error, nothing refused."""
    assert set(load.statuses) == {200} and not load.exceptions and not load.refused, load.summary()


def test_metering_killed_and_restarted(stack, mock_provider, fresh_keys):
    def fault():
        stack.kill("metering")
        time.sleep(1)
        stack.restart("metering")

    load = run_with_fault(stack, fresh_keys, 4 * SCALE, 1.5, fault)
    # The proxy does not need metering to answer: nothing the clients see changes.
    assert_all_answered_200(load)
    report("metering killed", load, assert_invariant(stack, mock_provider, fresh_keys, load))


def test_nats_stopped_then_restarted(stack, mock_provider, fresh_keys, embedded_nats):
    marks: dict[str, float] = {}

    def fault():
        embedded_nats.stop()
        marks["down"] = time.monotonic()
        time.sleep(NATS_DOWN_S)
        embedded_nats.start()
        marks["up"] = time.monotonic()

    proxy = stack.proxy_url()
    before = proxy_metrics(proxy)
    assert before.get("llmgw_proxy_spool_depth") == 0, "the spool should be empty before the outage"
    with MetricsSampler(proxy) as sampler:
        load = run_with_fault(stack, fresh_keys, NATS_DOWN_S + 3 * SCALE, 1.0, fault)

        def drained():
            at, values = sampler.samples[-1] if sampler.samples else (0.0, {})
            return at > marks["up"] and values.get("llmgw_proxy_spool_depth") == 0 and values.get(
                "llmgw_proxy_usage_queue_depth") == 0

        eventually(drained, timeout=60, interval=0.1, what="the proxy's spool to be replayed")
    # The proxy keeps serving while NATS is away (keys are cached): every request answered 200.
    assert_all_answered_200(load)
    depth = sampler.series("llmgw_proxy_spool_depth")
    peak_at, peak = max(depth, key=lambda sample: sample[1])
    empty_at = next(at for at, value in depth if at > max(peak_at, marks["up"]) and value == 0)
    queue_peak = max(value for _, value in sampler.series("llmgw_proxy_usage_queue_depth"))
    after = proxy_metrics(proxy)

    def delta(outcome: str) -> int:
        name = f'llmgw_proxy_usage_events_total{{outcome="{outcome}"}}'
        return int(after.get(name, 0) - before.get(name, 0))

    # The events of the outage went to the disk spool (after the in-memory queue waited out its ack
    # timeout), and all of them were replayed once NATS was back.
    assert delta("spooled") > 0, (peak, delta("spooled"))
    assert delta("replayed") >= delta("spooled"), (delta("spooled"), delta("replayed"))
    invariant = assert_invariant(stack, mock_provider, fresh_keys, load, timeout=90)
    report("NATS stopped", load, invariant, nats_down_s=round(marks["up"] - marks["down"], 2),
           usage_queue_depth_peak=int(queue_peak), spool_depth_peak=int(peak), spooled=delta("spooled"), replayed=delta("replayed"),
           published=delta("published"),
           spool_empty_after_nats_back_s=round(empty_at - marks["up"], 2))


def test_postgres_restarted(stack, mock_provider, fresh_keys, embedded_postgres):
    def fault():
        embedded_postgres.restart()

    load = run_with_fault(stack, fresh_keys, 4 * SCALE, 1.5, fault)
    assert_all_answered_200(load)
    report("PostgreSQL restarted", load, assert_invariant(stack, mock_provider, fresh_keys, load, timeout=90))


def test_key_service_killed(stack, mock_provider, fresh_keys):
    """Under load: while key-service is dead, the cached keys keep working (every load request 200),
    a key the proxy never saw fails closed (503); after the restart it works; the invariant holds."""
    import openai

    unknown = stack.create_key(name="never-seen", project="faults")
    cached_secret = next(iter(fresh_keys.values()))
    cached_client = openai.OpenAI(base_url=stack.proxy_url() + "/v1", api_key=cached_secret, max_retries=0)
    new_client = openai.OpenAI(base_url=stack.proxy_url() + "/v1", api_key=unknown["key"], max_retries=0)
    load = LoadResult()
    seen: dict[str, object] = {}

    def fault():  # at 1 s: the load has cached the three keys by then
        stack.kill("key-service")
        killed_at = time.monotonic()
        try:
            # One more request with a cached key, metered like the load (so the invariant counts it).
            request_id = f"load-sdk-{uuid.uuid4().hex}"
            load.request_ids[cached_secret].append(request_id)
            seen["cached"] = cached_client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}],
                extra_headers={"x-request-id": request_id})
            try:
                new_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
                seen["unknown"] = 200
            except openai.APIStatusError as error:
                seen["unknown"] = error.status_code
            # Keep it down a while longer under load.
            time.sleep(max(0.0, 1.5 * SCALE - (time.monotonic() - killed_at)))
        finally:
            stack.restart("key-service")
            seen["down_s"] = round(time.monotonic() - killed_at, 2)

    run_with_fault(stack, fresh_keys, 4 * SCALE, 1.0, fault, load=load)
    assert seen["cached"].choices
    assert seen["unknown"] == 503, seen
    assert_all_answered_200(load)

    def recovered():
        try:
            return new_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        except openai.APIStatusError as error:
            raise AssertionError(error.status_code) from error

    eventually(recovered, timeout=15, interval=0.3, what="the new key to work after key-service is back")
    report("key-service killed", load, assert_invariant(stack, mock_provider, fresh_keys, load),
           key_service_down_s=seen["down_s"], unknown_key_while_down=seen["unknown"])


def test_upstream_errors_resets_and_hangs(stack, mock_provider, fresh_keys):
    """From the provider under load: calls that never answer, HTTP 500s, streams reset mid-way.

    500s are retried (or fall back); cut streams end as `incomplete`. A hung call holds its client
    request until the client gives up at its timeout (never later); the proxy then lets go of it
    (nothing stays in flight) and meters it (`incomplete`, 0 tokens). Meanwhile the other requests
    are answered as usual. The invariant holds."""

    def fault():
        # The first matching rule applies: the next HANG_COUNT calls hang, then 10 streams are cut.
        mock_provider.set_fault(mode="hang", count=HANG_COUNT)
        mock_provider.set_fault(mode="reset_mid_stream", count=10, stream=True)
        time.sleep(1)
        # 20 answers of 500: retried; 5 failures in a row open the circuit breaker (502 while open).
        mock_provider.set_fault(mode="status", status=500, count=20)

    try:
        load = run_with_fault(stack, fresh_keys, 4 * SCALE, 1.0, fault, client_timeout=HANG_CLIENT_TIMEOUT_S)
    finally:
        mock_provider._call("DELETE", "/_mock/faults")
    sent = set(load.outcome)
    calls = [c for c in mock_provider.calls() if c.get("request_id") in sent]
    faulted = defaultdict(set)  # fault mode -> the client requests that met it
    faulted_calls: dict[str, int] = defaultdict(int)
    for call in calls:
        if call.get("fault"):
            faulted[call["fault"]].add(call["request_id"])
            faulted_calls[call["fault"]] += 1
    hung = faulted["hang"]
    # Every hang and reset was met; of the 500s at least enough to open the breaker (while it is open
    # no call reaches the provider, so the rest may outlive the load: cleared above).
    assert (faulted_calls["hang"], faulted_calls["reset_mid_stream"]) == (HANG_COUNT, 10), dict(faulted_calls)
    assert faulted_calls["status"] >= 5, dict(faulted_calls)
    # Each hung request was given up by its client at the timeout: nothing answered it early, and
    # (assert_invariant checks) nothing took longer than the timeout.
    hung_latency = [load.latency[rid] for rid in hung]
    assert all("Timeout" in str(load.outcome[rid]) for rid in hung), [load.outcome[rid] for rid in hung]
    assert min(hung_latency) >= HANG_CLIENT_TIMEOUT_S - 0.5, hung_latency
    # Only requests the provider hung or cut mid-stream may end in a client error.
    failed = {rid for rid, out in load.outcome.items() if not isinstance(out, int)}
    assert failed <= hung | faulted["reset_mid_stream"], sorted(load.outcome[rid] for rid in failed - hung)[:5]
    assert load.statuses[200] > 0
    # (Measured, for the report: how long the requests that were not hung took at most.)
    others = [seconds for rid, seconds in load.latency.items() if rid not in hung]
    # The proxy let go of the hung requests when their clients gave up.
    eventually(lambda: proxy_metrics(stack.proxy_url()).get("llmgw_proxy_in_flight_requests") == 0,
               timeout=10, what="no request left in flight on the proxy")
    invariant = assert_invariant(stack, mock_provider, fresh_keys, load)
    # The provider is healthy again: the breaker closes (half-open probe) and requests get 200s.
    probe_key = stack.create_key(name="recovery-probe", project="faults")["key"]

    def recovered():
        request = urllib.request.Request(
            stack.proxy_url() + "/v1/chat/completions", method="POST",
            data=json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}).encode(),
            headers={"Authorization": f"Bearer {probe_key}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status == 200
        except urllib.error.HTTPError as error:
            raise AssertionError(error.code) from error

    eventually(recovered, timeout=15, interval=0.3, what="requests to succeed again once the provider recovered")
    report("upstream 500s, resets and hangs", load, invariant,
           injected_calls=dict(faulted_calls), requests_hit={mode: len(ids) for mode, ids in faulted.items()},
           hung_client_latency_s=[round(min(hung_latency), 2), round(max(hung_latency), 2)],
           max_latency_not_hung_s=round(max(others), 3))


@pytest.mark.parametrize("service", ["edge-proxy", "metering", "key-service"])
def test_graceful_sigterm_under_load(stack, mock_provider, fresh_keys, service):
    """SIGTERM (then a fresh start) of each service under load loses nothing: in-flight requests
    finish, the proxy flushes its usage events, metering commits and acks what it holds."""

    def fault():
        stack.restart(service)

    load = run_with_fault(stack, fresh_keys, 4 * SCALE, 1.0, fault)
    # Whatever got an HTTP answer got a 200 (for edge-proxy some requests find no listener).
    assert load.statuses[200] > 0 and set(load.statuses) == {200}, load.summary()
    if service != "edge-proxy":  # the load goes to the proxy, which needs neither to answer
        assert_all_answered_200(load)
    # A stopping proxy finishes what it accepted: every request that reached the upstream got its
    # answer. (Requests refused or reset before the proxy read them were never forwarded.)
    forwarded = {c["request_id"] for c in mock_provider.calls() if (c.get("request_id") or "").startswith("load-")}
    cut = {rid: out for rid, out in load.outcome.items() if rid in forwarded and not isinstance(out, int)}
    assert not cut, list(cut.items())[:5]
    report(f"SIGTERM {service}", load, assert_invariant(stack, mock_provider, fresh_keys, load, timeout=90),
           not_forwarded=load.sent - len(forwarded & set(load.outcome)))
