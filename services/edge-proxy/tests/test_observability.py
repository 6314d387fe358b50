"""The proxy's request log line, token/cost/latency metrics, and /metrics summed over workers."""

from __future__ import annotations

import json
import logging
import os

import httpx
import pytest

from conftest import OPENAI_KEY, proxy_settings
from harness import ProxyServer
from llmgw_common.logging import JsonFormatter, RedactingFilter
from llmgw_proxy.metrics import Metrics

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "observability prompt text 41c9"}]}


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def logged_proxy(tmp_path_factory, nats_url, keysvc):
    server = ProxyServer(proxy_settings(tmp_path_factory, nats_url, log_level="INFO")).start()
    capture = Capture()
    access = logging.getLogger("llmgw_proxy.access")
    access.addHandler(capture)
    logging.getLogger("llmgw_proxy").setLevel(logging.INFO)
    yield server, capture
    access.removeHandler(capture)
    server.stop()


def test_one_json_line_per_request_without_secrets(logged_proxy, keysvc):
    server, capture = logged_proxy
    secret, record = keysvc.add_key()
    capture.records.clear()
    ok = httpx.post(server.url + "/v1/chat/completions", json=BODY, headers={"authorization": f"Bearer {secret}"})
    assert ok.status_code == 200
    bad = httpx.post(server.url + "/v1/chat/completions", json=BODY, headers={"authorization": "Bearer sk-llmgw-nope-123456"})
    assert bad.status_code == 401
    info = httpx.get(server.url + "/v1/key/info", headers={"authorization": f"Bearer {secret}"})
    assert info.status_code == 200
    records = list(capture.records)
    assert len(records) == 3, [r.__dict__ for r in records]
    formatter, redact = JsonFormatter("edge-proxy"), RedactingFilter()
    lines = []
    for rec in records:
        redact.filter(rec)
        lines.append(json.loads(formatter.format(rec)))
    first, unauthorized, local = lines
    assert first["logger"] == "llmgw_proxy.access" and first["message"] == "request"
    assert first["request_id"] == ok.headers["x-request-id"]
    assert first["key_id"] == record.id and first["model"] == "gpt-4o-mini" and first["status"] == 200
    assert first["provider"] == "openai" and first["attempts"] == 1 and first["outcome"] == "ok"
    assert first["latency_ms"] > 0 and first["total_tokens"] == ok.json()["usage"]["total_tokens"]
    assert first["prompt_tokens"] == ok.json()["usage"]["prompt_tokens"]
    # tracing off: a generated trace id still correlates the services' lines
    assert len(first["trace_id"]) == 32 and int(first["trace_id"], 16)
    assert unauthorized["status"] == 401 and unauthorized["key_id"] is None and unauthorized["total_tokens"] == 0
    assert local["route"] == "/v1/key/info" and local["status"] == 200
    text = json.dumps(lines)
    assert secret not in text and "sk-llmgw-nope-123456" not in text and OPENAI_KEY not in text
    assert BODY["messages"][0]["content"] not in text and ok.json()["choices"][0]["message"]["content"] not in text


def test_token_cost_and_latency_metrics(logged_proxy, keysvc):
    server, _ = logged_proxy
    secret, _ = keysvc.add_key()
    before = samples(httpx.get(server.url + "/metrics").text)
    r = httpx.post(server.url + "/v1/chat/completions", json=BODY, headers={"authorization": f"Bearer {secret}"})
    usage = r.json()["usage"]
    after = samples(httpx.get(server.url + "/metrics").text)

    def delta(name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    ids = {"model": "gpt-4o-mini", "provider": "openai"}
    assert delta("llmgw_proxy_tokens_total", type="prompt", **ids) == usage["prompt_tokens"]
    assert delta("llmgw_proxy_tokens_total", type="completion", **ids) == usage["completion_tokens"]
    assert delta("llmgw_proxy_cost_usd_total", **ids) > 0
    assert delta("llmgw_proxy_request_duration_seconds_count", model="gpt-4o-mini", route="/v1/chat/completions",
                 status_class="2xx") == 1


def samples(text: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_of_several_workers_add_up(tmp_path, monkeypatch):
    """What /metrics shows with PROMETHEUS_MULTIPROC_DIR: this worker's values plus every other
    worker's snapshot; a dead worker keeps its counts but not its gauges."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    mine, sibling, dead = Metrics(), Metrics(), Metrics()
    assert mine.snapshot_dir == str(tmp_path)
    mine.request("/v1/chat/completions", "m", 200, 0.1, 0.001)
    sibling.request("/v1/chat/completions", "m", 200, 0.2, 0.001)
    sibling.request("/v1/chat/completions", "m", 429, 0.01, None)
    dead.request("/v1/chat/completions", "m", 200, 0.3, 0.001)
    mine.inflight, sibling.inflight, dead.inflight = 1, 2, 5
    for other, pid in ((sibling, os.getppid()), (dead, 2**22 + 4321)):
        snapshot = other._snapshot()
        snapshot["pid"] = pid
        (tmp_path / f"edge-proxy-{pid}.json").write_text(json.dumps(snapshot))
    text = mine.render().decode()
    assert 'llmgw_proxy_requests_total{model="m",route="/v1/chat/completions",status="200"} 3.0' in text
    assert 'llmgw_proxy_requests_total{model="m",route="/v1/chat/completions",status="429"} 1.0' in text
    assert ('llmgw_proxy_request_duration_seconds_count{model="m",route="/v1/chat/completions",status_class="2xx"} 3.0'
            in text)
    assert "llmgw_proxy_in_flight_requests 3.0" in text  # 1 + 2; the dead worker's 5 is gone
    assert (tmp_path / f"edge-proxy-{os.getpid()}.json").exists()  # the scrape refreshed our own snapshot
