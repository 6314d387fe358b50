"""Prometheus metrics of one proxy process, in the text format ``prometheus-client`` renders.

The hot path only bumps plain ints in dicts (everything runs on the event loop's thread); a custom
collector turns them into metric families when ``/metrics`` is scraped. prometheus-client's own
Counter/Histogram take a lock and validate labels on every call, which showed up in the profile.
Each app has its own registry (several apps may share a test process).
Model names come from clients: past ``MAX_MODELS`` distinct values the label becomes ``other``.

Several uvicorn workers (``LLMGW_PROXY_WORKERS`` > 1) share one port, so a scrape reaches any one
of them: ``serve`` then sets ``PROMETHEUS_MULTIPROC_DIR`` (see ``llmgw_common.metrics``), every
worker writes a snapshot of its values there (``edge-proxy-<pid>.json``, every
``SNAPSHOT_INTERVAL`` s and at each scrape), and ``/metrics`` in any worker adds up all snapshots:
counters and histograms of every worker that ever ran (a dead worker's counts stay), gauges of the
live ones. Single worker: no files, nothing changes.
"""

from __future__ import annotations

import json
import os
from bisect import bisect_left
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

MAX_MODELS = 500
SNAPSHOT_INTERVAL = 1.0
CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()
#: ``/metrics`` response header, set explicitly: given only ``media_type``, Litestar appends a second
#: ``; charset=utf-8`` to a ``text/*`` type that already carries one
CONTENT_TYPE_HEADERS = {"content-type": CONTENT_TYPE_LATEST}

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_STATUS_CLASS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
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
            "llmgw_proxy_request_duration_seconds",
            "Total request latency (streams: until the last byte), by route, public model and status class (2xx…).",
            ("route", "model", "status_class"), _LATENCY,
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
        self._tokens = _Counter(
            "llmgw_proxy_tokens",
            "Tokens the providers reported, by public model, provider and type (prompt = all input incl. cached, "
            "cached, cache_write, completion = incl. reasoning, reasoning).",
            ("model", "provider", "type"),
        )
        self._cost = _Counter(
            "llmgw_proxy_cost_usd",
            "Cost of the answered requests at list price (genai-prices; metering's ledger applies overrides).",
            ("model", "provider"),
        )
        self._response_cache = _Counter(
            "llmgw_proxy_response_cache",
            "Response cache lookups and stores (hit, miss, store, skip = too large to store, error = NATS trouble).",
            ("result",),
        )
        self.inflight = 0
        self._gauges: list[tuple[str, str, Callable[[], float]]] = [
            ("llmgw_proxy_in_flight_requests", "Requests being processed.", lambda: self.inflight),
        ]
        self._models: set[str] = set()
        from llmgw_common.metrics import multiprocess_dir

        self.snapshot_dir = multiprocess_dir()
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
        self._duration.observe((route, key[1], _STATUS_CLASS.get(status // 100, "other")), seconds)
        if overhead is not None:
            self._overhead.observe((route,), overhead if overhead > 0 else 0.0)

    def tokens(self, model: str, provider: str, tokens) -> None:
        values = self._tokens.values
        model = self.model_label(model)
        for kind, count in (
            ("prompt", tokens.prompt), ("cached", tokens.cached), ("cache_write", tokens.cache_write),
            ("completion", tokens.completion), ("reasoning", tokens.reasoning),
        ):
            if count:
                key = (model, provider, kind)
                values[key] = values.get(key, 0) + count

    def cost(self, model: str, provider: str, usd: float) -> None:
        values = self._cost.values
        key = (self.model_label(model), provider)
        values[key] = values.get(key, 0.0) + usd

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

    def response_cache(self, result: str) -> None:
        values = self._response_cache.values
        values[(result,)] = values.get((result,), 0) + 1

    # --- exposition -------------------------------------------------------------------------------
    def _metrics(self) -> list:
        return [value for value in vars(self).values() if isinstance(value, (_Counter, _Histogram))]

    def collect(self):
        directory = self.snapshot_dir
        if directory is not None:
            yield from self._collect_workers(directory)
            return
        for metric in self._metrics():
            yield metric.family()
        for name, doc, read in self._gauges:
            yield GaugeMetricFamily(name, doc, value=float(read()))

    # --- several workers ---------------------------------------------------------------------------
    #: PROMETHEUS_MULTIPROC_DIR when several workers share the port (None: this process alone)
    snapshot_dir: str | None = None

    def _snapshot(self) -> dict:
        return {
            "pid": os.getpid(),
            "metrics": {
                m.name: [[list(k), v] for k, v in (m.values if isinstance(m, _Counter) else m.series).items()]
                for m in self._metrics()
            },
            "gauges": {name: float(read()) for name, _, read in self._gauges},
        }

    def write_snapshot(self) -> None:
        """This worker's values to ``<dir>/edge-proxy-<pid>.json`` (atomically)."""
        directory = self.snapshot_dir
        if directory is None:
            return
        path = Path(directory) / f"edge-proxy-{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._snapshot(), separators=(",", ":")))
        os.replace(tmp, path)

    def _collect_workers(self, directory: str):
        own = self._snapshot()
        snapshots = [own]
        try:
            self.write_snapshot()
        except OSError:
            pass
        for path in Path(directory).glob("edge-proxy-*.json"):
            try:
                other = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if other.get("pid") != own["pid"]:
                snapshots.append(other)
        for metric in self._metrics():
            merged = _Counter(metric.name, metric.doc, metric.labels) if isinstance(metric, _Counter) else _Histogram(
                metric.name, metric.doc, metric.labels, metric.buckets
            )
            target = merged.values if isinstance(merged, _Counter) else merged.series
            for snapshot in snapshots:
                for labels, value in snapshot["metrics"].get(metric.name, ()):
                    key = tuple(labels)
                    if isinstance(merged, _Counter):
                        target[key] = target.get(key, 0) + value
                    else:
                        series = target.get(key)
                        target[key] = list(value) if series is None else [a + b for a, b in zip(series, value)]
            yield merged.family()
        live = [s for s in snapshots if s is own or _alive(s.get("pid"))]
        for name, doc, _ in self._gauges:
            yield GaugeMetricFamily(name, doc, value=sum(s["gauges"].get(name, 0.0) for s in live))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _alive(pid) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
