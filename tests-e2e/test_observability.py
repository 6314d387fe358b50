"""Observability end to end: the three services as processes with tracing exported over OTLP/HTTP to
a receiver inside this test, JSON logs, Prometheus /metrics.

- One client request is ONE trace: proxy server span → key lookup request span → key-service
  responder span (its child) → upstream call span → usage publish span → metering consume span (child
  of the publish) → database insert span (linked to the event's context).
- Every metric the Grafana dashboard queries exists in a scrape of the services after traffic.
- No log line of any service and no span attribute carries a secret (virtual key, provider keys, the
  admin token) or the prompt/completion; every proxy request line is JSON with the request's ids,
  key, model, status, latency and tokens.

The module runs its own NATS server: a second key-service or metering on a shared server would
answer part of the lookups or consume part of the usage events (queue group / durable consumer)
without exporting to this receiver.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anthropic
import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from conftest import ANTHROPIC_PROVIDER_KEY, OPENAI_PROVIDER_KEY, eventually
from llmgw_devstack.nats_server import EmbeddedNats
from llmgw_devstack.ports import free_port
from llmgw_devstack.processes import http_json
from llmgw_devstack.stack import ServiceStack

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "observability" / "grafana" / "dashboards" / "llmgw.json"

PROMPT = "Observability probe: the quick brown fox jumps over the lazy dog 7f3a"
MESSAGES = [{"role": "user", "content": PROMPT}]

SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5  # OTLP SpanKind values

#: compose service -> its OTEL_SERVICE_NAME there, and the default service name of a bare `serve`
COMPOSE_SERVICE_NAMES = {"edge-proxy": "edge-proxy", "key-service": "key-service", "metering": "metering"}

#: dashboard metrics this traffic cannot produce samples for (they need failures): declared is enough
RARE = {"llmgw_proxy_circuit_breaker_opened_total", "llmgw_metering_db_errors_total"}


# --- an OTLP/HTTP trace receiver --------------------------------------------------------------------
def _value(any_value):
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    value = getattr(any_value, kind)
    if kind == "array_value":
        return [_value(v) for v in value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.values}
    return value


class OtlpReceiver:
    """``POST /v1/traces`` (protobuf, optionally gzip) → decoded spans, kept in memory."""

    def __init__(self) -> None:
        self.spans: list[dict] = []
        self.requests = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.add(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, request: ExportTraceServiceRequest) -> None:
        decoded = []
        for resource_spans in request.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    decoded.append(
                        {
                            "service": resource.get("service.name", ""),
                            "scope": scope_spans.scope.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex() or None,
                            "name": span.name,
                            "kind": span.kind,
                            "attributes": {kv.key: _value(kv.value) for kv in span.attributes},
                            "links": [(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                        }
                    )
        with self.lock:
            self.spans.extend(decoded)
            self.requests += 1

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.spans)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def receiver():
    otlp = OtlpReceiver()
    otlp.start()
    yield otlp
    otlp.stop()


@pytest.fixture(scope="module")
def obs_nats(tmp_path_factory):
    root = tmp_path_factory.mktemp("obs-nats")
    server = EmbeddedNats(root / "data", log_file=root / "nats.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def obs(obs_nats, make_database, mock_provider, receiver, tmp_path_factory):
    metrics_port = free_port()
    services = ServiceStack(
        nats_url=obs_nats.url,
        database_url=make_database("obs"),
        state_dir=tmp_path_factory.mktemp("obs-state"),
        openai_base_url=mock_provider.url + "/v1",
        anthropic_base_url=mock_provider.url,
        openai_api_key=OPENAI_PROVIDER_KEY,
        anthropic_api_key=ANTHROPIC_PROVIDER_KEY,
        extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_TRACES_SAMPLER": "always_on",
            "LLMGW_LOG_FORMAT": "json",
            "LLMGW_LOG_LEVEL": "INFO",
            "LLMGW_PROXY_METRICS_PORT": str(metrics_port),
        },
    )
    services.proxy_metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        services.start()
    except Exception:
        for name in services.children:
            print(f"----- {name} log -----\n{services.log(name)[-4000:]}")
        services.stop()
        raise
    services.secrets = {services.admin_token, OPENAI_PROVIDER_KEY, ANTHROPIC_PROVIDER_KEY}
    services.texts = {PROMPT}
    yield services
    services.stop()


@pytest.fixture(scope="module")
def traffic(obs, obs_nats):
    """The module's traffic: a traced chat completion with a fresh key, then a mix that makes every
    dashboard metric produce samples (stream, Anthropic, 401, rate limit, budget, dead letter)."""
    created = obs.create_key(name="obs-trace", project="obs")
    obs.secrets.add(created["key"])
    client = openai.OpenAI(base_url=obs.proxy_url() + "/v1", api_key=created["key"], max_retries=0)
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    content = completion.choices[0].message.content
    if content and len(content) > 20:
        obs.texts.add(content)
    traced = {"key_id": created["id"], "request_id": completion._request_id}

    list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    client.embeddings.create(model="text-embedding-3-small", input=PROMPT)
    claude = anthropic.Anthropic(base_url=obs.proxy_url(), api_key=created["key"], max_retries=0)
    claude.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MESSAGES)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=obs.proxy_url() + "/v1", api_key="sk-llmgw-not-a-real-key-obs", max_retries=0
                      ).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    limited = obs.create_key(name="obs-rpm", project="obs", rpm_limit=1)
    obs.secrets.add(limited["key"])
    limited_client = openai.OpenAI(base_url=obs.proxy_url() + "/v1", api_key=limited["key"], max_retries=0)
    limited_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError):
        limited_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    broke = obs.create_key(name="obs-budget", project="obs", budget_usd=0.0000001, budget_period="daily")
    obs.secrets.add(broke["key"])
    broke_client = openai.OpenAI(base_url=obs.proxy_url() + "/v1", api_key=broke["key"], max_retries=0)
    with pytest.raises(openai.RateLimitError):
        broke_client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=4000)

    # an undecodable usage message: metering dead-letters it
    import asyncio

    import nats

    async def poison() -> None:
        nc = await nats.connect(obs_nats.url)
        try:
            await nc.jetstream().publish("llmgw.v1.usage.openai", b"not a usage event", headers={"Nats-Msg-Id": "obs-poison"})
        finally:
            await nc.close()

    asyncio.run(poison())
    # a credential in a query string must not reach a span attribute either
    request = urllib.request.Request(f"{obs.proxy_url()}/v1/models?api-key={created['key']}",
                                     headers={"Authorization": f"Bearer {created['key']}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    # the analyst API (metering HTTP metrics) with an analyst token (key-service verifies it)
    # and the admin API (key-service HTTP metrics)
    eventually(lambda: obs.usage(f"group_by=key&key_id={created['id']}")["data"], timeout=15, what="usage ingested")
    status, analyst = obs.admin("POST", "/v1/admin-tokens", {"name": "obs-analyst", "role": "analyst"})
    assert status == 201, analyst
    obs.secrets.add(analyst["token"])
    status, _ = http_json("GET", f"{obs.metering_url}/v1/usage?group_by=model", analyst["token"])
    assert status == 200
    obs.admin("GET", "/v1/keys/" + created["id"])
    return traced


# --- helpers --------------------------------------------------------------------------------------
def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        # exactly prometheus-client's exposition type: "charset=utf-8" once, nothing appended
        assert response.headers.get_all("content-type") == [CONTENT_TYPE_LATEST], response.headers.get_all("content-type")
        return response.read().decode()


def exposed_names(text: str) -> tuple[set[str], set[str]]:
    """(every series name a scrape can be queried by, the names that have at least one sample)."""
    names, sampled = set(), set()
    for family in text_string_to_metric_families(text):
        base = family.name
        names.add(base)
        if family.type == "counter":
            names |= {base + "_total", base + "_created"}
        elif family.type == "histogram":
            names |= {base + "_bucket", base + "_sum", base + "_count", base + "_created"}
        elif family.type == "summary":
            names |= {base + "_sum", base + "_count", base + "_created"}
        elif family.type == "gaugehistogram":
            names |= {base + "_bucket", base + "_gsum", base + "_gcount"}
        for sample in family.samples:
            names.add(sample.name)
            sampled.add(sample.name)
    return names, sampled


def dashboard_metrics() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                exprs.append(node["expr"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(dashboard)
    assert exprs, "the dashboard has PromQL expressions"
    names = set()
    for expr in exprs:
        without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
        without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
        names |= set(re.findall(r"\b(llmgw_[a-zA-Z0-9_:]+)", without_labels))
    return names


def base_name(name: str) -> str:
    for suffix in ("_bucket", "_count", "_sum", "_total", "_created"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


# --- tests ----------------------------------------------------------------------------------------
def test_dashboard_metrics_exist_in_a_scrape(obs, traffic):
    wanted = dashboard_metrics()
    assert len(wanted) >= 20, wanted
    urls = {
        "edge-proxy": obs.proxy_metrics_url,
        "key-service": obs.keys_url + "/metrics",
        "metering": obs.metering_url + "/metrics",
    }

    def all_present():
        names, sampled = set(), set()
        for url in urls.values():
            found, with_samples = exposed_names(scrape(url))
            names |= found
            sampled |= with_samples
        missing = sorted(n for n in wanted if n not in names)
        assert not missing, f"dashboard metrics not exposed by any service: {missing}"
        # and they carry data after this traffic (a histogram's series count as one)
        empty = sorted(n for n in wanted if n not in RARE and n not in sampled and base_name(n) + "_count" not in sampled
                       and base_name(n) + "_total" not in sampled and base_name(n) not in sampled)
        assert not empty, f"dashboard metrics without samples after the traffic: {empty}"
        return True

    eventually(all_present, timeout=15, interval=0.5, what="every dashboard metric in a scrape")


def test_one_trace_across_the_three_services(obs, receiver, traffic):
    request_id = traffic["request_id"]

    def server_span():
        spans = receiver.snapshot()
        found = [s for s in spans if s["kind"] == SERVER and "proxy" in s["service"]
                 and s["attributes"].get("llmgw.request_id") == request_id]
        assert found, f"no proxy server span for request {request_id} among {len(spans)} spans"
        return found[0]

    root = eventually(server_span, timeout=15, interval=0.2, what="the proxy's server span")
    trace_id = root["trace_id"]

    def chain():
        spans = [s for s in receiver.snapshot() if s["trace_id"] == trace_id]
        by_id = {s["span_id"]: s for s in spans}

        def one(predicate, what):
            found = [s for s in spans if predicate(s)]
            assert found, f"{what}: not in trace {trace_id}: {[(s['service'], s['name']) for s in spans]}"
            return found[0]

        def descends(span, ancestor):
            while span is not None:
                if span["parent"] == ancestor["span_id"]:
                    return True
                span = by_id.get(span["parent"])
            return False

        lookup = one(lambda s: "proxy" in s["service"] and s["kind"] in (CLIENT, PRODUCER)
                     and s["attributes"].get("messaging.destination.name") == "llmgw.v1.keys.lookup", "lookup request")
        assert lookup["attributes"]["messaging.system"] == "nats"
        assert lookup["attributes"].get("messaging.operation") in ("send", "publish", "request")
        assert descends(lookup, root)
        responder = one(lambda s: "key" in s["service"] and s["kind"] == CONSUMER
                        and s["attributes"].get("messaging.destination.name") == "llmgw.v1.keys.lookup",
                        "key-service responder")
        assert responder["parent"] == lookup["span_id"]
        upstream = one(lambda s: "proxy" in s["service"] and s["kind"] == CLIENT
                       and "http.request.method" in s["attributes"], "upstream HTTP call")
        assert descends(upstream, root)
        publish = one(lambda s: "proxy" in s["service"] and s["kind"] == PRODUCER
                      and str(s["attributes"].get("messaging.destination.name", "")).startswith("llmgw.v1.usage."),
                      "usage publish")
        assert publish["attributes"]["messaging.system"] == "nats"
        assert descends(publish, root)
        consume = one(lambda s: "metering" in s["service"] and s["kind"] == CONSUMER, "metering consume")
        assert consume["parent"] == publish["span_id"]
        insert = one(lambda s: "metering" in s["service"] and s["name"].startswith("INSERT"), "database insert")
        linked = {span_id for _, span_id in insert["links"]}
        assert linked & {publish["span_id"], consume["span_id"]}, insert["links"]
        return spans

    spans = eventually(chain, timeout=20, interval=0.3, what="the whole trace")
    # the default service names (no OTEL_SERVICE_NAME here) are the ones compose and k8s set
    assert {s["service"] for s in spans} == set(COMPOSE_SERVICE_NAMES.values())
    # NATS spans: "<operation> <subject>" (messaging semantic conventions), whichever service made them
    nats_spans = [s for s in receiver.snapshot() if s["attributes"].get("messaging.system") == "nats"]
    assert nats_spans
    for span in nats_spans:
        subject = span["attributes"]["messaging.destination.name"]
        operation = span["attributes"]["messaging.operation.type"]
        assert span["name"] == f"{operation} {subject}", (span["service"], span["name"])


def test_no_detached_root_spans(obs, receiver, traffic):
    """Every trace starts at a server span (a client's request). Start-up work, periodic work (the
    price-override refresh, outbox retries, maintenance) and the batch that stored the untraced
    poison message export nothing, rather than one-span root traces every few seconds."""
    eventually(lambda: [s for s in receiver.snapshot() if s["service"] == "metering" and s["name"].startswith("INSERT")],
               timeout=15, interval=0.2, what="metering's insert span exported")
    roots = [(s["service"], s["name"], s["attributes"].get("db.statement")) for s in receiver.snapshot() if s["parent"] is None and s["kind"] != SERVER]
    assert not roots, sorted(set(roots))


def test_default_service_names_match_compose():
    """A bare `serve` / `make run` names its traces and log lines like docker-compose.yml does."""
    import yaml

    from llmgw_keys.settings import Settings as KeysSettings
    from llmgw_metering.settings import Settings as MeteringSettings
    from llmgw_proxy.settings import Settings as ProxySettings

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert {name: compose[name]["environment"]["OTEL_SERVICE_NAME"] for name in COMPOSE_SERVICE_NAMES} == COMPOSE_SERVICE_NAMES
    defaults = {
        "edge-proxy": ProxySettings.model_fields["service_name"].default,
        "key-service": KeysSettings.model_fields["service_name"].default,
        "metering": MeteringSettings.model_fields["service_name"].default,
    }
    assert defaults == COMPOSE_SERVICE_NAMES


def test_span_attributes_carry_no_secrets_or_content(obs, receiver, traffic):
    def masked_request_exported():
        # the batch processor exports on its own schedule: wait for the last request's server span
        return [s for s in receiver.snapshot() if s["kind"] == SERVER and "api-key=" in request_url(s)]

    eventually(masked_request_exported, timeout=15, interval=0.2, what="the query-string request's server span")
    spans = receiver.snapshot()
    assert spans
    forbidden = obs.secrets | obs.texts
    for span in spans:
        blob = json.dumps(span["attributes"], default=str) + span["name"]
        for value in forbidden:
            assert value not in blob, f"span {span['service']}/{span['name']} carries a secret or content"
    # the request that carried the key in its query string: recorded, with the value masked
    models = [s for s in spans if s["kind"] == SERVER and "api-key=" in request_url(s)]
    assert models and all("api-key=***" in request_url(s) for s in models)


def request_url(span) -> str:
    """The server span's URL/query, under the old (``http.url``) or new (``url.*``) semconv names."""
    attributes = span["attributes"]
    return " ".join(str(attributes[name]) for name in ("http.url", "http.target", "url.full", "url.query")
                    if name in attributes)


def test_logs_are_json_and_carry_no_secrets(obs, traffic):
    names = [n for n in obs.children]
    forbidden = obs.secrets | obs.texts
    proxy_requests = []
    for name in names:
        text = obs.log(name)
        assert text, f"{name} wrote no log"
        for value in forbidden:
            assert value not in text, f"{name}'s log contains a secret or prompt/completion text"
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                pytest.fail(f"{name}: not a JSON log line: {line[:200]}")
            assert {"ts", "level", "logger", "message", "service"} <= entry.keys(), entry
            if name.startswith("edge-proxy") and entry["logger"] == "llmgw_proxy.access":
                proxy_requests.append(entry)
    assert len(proxy_requests) >= 8, f"expected one line per proxy request, got {len(proxy_requests)}"
    traced = [e for e in proxy_requests if e.get("request_id") == traffic["request_id"]]
    assert len(traced) == 1
    for entry in proxy_requests:
        for field in ("request_id", "trace_id", "key_id", "model", "status", "latency_ms", "prompt_tokens",
                      "completion_tokens", "total_tokens"):
            assert field in entry, (field, entry)
        assert isinstance(entry["status"], int) and isinstance(entry["latency_ms"], (int, float))
    ok = [e for e in proxy_requests if e["status"] == 200]
    assert ok and all(re.fullmatch(r"[0-9a-f]{32}", e["trace_id"]) for e in ok)
    assert traced[0]["key_id"] == traffic["key_id"] and traced[0]["total_tokens"] > 0


def test_metrics_add_up_over_several_workers(make_database, mock_provider, tmp_path_factory):
    """Two uvicorn workers per service share each port: whichever worker a scrape reaches, /metrics
    shows the sum over both (PROMETHEUS_MULTIPROC_DIR, set up by `serve`)."""
    root = tmp_path_factory.mktemp("workers-nats")
    server = EmbeddedNats(root / "data", log_file=root / "nats.log")
    server.start()
    metrics_port = free_port()
    services = ServiceStack(
        nats_url=server.url,
        database_url=make_database("workers"),
        state_dir=tmp_path_factory.mktemp("workers-state"),
        openai_base_url=mock_provider.url + "/v1",
        anthropic_base_url=mock_provider.url,
        openai_api_key=OPENAI_PROVIDER_KEY,
        anthropic_api_key=ANTHROPIC_PROVIDER_KEY,
        extra_env={"LLMGW_PROXY_WORKERS": "2", "LLMGW_KEYS_WORKERS": "2", "LLMGW_METERING_WORKERS": "2",
                   "LLMGW_PROXY_METRICS_PORT": str(metrics_port)},
    )
    try:
        services.start()
        created = services.create_key(name="workers")
        client = openai.OpenAI(base_url=services.proxy_url() + "/v1", api_key=created["key"], max_retries=0)
        for _ in range(20):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        for _ in range(10):
            services.admin("GET", "/v1/keys/" + created["id"])

        def total(url: str, name: str, **labels) -> float:
            return sum(
                sample.value
                for family in text_string_to_metric_families(scrape(url))
                for sample in family.samples
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
            )

        def every_scrape(url: str, name: str, expected: float, **labels):
            def check():
                seen = [total(url, name, **labels) for _ in range(6)]  # several scrapes: both workers answer some
                assert seen == [expected] * 6, seen
                return True

            eventually(check, timeout=20, interval=0.5, what=f"{name} = {expected} in every scrape")

        every_scrape(f"http://127.0.0.1:{metrics_port}/metrics", "llmgw_proxy_requests_total", 20,
                     route="/v1/chat/completions", status="200")
        every_scrape(services.keys_url + "/metrics", "llmgw_keys_http_requests_total", 10, route="/v1/keys/{key_id}")
        every_scrape(services.metering_url + "/metrics", "llmgw_metering_events_inserted_total", 20)
        every_scrape(services.metering_url + "/metrics", "llmgw_metering_consumer_running", 2)
    finally:
        services.stop()
        server.stop()
