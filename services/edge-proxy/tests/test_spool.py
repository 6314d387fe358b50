"""Lossless usage events: NATS stopped during a test → spooled → NATS back → replayed exactly once;
a spool left by a previous process is replayed at start-up; shutdown without NATS keeps the spool."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest

from conftest import proxy_settings
from harness import ProxyServer, wait_until
from llmgw_common import contract
from llmgw_proxy.domain.ids import new_id

MSG = [{"role": "user", "content": "hi"}]


def chat(proxy, secret, **headers):
    return httpx.post(
        proxy.url + "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MSG},
        headers={"authorization": f"Bearer {secret}", **headers},
        timeout=30,
    )


def spool_depth_metric(proxy) -> float:
    for line in httpx.get(proxy.url + "/metrics").text.splitlines():
        if line.startswith("llmgw_proxy_spool_depth "):
            return float(line.split()[1])
    raise AssertionError("no spool depth metric")


@pytest.fixture
def own_proxy(tmp_path_factory, nats_url, keysvc):
    servers = []

    def make(**overrides):
        server = ProxyServer(proxy_settings(tmp_path_factory, nats_url, **overrides)).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def test_nats_outage_spools_then_replays_exactly_once(own_proxy, embedded_nats, keysvc):
    proxy = own_proxy()
    secret, record = keysvc.add_key()
    assert chat(proxy, secret, **{"x-request-id": "before"}).status_code == 200  # key now cached
    keysvc.wait_usage(record.id, 1)
    runtime = proxy.runtime
    embedded_nats.stop()
    try:
        wait_until(lambda: not runtime.nc.is_connected, 5, what="proxy notices NATS is gone")
        for i in range(5):
            r = chat(proxy, secret, **{"x-request-id": f"during-{i}"})
            assert r.status_code == 200  # the proxy keeps serving
        wait_until(lambda: runtime.spool.depth >= 5, 10, what="events spooled")
        assert spool_depth_metric(proxy) >= 5
        assert list((proxy.settings.state_dir / "spool").glob("proxy-*/seg-*.jsonl"))
    finally:
        embedded_nats.start()
    wait_until(lambda: runtime.spool.depth == 0, 15, what="spool replayed")
    lookups = keysvc.lookups
    assert chat(proxy, secret, **{"x-request-id": "after"}).status_code == 200
    # the reconnect dropped the key cache (a revocation published meanwhile cannot be missed)
    assert keysvc.lookups == lookups + 1
    events = keysvc.wait_usage(record.id, 7, timeout=10)
    time.sleep(0.3)  # (let any late duplicate land before counting: there must be none)
    events = keysvc.usage_events(record.id)
    assert sorted(e.request_id for e in events) == sorted(["before", "after", *[f"during-{i}" for i in range(5)]])
    assert len({e.event_id for e in events}) == 7
    assert spool_depth_metric(proxy) == 0


def test_spool_left_by_a_previous_process_is_replayed_at_start(tmp_path_factory, nats_url, keysvc):
    settings = proxy_settings(tmp_path_factory, nats_url)
    old = settings.state_dir / "spool" / "proxy-crashed-pod"
    old.mkdir(parents=True)
    key_id = "key_" + new_id()[:12]
    events = [
        contract.UsageEvent(
            event_id=new_id(), request_id=f"old-{i}", ts=datetime.now(UTC), key_id=key_id, project="p",
            provider="openai", model="gpt-4o-mini", endpoint="/v1/chat/completions", prompt_tokens=i, total_tokens=i,
        )
        for i in range(3)
    ]
    lines = b"".join(contract.encode(e) + b"\n" for e in events)
    (old / "seg-00000000000000000001.jsonl").write_bytes(lines + b'{"event_id": "torn wri')  # a crash mid-write
    server = ProxyServer(settings).start()
    try:
        replayed = keysvc.wait_usage(key_id, 3)
        assert sorted(e.request_id for e in replayed) == ["old-0", "old-1", "old-2"]
        wait_until(lambda: server.runtime.spool.depth == 0, 5, what="spool drained")
        assert not old.exists()  # adopted and removed
        corrupt = list((settings.state_dir / "spool").glob("proxy-*/corrupt*.jsonl"))
        assert corrupt and b"torn wri" in corrupt[0].read_bytes()  # kept for an operator, not dropped
    finally:
        server.stop()


def test_shutdown_without_nats_keeps_events_for_the_next_start(tmp_path_factory, nats_url, embedded_nats, keysvc):
    settings = proxy_settings(tmp_path_factory, nats_url, proxy_instance="pod-a", shutdown_flush_timeout=1.0)
    proxy = ProxyServer(settings).start()
    secret, record = keysvc.add_key()
    assert chat(proxy, secret).status_code == 200
    keysvc.wait_usage(record.id, 1)
    embedded_nats.stop()
    try:
        wait_until(lambda: not proxy.runtime.nc.is_connected, 5, what="proxy notices NATS is gone")
        for _ in range(3):
            assert chat(proxy, secret).status_code == 200
        proxy.stop()  # SIGTERM-equivalent: in-flight done, queue flushed to the spool
        spooled = sum(
            len(p.read_bytes().splitlines()) for p in (settings.state_dir / "spool" / "proxy-pod-a").glob("seg-*.jsonl")
        )
        assert spooled == 3
    finally:
        embedded_nats.start()
    restarted = ProxyServer(settings).start()
    try:
        events = keysvc.wait_usage(record.id, 4, timeout=10)
        assert len({e.event_id for e in events}) == 4
    finally:
        restarted.stop()


def test_graceful_shutdown_finishes_in_flight_requests(tmp_path_factory, nats_url, keysvc, mock):
    from concurrent.futures import ThreadPoolExecutor

    proxy = ProxyServer(proxy_settings(tmp_path_factory, nats_url)).start()
    secret, record = keysvc.add_key()
    mock.set_fault("latency", latency_ms=700, model="gpt-4o-graceful", count=1)
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(
            httpx.post, proxy.url + "/v1/chat/completions",
            json={"model": "gpt-4o-graceful", "messages": MSG}, headers={"authorization": f"Bearer {secret}"}, timeout=30,
        )
        wait_until(lambda: proxy.runtime.metrics.inflight == 1, 5, what="request in flight")
        proxy.stop()  # like SIGTERM: stop accepting, finish in-flight, flush usage
        assert slow.result().status_code == 200
    (event,) = keysvc.wait_usage(record.id, 1)
    assert event.status == "ok" and event.model == "gpt-4o-graceful"
