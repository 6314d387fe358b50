"""Prometheus metrics of one proxy process, in the text format ``prometheus-client`` renders.

The hot path only bumps plain ints in dicts (everything runs on the event loop's thread); a custom
collector turns them into metric families when ``/metrics`` is scraped. prometheus-client's own
Counter/Histogram take a lock and validate labels on every call, which showed up in the profile.
Each app has its own registry (several apps may share a test process).
Model names come from clients: past ``MAX_MODELS`` distinct values the label becomes ``other``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

MAX_MODELS = 500
CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_OVERHEAD = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)


class _Counter:
    __slots__ = ("name", "doc", "labels", "values")

    def __init__(self, name: str, doc: str, labels: tuple[str, ...]) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.values: dict[tuple, float] = {}

    def family(self):
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, value in self.values.items():
            family.add_metric(list(key), value)
        return family


class _Histogram:
    __slots__ = ("name", "doc", "labels", "buckets", "series")

    def __init__(self, name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> None:
        self.name, self.doc, self.labels, self.buckets = name, doc, labels, buckets
        #: labels -> [count per bucket (last = +Inf)..., sum]
        self.series: dict[tuple, list] = {}

    def observe(self, key: tuple, value: float) -> None:
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = [0] * (len(self.buckets) + 1) + [0.0]
        series[bisect_left(self.buckets, value)] += 1
        series[-1] += value

    def family(self):
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        bounds = [str(b) for b in self.buckets] + ["+Inf"]
        for key, series in self.series.items():
            cumulative, running = [], 0
            for bound, count in zip(bounds, series[:-1]):
                running += count
                cumulative.append((bound, running))
            family.add_metric(list(key), cumulative, series[-1])
        return family


class Metrics:
    def __init__(self) -> None:
        self._requests = _Counter(
            "llmgw_proxy_requests", "Client requests answered, by route, public model and HTTP status.",
            ("route", "model", "status"),
        )
        self._duration = _Histogram(
            "llmgw_proxy_request_duration_seconds", "Total request latency (streams: until the last byte).",
            ("route",), _LATENCY,
        )
        self._overhead = _Histogram(
            "llmgw_proxy_overhead_seconds", "Time the gateway itself added (x-llmgw-overhead-ms).", ("route",), _OVERHEAD
        )
        self._upstream = _Histogram(
            "llmgw_proxy_upstream_duration_seconds",
            "Upstream attempt latency until the response headers (+ body when not streamed).", ("provider",), _LATENCY,
        )
        self._attempts = _Counter(
            "llmgw_proxy_upstream_attempts",
            "Upstream attempts by provider and outcome (ok, http_429, http_5xx, connect_error, timeout).",
            ("provider", "outcome"),
        )
        self._key_cache = _Counter(
            "llmgw_proxy_key_cache_lookups", "Virtual-key cache results (hit, miss, negative_hit, stale, refresh).",
            ("result",),
        )
        self._rejections = _Counter(
            "llmgw_proxy_rejections",
            "Requests refused by limits (rate_limit_requests, rate_limit_tokens, max_parallel, budget).", ("reason",),
        )
        self._usage = _Counter(
            "llmgw_proxy_usage_events", "Usage events by outcome (published, spooled, replayed).", ("outcome",)
        )
        self._breakers = _Counter(
            "llmgw_proxy_circuit_breaker_opened", "Times a deployment's circuit breaker opened.", ("deployment",)
        )
        self.inflight = 0
        self._gauges: list[tuple[str, str, Callable[[], float]]] = [
            ("llmgw_proxy_in_flight_requests", "Requests being processed.", lambda: self.inflight),
        ]
        self._models: set[str] = set()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def gauge(self, name: str, doc: str, read: Callable[[], float]) -> None:
        self._gauges.append((name, doc, read))

    def model_label(self, model: str) -> str:
        if model in self._models:
            return model
        if len(self._models) >= MAX_MODELS:
            return "other"
        self._models.add(model)
        return model

    # --- hot-path recorders ---------------------------------------------------------------------
    def request(self, route: str, model: str, status: int, seconds: float, overhead: float | None) -> None:
        values = self._requests.values
        key = (route, self.model_label(model), str(status))
        values[key] = values.get(key, 0) + 1
        key = (route,)
        self._duration.observe(key, seconds)
        if overhead is not None:
            self._overhead.observe(key, overhead if overhead > 0 else 0.0)

    def upstream_attempt(self, provider: str, outcome: str, seconds: float | None) -> None:
        values = self._attempts.values
        key = (provider, outcome)
        values[key] = values.get(key, 0) + 1
        if seconds is not None:
            self._upstream.observe((provider,), seconds)

    def key_cache(self, result: str) -> None:
        values = self._key_cache.values
        values[(result,)] = values.get((result,), 0) + 1

    def rejected(self, reason: str) -> None:
        values = self._rejections.values
        values[(reason,)] = values.get((reason,), 0) + 1

    def usage_events(self, outcome: str, n: int = 1) -> None:
        values = self._usage.values
        values[(outcome,)] = values.get((outcome,), 0) + n

    def breaker_opened(self, deployment: str) -> None:
        values = self._breakers.values
        values[(deployment,)] = values.get((deployment,), 0) + 1

    # --- exposition -------------------------------------------------------------------------------
    def collect(self):
        for metric in (
            self._requests, self._duration, self._overhead, self._upstream, self._attempts, self._key_cache,
            self._rejections, self._usage, self._breakers,
        ):
            yield metric.family()
        for name, doc, read in self._gauges:
            yield GaugeMetricFamily(name, doc, value=float(read()))

    def render(self) -> bytes:
        return generate_latest(self.registry)
