"""Observability of key-service: /metrics (lookups, HTTP requests), the Litestar server span (no
per-chunk send/receive spans), the responder span continuing the caller's trace with its asyncpg
query spans under it, and no secret in any span attribute."""

from __future__ import annotations

import pytest
from conftest import ADMIN_TOKEN, ENV_OPENAI_KEY, lookup, wait_until
from llmgw_common.contract import hash_secret
from llmgw_common.telemetry import inject_headers
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CONTENT_TYPE_LATEST

SPANS = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def _tracing():
    """Installed before the module's app is created, so the app gets the OpenTelemetry plugin."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(SPANS))
    yield
    SPANS.shutdown()


async def test_metrics_count_lookups_and_http_requests(client, nc):
    created = (await client.post("/v1/keys", json={"name": "obs"})).json()
    key_hash = hash_secret(created["key"])
    assert (await lookup(nc, key_hash)).found
    assert (await lookup(nc, key_hash)).found  # answered from the responder's cache
    assert not (await lookup(nc, hash_secret("sk-llmgw-unknown-obs"))).found
    await client.get("/v1/keys/" + created["id"])
    await client.get("/v1/keys/k_nope")
    response = await client.get("/metrics")
    assert response.status_code == 200
    # exactly prometheus-client's exposition type, its charset parameter once
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert response.headers["content-type"].count("charset") == 1
    text = response.text
    assert 'llmgw_keys_lookups_total{cache="miss",result="found"}' in text
    assert 'llmgw_keys_lookups_total{cache="hit",result="found"}' in text
    assert 'llmgw_keys_lookups_total{cache="miss",result="not_found"}' in text
    assert "llmgw_keys_lookup_duration_seconds_bucket" in text
    assert 'llmgw_keys_http_requests_total{method="POST",route="/v1/keys",status="201"}' in text
    assert 'llmgw_keys_http_requests_total{method="GET",route="/v1/keys/{key_id}",status="200"}' in text
    assert 'llmgw_keys_http_requests_total{method="GET",route="/v1/keys/{key_id}",status="404"}' in text
    assert 'llmgw_keys_http_request_duration_seconds_count{method="POST",route="/v1/keys"}' in text
    assert 'llmgw_keys_change_events_total{outcome="published"}' in text
    # no secret and no hash in the exposition
    assert created["key"] not in text and key_hash not in text and ADMIN_TOKEN not in text


async def test_server_span_without_chunk_spans(client):
    SPANS.clear()
    response = await client.post("/v1/keys", json={"name": "span"})
    assert response.status_code == 201
    spans = await wait_until(
        lambda: [s for s in SPANS.get_finished_spans() if s.kind == trace.SpanKind.SERVER], what="server span"
    )
    assert spans[-1].name == "POST /v1/keys"
    SPANS.clear()
    created = response.json()
    await client.get("/v1/keys/" + created["id"])
    (get,) = await wait_until(
        lambda: [s for s in SPANS.get_finished_spans() if s.kind == trace.SpanKind.SERVER], what="server span"
    )
    assert get.name == "GET /v1/keys/{key_id}" and get.attributes["http.route"] == "/v1/keys/{key_id}"
    assert not [s for s in SPANS.get_finished_spans() if s.name.endswith((" http send", " http receive"))]
    # /metrics and the probes are not traced
    SPANS.clear()
    await client.get("/metrics")
    await client.get("/healthz")
    assert (await client.get("/readyz")).status_code == 200
    assert not [s for s in SPANS.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
    # nor the readiness probe's query (it would be a root trace every few seconds)
    assert not [s for s in SPANS.get_finished_spans() if "SELECT 1" in str(s.attributes.get("db.statement", ""))]


async def test_lookup_span_has_db_children_and_no_secrets(client, nc):
    created = (await client.post("/v1/keys", json={"name": "db-span"})).json()
    secret, key_hash = created["key"], hash_secret(created["key"])
    SPANS.clear()
    tracer = trace.get_tracer("proxy-stand-in")
    with tracer.start_as_current_span("send llmgw.v1.keys.lookup", kind=trace.SpanKind.CLIENT) as parent:
        assert (await lookup(nc, key_hash, headers=inject_headers({}))).found
    trace_id = parent.get_span_context().trace_id

    def responder():
        return [s for s in SPANS.get_finished_spans() if s.name == "process llmgw.v1.keys.lookup"]

    (span,) = await wait_until(responder, what="responder span")
    assert span.context.trace_id == trace_id and span.parent.span_id == parent.get_span_context().span_id
    assert span.attributes["messaging.system"] == "nats"
    assert span.attributes["messaging.operation"] == "process"
    assert span.attributes["messaging.destination.name"] == "llmgw.v1.keys.lookup"
    queries = [s for s in SPANS.get_finished_spans() if s.parent is not None and s.parent.span_id == span.context.span_id]
    assert queries, "asyncpg spans under the responder span"
    assert all(s.kind == trace.SpanKind.CLIENT for s in queries)
    for recorded in SPANS.get_finished_spans():
        for value in recorded.attributes.values():
            text = str(value)
            assert secret not in text and key_hash not in text and ENV_OPENAI_KEY not in text, (recorded.name, text)


async def test_nats_span_names_put_the_operation_first(client, nc):
    """Messaging semantic conventions: ``<operation> <destination>`` (``publish llmgw.v1.keys.changed``)."""
    SPANS.clear()
    created = (await client.post("/v1/keys", json={"name": "span-names"})).json()
    (published,) = await wait_until(
        lambda: [s for s in SPANS.get_finished_spans() if s.kind == trace.SpanKind.PRODUCER], what="publish span"
    )
    assert published.name == "publish llmgw.v1.keys.changed"
    assert published.attributes["messaging.operation.type"] == "publish"
    assert published.attributes["messaging.destination.name"] == "llmgw.v1.keys.changed"
    await lookup(nc, hash_secret(created["key"]), headers=inject_headers({}))
    consumers = await wait_until(
        lambda: [s for s in SPANS.get_finished_spans() if s.kind == trace.SpanKind.CONSUMER], what="responder span"
    )
    assert {s.name for s in consumers} == {"process llmgw.v1.keys.lookup"}
