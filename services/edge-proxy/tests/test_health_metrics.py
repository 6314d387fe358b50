"""Health, readiness and Prometheus metrics (on the proxy port and on a separate listener)."""

from __future__ import annotations

import httpx
from prometheus_client import CONTENT_TYPE_LATEST

from conftest import proxy_settings
from harness import ProxyServer
from llmgw_devstack.ports import free_port


def test_healthz_readyz(proxy):
    assert httpx.get(proxy.url + "/healthz").json() == {"status": "ok"}
    r = httpx.get(proxy.url + "/readyz")
    assert r.status_code == 200 and r.json()["nats"] == "connected" and r.json()["key_lookups"] == "answering"


def test_every_answer_carries_the_request_id_and_overhead(proxy):
    """Also the answers Litestar serves (health, metrics, unknown paths), not only /v1/*."""
    for path in ("/healthz", "/readyz", "/metrics", "/nope", "/v2/chat/completions"):
        r = httpx.get(proxy.url + path)
        assert r.headers.get("x-request-id") and float(r.headers["x-llmgw-overhead-ms"]) >= 0, (path, r.headers)
    r = httpx.get(proxy.url + "/healthz", headers={"x-request-id": "mine-123"})
    assert r.headers["x-request-id"] == "mine-123"


def test_metrics_on_the_proxy_port(proxy, key):
    secret, _ = key
    for _ in range(2):  # a miss, then a hit
        httpx.post(proxy.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
                   headers={"authorization": f"Bearer {secret}"})
    httpx.post(proxy.url + "/v1/chat/completions", json={"model": "gpt-4o-mini"}, headers={"authorization": "Bearer nope"})
    response = httpx.get(proxy.url + "/metrics")
    # exactly prometheus-client's type: its "charset=utf-8" once, not once more by Litestar
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert response.headers["content-type"].count("charset") == 1
    text = response.text
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
        assert r.headers["content-type"] == CONTENT_TYPE_LATEST
        assert httpx.get(f"http://127.0.0.1:{port}/other").status_code == 404
        assert httpx.get(server.url + "/metrics").status_code == 404  # not on the proxy port then
    finally:
        server.stop()


def test_trace_context_reaches_upstream_and_usage_event(tmp_path_factory, nats_url, keysvc, mock):
    """With tracing on, the proxy's span continues the client's trace; the upstream call and the
    usage event's NATS headers carry it."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server = ProxyServer(proxy_settings(tmp_path_factory, nats_url)).start()
    server.runtime.service.tracer = provider.get_tracer("test")  # without touching the global provider
    try:
        secret, record = keysvc.add_key()
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        since = mock.last_seq()
        r = httpx.post(server.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
                       headers={"authorization": f"Bearer {secret}", "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
        assert r.status_code == 200
        (call,) = mock.calls(since)
        assert call["headers"]["traceparent"].split("-")[1] == trace_id
        assert call["headers"]["traceparent"].split("-")[2] != "00f067aa0ba902b7"  # the proxy's own span
        from opentelemetry.trace import SpanKind

        spans = exporter.get_finished_spans()
        (span,) = [s for s in spans if s.kind == SpanKind.SERVER]
        assert format(span.context.trace_id, "032x") == trace_id
        assert span.attributes["llmgw.key_id"] == record.id and span.attributes["http.response.status_code"] == 200
        # one CLIENT span per upstream attempt: its context is what the provider received
        (upstream,) = [s for s in spans if s.kind == SpanKind.CLIENT]
        assert upstream.parent.span_id == span.context.span_id
        assert call["headers"]["traceparent"].split("-")[2] == format(upstream.context.span_id, "016x")
        assert upstream.attributes["http.request.method"] == "POST"
        assert upstream.attributes["http.response.status_code"] == 200
        assert upstream.attributes["llmgw.provider"] == "openai" and "?" not in upstream.attributes["url.path"]
        # the usage event's PRODUCER span: its context travels in the JetStream headers
        (publish,) = [s for s in spans if s.kind == SpanKind.PRODUCER]
        assert publish.parent.span_id == span.context.span_id
        assert publish.name == "publish llmgw.v1.usage.openai"
        assert publish.attributes["messaging.system"] == "nats"
        assert publish.attributes["messaging.destination.name"] == "llmgw.v1.usage.openai"
        for recorded in spans:
            assert secret not in str(dict(recorded.attributes))

        async def header_of_event():
            info = await keysvc.js.stream_info("LLMGW_USAGE")
            for seq in range(info.state.last_seq, 0, -1):
                msg = await keysvc.js.get_msg("LLMGW_USAGE", seq=seq)
                if record.id.encode() in msg.data:
                    return msg.headers

        keysvc.wait_usage(record.id, 1)
        headers = keysvc.lt.run(header_of_event())
        assert headers["traceparent"].split("-")[1] == trace_id
        assert headers["traceparent"].split("-")[2] == format(publish.context.span_id, "016x")
    finally:
        server.stop()
