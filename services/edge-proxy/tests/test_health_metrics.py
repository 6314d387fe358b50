"""Health, readiness and Prometheus metrics (on the proxy port and on a separate listener)."""

from __future__ import annotations

import httpx

from conftest import proxy_settings
from harness import ProxyServer
from llmgw_devstack.ports import free_port


def test_healthz_readyz(proxy):
    assert httpx.get(proxy.url + "/healthz").json() == {"status": "ok"}
    r = httpx.get(proxy.url + "/readyz")
    assert r.status_code == 200 and r.json()["nats"] == "connected" and r.json()["key_lookups"] == "answering"


def test_metrics_on_the_proxy_port(proxy, key):
    secret, _ = key
    for _ in range(2):  # a miss, then a hit
        httpx.post(proxy.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
                   headers={"authorization": f"Bearer {secret}"})
    httpx.post(proxy.url + "/v1/chat/completions", json={"model": "gpt-4o-mini"}, headers={"authorization": "Bearer nope"})
    text = httpx.get(proxy.url + "/metrics").text
    assert 'llmgw_proxy_requests_total{model="gpt-4o-mini",route="/v1/chat/completions",status="200"}' in text
    assert 'status="401"' in text
    assert 'llmgw_proxy_upstream_duration_seconds_count{provider="openai"}' in text
    assert 'llmgw_proxy_upstream_attempts_total{outcome="ok",provider="openai"}' in text
    assert 'llmgw_proxy_key_cache_lookups_total{result="hit"}' in text
    assert "llmgw_proxy_spool_depth" in text and "llmgw_proxy_usage_events_total" in text
    assert "llmgw_proxy_overhead_seconds_bucket" in text


def test_separate_metrics_listener(tmp_path_factory, nats_url, keysvc):
    port = free_port()
    server = ProxyServer(proxy_settings(tmp_path_factory, nats_url, proxy_metrics_port=port)).start()
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/metrics")
        assert r.status_code == 200 and "llmgw_proxy_spool_depth" in r.text
        assert httpx.get(f"http://127.0.0.1:{port}/other").status_code == 404
        assert httpx.get(server.url + "/metrics").status_code == 404  # not on the proxy port then
    finally:
        server.stop()
