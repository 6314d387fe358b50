"""llmgw_common.metrics (HTTP metrics middleware, multiprocess rendering) and the telemetry helpers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from litestar import Litestar, get
from litestar.exceptions import NotFoundException
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry, generate_latest

from llmgw_common import telemetry
from llmgw_common.metrics import HttpMetrics, prepare_multiprocess


def test_http_metrics_label_by_route_template_and_status():
    registry = CollectorRegistry()
    metrics = HttpMetrics("unit", registry=registry)

    @get("/items/{item_id:str}", sync_to_thread=False)
    def item(item_id: str) -> dict:
        if item_id == "missing":
            raise NotFoundException("no")
        return {"id": item_id}

    app = Litestar([item], middleware=[metrics.middleware])
    with TestClient(app) as client:
        assert client.get("/items/a").status_code == 200
        assert client.get("/items/b").status_code == 200
        assert client.get("/items/missing").status_code == 404
    text = generate_latest(registry).decode()
    assert 'llmgw_unit_http_requests_total{method="GET",route="/items/{item_id}",status="200"} 2.0' in text
    assert 'llmgw_unit_http_requests_total{method="GET",route="/items/{item_id}",status="404"} 1.0' in text
    assert 'llmgw_unit_http_request_duration_seconds_count{method="GET",route="/items/{item_id}"} 3.0' in text


def test_multiprocess_mode_sums_the_workers(tmp_path):
    """Two processes write samples; a third renders the sum (what /metrics does in any worker)."""
    env = {**os.environ}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    directory = prepare_multiprocess(2, tmp_path, "svc")
    assert directory and os.environ["PROMETHEUS_MULTIPROC_DIR"] == directory and directory.endswith("/svc")
    try:
        env["PROMETHEUS_MULTIPROC_DIR"] = directory
        worker = textwrap.dedent("""
            from prometheus_client import Counter
            Counter("llmgw_mp_things", "things").inc(3)
        """)
        for _ in range(2):
            subprocess.run([sys.executable, "-c", worker], env=env, check=True)
        render = "from llmgw_common.metrics import render; print(render()[0].decode())"
        out = subprocess.run([sys.executable, "-c", render], env=env, check=True, capture_output=True, text=True).stdout
        assert "llmgw_mp_things_total 6.0" in out
        # a new start empties the directory: nothing counted twice
        prepare_multiprocess(2, tmp_path, "svc")
        out = subprocess.run([sys.executable, "-c", render], env=env, check=True, capture_output=True, text=True).stdout
        assert "llmgw_mp_things_total" not in out
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]


def test_single_worker_stays_single_process(tmp_path, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert prepare_multiprocess(1, tmp_path, "svc") is None
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_messaging_attributes():
    attributes = telemetry.messaging_attributes("llmgw.v1.keys.lookup", "send", body_size=10, consumer_group="g")
    assert attributes["messaging.system"] == "nats"
    assert attributes["messaging.destination.name"] == "llmgw.v1.keys.lookup"
    assert attributes["messaging.operation"] == attributes["messaging.operation.type"] == "send"
    assert attributes["messaging.message.body.size"] == 10
    assert attributes["messaging.consumer.group.name"] == "g"


def test_inject_span_headers_round_trip():
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("t")
    span = tracer.start_span("s")
    headers = telemetry.inject_span_headers(span, {"Nats-Msg-Id": "x"})
    assert headers["Nats-Msg-Id"] == "x"
    assert headers["traceparent"].split("-")[2] == format(span.get_span_context().span_id, "016x")
    from opentelemetry import trace

    parent = trace.get_current_span(telemetry.extract_context(headers)).get_span_context()
    assert parent.span_id == span.get_span_context().span_id
    span.end()


def test_litestar_config_excludes_chunk_spans_and_probes():
    config = telemetry.litestar_opentelemetry_config()
    assert config.exclude_spans == ["receive", "send"]
    assert "^/metrics$" in config.exclude and "^/healthz$" in config.exclude
