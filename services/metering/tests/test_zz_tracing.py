"""Trace context from the producer's NATS headers: one consume span per message (its child), one
DB insert span per batch linked to every message. Named to run last: it installs the global SDK
tracer provider (per-message spans from then on would slow the volume tests down)."""

from __future__ import annotations

import time

from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from conftest import reset_jetstream, running_app
from helpers import event, new_key, publish, wait_for, wait_requests
from llmgw_common.telemetry import inject_headers, inject_span_headers, instrument_asyncpg, setup_tracing


def _exported(provider, exporter) -> list:
    provider.force_flush()
    return [(s.name, s.parent is None) for s in exporter.get_finished_spans()]


async def test_idle_and_unsampled_work_export_nothing(migrated, nats_url, nc):
    """Tracing on from the start: the start-up queries, the price-override refreshes, the consumer's
    idle polling, the probes export no span at all (no one-span root traces every few seconds), and neither
    does a batch whose events carry no sampled trace context (an unsampled ``traceparent``, or none):
    no ``INSERT`` root, no asyncpg query spans, no budget-sync queries."""
    exporter = InMemorySpanExporter()
    provider = setup_tracing("metering-tests", exporter=exporter)
    assert provider is not None
    assert instrument_asyncpg()
    await reset_jetstream(nats_url)
    async with running_app(migrated) as client:
        overrides = client.app.state.overrides
        # idle: wait for a dozen override refreshes (every 0.2 s here; 5 s by default)
        refreshes, last = 0, None

        async def refreshed_often():
            nonlocal refreshes, last
            if overrides.loaded and overrides._loaded_at != last:
                refreshes, last = refreshes + 1, overrides._loaded_at
            return refreshes >= 12

        started = time.monotonic()
        await wait_for(refreshed_often, timeout=20, interval=0.05, what="override refreshes")
        assert time.monotonic() - started >= 2
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200  # probes: no span, not even their query
        assert (await client.get("/metrics")).status_code == 200
        assert _exported(provider, exporter) == []

        # a batch with no sampled event: an unsampled traceparent (the proxy's sampler said no) and none.
        # Progress is read from the process's metrics (an analyst API call would be traced itself).
        inserted, kv_ok = _sample("llmgw_metering_events_inserted_total"), _kv_writes_ok()
        unsampled = NonRecordingSpan(SpanContext(0x5EED << 64 | 1, 0xAB, is_remote=False, trace_flags=TraceFlags(0)))
        key = new_key()
        await publish(nc, [event(key_id=key, budget_period_key="m203001", reserved_usd=0.01)],
                      headers=inject_span_headers(unsampled, {}))
        await publish(nc, [event(key_id=key, budget_period_key="m203002", reserved_usd=0.01)])

        async def stored_and_synced():
            # both stored, and the budget KV entries of both periods written (the sync after the commit)
            return _sample("llmgw_metering_events_inserted_total") >= inserted + 2 and _kv_writes_ok() >= kv_ok + 2

        await wait_for(stored_and_synced, what="the unsampled events stored and their budget synced")
        await client.app.state.budget.flush()
        assert _exported(provider, exporter) == []


def _sample(name: str, **labels) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def _kv_writes_ok() -> float:
    return _sample("llmgw_metering_budget_kv_writes_total", result="ok")


async def test_consume_and_insert_spans(client, nc):
    exporter = InMemorySpanExporter()
    provider = setup_tracing("metering-tests", exporter=exporter)
    assert provider is not None
    assert instrument_asyncpg()  # the app started before tracing was on: instrument now
    tracer = trace.get_tracer("edge-proxy-stand-in")
    key = new_key()
    producer_contexts = []
    for _ in range(3):
        with tracer.start_as_current_span("POST /v1/chat/completions", kind=SpanKind.SERVER) as span:
            ev = event(key_id=key)
            await publish(nc, [ev], headers=inject_headers({}))
            producer_contexts.append(span.get_span_context())
    untraced_key = new_key()
    await publish(nc, [event(key_id=untraced_key)])  # no trace context: stored, but no span of its own
    await wait_requests(client, key, 3)
    await wait_requests(client, untraced_key, 1)
    await client.app.state.budget.flush()
    provider.force_flush()
    spans = exporter.get_finished_spans()
    trace_ids = {c.trace_id for c in producer_contexts}
    consume = [s for s in spans if s.kind == SpanKind.CONSUMER and s.context.trace_id in trace_ids]
    assert len(consume) == 3
    assert len([s for s in spans if s.kind == SpanKind.CONSUMER]) == 3
    for span in consume:
        assert span.name == "process llmgw.v1.usage.openai"
        assert span.parent is not None and span.parent.span_id in {c.span_id for c in producer_contexts}
        assert span.attributes["messaging.system"] == "nats"
        assert span.attributes["messaging.operation.type"] == "process"
        assert span.attributes["messaging.consumer.group.name"] == "metering"
        assert span.attributes["messaging.operation"] == "process"
    inserts = [s for s in spans if s.name == "INSERT metering.usage_events"]
    linked = {link.context.span_id for s in inserts for link in s.links}
    assert {c.span_id for c in producer_contexts} <= linked
    assert all(s.kind == SpanKind.CLIENT and s.attributes["db.system.name"] == "postgresql" for s in inserts)
    # each traced batch's insert span is a child of the batch's first consume span (the request's
    # trace is complete) and its asyncpg query spans are under it
    consume_ids = {s.context.span_id: s for s in consume}
    traced_inserts = [s for s in inserts if s.parent is not None and s.parent.span_id in consume_ids]
    assert traced_inserts
    for insert in traced_inserts:
        parent = consume_ids[insert.parent.span_id]
        assert insert.context.trace_id == parent.context.trace_id
        assert parent.parent.span_id in {link.context.span_id for link in insert.links}
        queries = [s for s in spans if s.parent is not None and s.parent.span_id == insert.context.span_id]
        assert queries and all(s.kind == SpanKind.CLIENT for s in queries)
        assert any("metering.usage_events" in str(s.attributes.get("db.statement", "")) for s in queries)
    covered = {s.parent.span_id for s in traced_inserts}
    assert len(covered) >= 1
