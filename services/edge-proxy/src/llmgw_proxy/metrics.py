"""Prometheus metrics of one proxy process (own registry: several apps may share a test process).

Label children are cached in dicts so the hot path pays a dict probe, not ``labels()``'s checks.
Model names come from clients: past ``MAX_MODELS`` distinct values the label becomes ``other``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MAX_MODELS = 500
CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_OVERHEAD = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=False)
        self._requests = Counter(
            "llmgw_proxy_requests", "Client requests answered, by route, public model and HTTP status.",
            ["route", "model", "status"], registry=registry,
        )
        self._duration = Histogram(
            "llmgw_proxy_request_duration_seconds", "Total request latency (streams: until the last byte).",
            ["route"], buckets=_LATENCY, registry=registry,
        )
        self._overhead = Histogram(
            "llmgw_proxy_overhead_seconds", "Time the gateway itself added (x-llmgw-overhead-ms).",
            ["route"], buckets=_OVERHEAD, registry=registry,
        )
        self._upstream = Histogram(
            "llmgw_proxy_upstream_duration_seconds", "Upstream attempt latency until headers (+ body when not streamed).",
            ["provider"], buckets=_LATENCY, registry=registry,
        )
        self._attempts = Counter(
            "llmgw_proxy_upstream_attempts", "Upstream attempts by provider and outcome (ok, http_429, http_5xx, "
            "connect_error, timeout).", ["provider", "outcome"], registry=registry,
        )
        self._key_cache = Counter(
            "llmgw_proxy_key_cache_lookups", "Virtual-key cache results (hit, miss, negative_hit, stale, refresh).",
            ["result"], registry=registry,
        )
        self._rejections = Counter(
            "llmgw_proxy_rejections", "Requests refused by limits (rate_limit_requests, rate_limit_tokens, "
            "max_parallel, budget).", ["reason"], registry=registry,
        )
        self._usage = Counter(
            "llmgw_proxy_usage_events", "Usage events by outcome (published, spooled, replayed).",
            ["outcome"], registry=registry,
        )
        self._breakers = Counter(
            "llmgw_proxy_circuit_breaker_opened", "Times a deployment's circuit breaker opened.",
            ["deployment"], registry=registry,
        )
        self.inflight = Gauge("llmgw_proxy_in_flight_requests", "Requests being processed.", registry=registry)
        self.spool_depth = Gauge(
            "llmgw_proxy_spool_depth", "Usage events in the local spool, not yet acknowledged by JetStream.",
            registry=registry,
        )
        self.queue_depth = Gauge(
            "llmgw_proxy_usage_queue_depth", "Usage events waiting in memory for the publisher.", registry=registry
        )
        self._children: dict = {}
        self._models: set[str] = set()

    def _child(self, metric, *labels):
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def model_label(self, model: str) -> str:
        if model in self._models:
            return model
        if len(self._models) >= MAX_MODELS:
            return "other"
        self._models.add(model)
        return model

    # --- hot-path recorders ---------------------------------------------------------------------
    def request(self, route: str, model: str, status: int, seconds: float, overhead: float | None) -> None:
        self._child(self._requests, route, self.model_label(model), str(status)).inc()
        self._child(self._duration, route).observe(seconds)
        if overhead is not None:
            self._child(self._overhead, route).observe(overhead)

    def upstream_attempt(self, provider: str, outcome: str, seconds: float | None) -> None:
        self._child(self._attempts, provider, outcome).inc()
        if seconds is not None:
            self._child(self._upstream, provider).observe(seconds)

    def key_cache(self, result: str) -> None:
        self._child(self._key_cache, result).inc()

    def rejected(self, reason: str) -> None:
        self._child(self._rejections, reason).inc()

    def usage_events(self, outcome: str, n: int = 1) -> None:
        self._child(self._usage, outcome).inc(n)

    def breaker_opened(self, deployment: str) -> None:
        self._child(self._breakers, deployment).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
