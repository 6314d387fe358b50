"""Prometheus plumbing shared by the services: rendering ``/metrics`` (single process or
prometheus-client's multiprocess mode) and per-route HTTP request metrics for Litestar apps.

Workers: one uvicorn worker per container is the supported production shape (scale with replicas;
the k8s manifests and compose do), so each scrape target is one process. With
``LLMGW_*_WORKERS`` > 1 the workers share one listening socket and a scrape reaches any one of
them, so the ``serve`` commands switch prometheus-client to multiprocess mode
(:func:`prepare_multiprocess`): every worker writes its samples to files in
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` (any worker) sums them. See docs/observability.md.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ENV_MULTIPROC = "PROMETHEUS_MULTIPROC_DIR"

#: seconds; for HTTP handlers (admin/analyst REST), fine at the low end
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def multiprocess_dir() -> str | None:
    return os.environ.get(ENV_MULTIPROC) or os.environ.get(ENV_MULTIPROC.lower()) or None


def prepare_multiprocess(workers: int, state_dir: Path, service: str) -> str | None:
    """Called by ``serve`` in the parent before uvicorn starts its workers.

    With several workers (or ``PROMETHEUS_MULTIPROC_DIR`` set by the operator) the workers write
    their samples to ``<PROMETHEUS_MULTIPROC_DIR or <state_dir>/prometheus>/<service>``: one
    sub-directory per service, so services sharing an environment never count each other's files.
    The environment variable is pointed at that sub-directory (the workers inherit it) and the
    directory is emptied (files of an earlier run would be counted again). Returns the directory,
    or None for single-process mode."""
    base = multiprocess_dir()
    if base is None and workers <= 1:
        return None
    if base is None:
        base = str(Path(state_dir).resolve() / "prometheus")
    path = Path(base)
    if path.name != service:
        path = path / service
    directory = str(path)
    os.environ[ENV_MULTIPROC] = directory
    if path.exists():
        for child in path.iterdir():
            if child.is_file() and child.suffix in (".db", ".json"):
                child.unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    return directory


def worker_exiting() -> None:
    """A worker's shutdown: drop its live-gauge files (multiprocess mode only)."""
    if multiprocess_dir() is None:
        return
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())
    except Exception:  # noqa: BLE001 - best effort
        pass


def render(registry=None) -> tuple[bytes, str]:
    """``(body, content type)`` of the Prometheus text exposition for ``/metrics``.

    The content type is prometheus-client's ``CONTENT_TYPE_LATEST``, which already carries
    ``charset=utf-8``: send it as the ``content-type`` header as is (a Litestar ``Response`` given
    only ``media_type`` would append a second charset).

    Multiprocess mode: the samples of every worker (``registry`` is then ignored; everything made
    with prometheus-client's metric classes is in the files)."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    if multiprocess_dir() is not None:
        from prometheus_client import multiprocess

        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)
        return generate_latest(collected), CONTENT_TYPE_LATEST
    return generate_latest(registry or REGISTRY), CONTENT_TYPE_LATEST


class HttpMetrics:
    """``llmgw_<service>_http_requests_total{method,route,status}`` and
    ``llmgw_<service>_http_request_duration_seconds{method,route}`` for a Litestar app.

    ``route`` is the route's path template (``/v1/keys/{key_id}``), never the raw path, so the label
    stays bounded. Use ``HttpMetrics("keys").middleware`` in ``Litestar(middleware=[...])``; app-level
    middleware runs after routing, so requests to unknown paths are not counted (their 404 is cheap)."""

    def __init__(self, service: str, registry=None, exclude: tuple[str, ...] = ("/metrics",)) -> None:
        from prometheus_client import REGISTRY, Counter, Histogram

        registry = registry or REGISTRY
        self.exclude = frozenset(exclude)
        self.requests = Counter(
            f"llmgw_{service}_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            f"llmgw_{service}_http_request_duration_seconds",
            "HTTP request latency until the response completed, by method and route template.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )

    def middleware(self, app):
        requests, duration, exclude = self.requests, self.duration, self.exclude

        async def middleware(scope, receive, send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            route = scope.get("path_template") or "unmatched"
            if route in exclude:
                await app(scope, receive, send)
                return
            status = 500
            started = time.perf_counter()
            if route != "unmatched":
                _name_server_span(scope["method"], route)

            async def send_wrapper(message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_wrapper)
            except Exception as exc:
                status = getattr(exc, "status_code", 500)
                raise
            finally:
                method = scope["method"]
                requests.labels(method, route, str(status)).inc()
                duration.labels(method, route).observe(time.perf_counter() - started)

        return middleware


def _name_server_span(method: str, route: str) -> None:
    """The OpenTelemetry middleware named the server span after the raw path (it runs before
    routing); now that the route is known, use its template (``GET /v1/keys/{key_id}``)."""
    from opentelemetry import trace

    span = trace.get_current_span()
    if span.is_recording():
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)


_http_metrics: dict[str, HttpMetrics] = {}


def http_metrics(service: str) -> HttpMetrics:
    """The process-wide :class:`HttpMetrics` of ``service`` (metrics register once per process,
    however many apps a test process creates)."""
    metrics = _http_metrics.get(service)
    if metrics is None:
        metrics = _http_metrics[service] = HttpMetrics(service)
    return metrics
