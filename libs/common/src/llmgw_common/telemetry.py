"""OpenTelemetry set-up and W3C trace-context propagation over NATS headers.

Nothing is exported unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_TRACES_EXPORTER``) is set;
every other ``OTEL_*`` variable is honoured by the SDK itself.
"""

from __future__ import annotations

import os

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

_configured = False


def setup_tracing(service_name: str, exporter: SpanExporter | None = None) -> TracerProvider | None:
    """Install a tracer provider once per process. Returns it, or None when tracing stays a no-op."""
    global _configured
    if _configured:
        provider = trace.get_tracer_provider()
        if exporter is not None and isinstance(provider, TracerProvider):
            provider.add_span_processor(BatchSpanProcessor(exporter))
        return provider if isinstance(provider, TracerProvider) else None
    if exporter is None:
        exporter = _exporter_from_env()
    if exporter is None and os.environ.get("OTEL_SDK_DISABLED", "").lower() != "false":
        # No exporter configured: keep the API's no-op provider (zero cost on hot paths),
        # but context still propagates through headers.
        return None
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured = True
    return provider


def _exporter_from_env() -> SpanExporter | None:
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if kind == "none":
        return None
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if kind in ("otlp", "") and endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    return None


def inject_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """Put the current trace context (``traceparent``) into NATS message headers."""
    carrier = headers if headers is not None else {}
    propagate.inject(carrier)
    return carrier


def extract_context(headers: dict[str, str] | None) -> context.Context:
    """The trace context a NATS message carried (an empty context when it carried none)."""
    return propagate.extract(headers or {})


# --- helpers shared by the services (additive; see docs/observability.md) --------------------------
def tracing_enabled() -> bool:
    """True when an SDK tracer provider is installed (spans are recorded somewhere)."""
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    return isinstance(trace.get_tracer_provider(), SdkTracerProvider)


_asyncpg_instrumented = False


def instrument_asyncpg() -> bool:
    """Client spans for asyncpg queries (``opentelemetry-instrumentation-asyncpg``) when tracing is on.

    The statement text is recorded (``db.statement`` / ``db.query.text``), never the parameters:
    every query of the services is parameterized, so no key, hash or prompt reaches a span.
    The services use asyncpg (directly or under SQLAlchemy's asyncpg dialect), so this is the one
    database instrumentation; SQLAlchemy's is deliberately not installed on top of it."""
    global _asyncpg_instrumented
    if _asyncpg_instrumented or not tracing_enabled():
        return _asyncpg_instrumented
    try:
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    except ImportError:  # pragma: no cover - optional dependency
        return False
    AsyncPGInstrumentor(capture_parameters=False).instrument()
    _asyncpg_instrumented = True
    return True


#: operational endpoints that never get a server span (scraped and probed every few seconds)
UNTRACED_PATHS = ("/metrics", "/healthz", "/readyz")


def litestar_opentelemetry_config(exclude: tuple[str, ...] = UNTRACED_PATHS, **overrides):
    """Litestar's OpenTelemetry middleware config: server span per request, no per-chunk ASGI
    ``send``/``receive`` spans, no headers captured, health and metrics endpoints excluded."""
    from litestar.plugins.opentelemetry import OpenTelemetryConfig

    options = {
        "exclude": [f"^{path}$" for path in exclude],
        "exclude_spans": ["receive", "send"],
        "scopes": {"http"},
        "server_request_hook_handler": redact_request_urls,
    }
    options.update(overrides)
    return OpenTelemetryConfig(**options)


_URL_ATTRIBUTES = ("http.url", "http.target", "url.full", "url.query")


def redact_request_urls(span, scope) -> None:
    """Server-request hook: the ASGI instrumentation records the query string in ``http.url`` /
    ``http.target`` / ``url.query`` (it only redacts a few cloud-signature parameters); a client
    may put a key there (``?api-key=…``). Mask whatever looks like a credential."""
    if not scope.get("query_string") or not span.is_recording():
        return
    from llmgw_common.logging import redact

    attributes = getattr(span, "attributes", None) or {}
    for name in _URL_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str):
            span.set_attribute(name, redact(value))


def litestar_opentelemetry_plugin(exclude: tuple[str, ...] = UNTRACED_PATHS, **overrides):
    """The Litestar OpenTelemetry plugin (see :func:`litestar_opentelemetry_config`), or None when
    tracing is off (the middleware then costs nothing because it is not there)."""
    if not tracing_enabled():
        return None
    from litestar.plugins.opentelemetry import OpenTelemetryPlugin

    return OpenTelemetryPlugin(litestar_opentelemetry_config(exclude, **overrides))


def messaging_attributes(
    subject: str,
    operation_type: str,
    *,
    operation_name: str | None = None,
    body_size: int | None = None,
    message_id: str | None = None,
    consumer_group: str | None = None,
    batch_size: int | None = None,
) -> dict[str, object]:
    """OpenTelemetry messaging semantic-convention attributes for a NATS span.

    ``operation_type``: ``send``/``publish`` (producer), ``receive``, ``process`` (consumer).
    Name the span ``f"{operation_type} {subject}"`` (operation first, as the conventions do):
    ``process llmgw.v1.keys.lookup``, ``publish llmgw.v1.keys.changed``.
    Both the current (``messaging.operation.type``) and the older (``messaging.operation``) names
    are set, so backends on either convention version group the spans."""
    attributes: dict[str, object] = {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        "messaging.operation.type": operation_type,
        "messaging.operation.name": operation_name or operation_type,
        "messaging.operation": operation_type,
    }
    if body_size is not None:
        attributes["messaging.message.body.size"] = body_size
    if message_id:
        attributes["messaging.message.id"] = message_id
    if consumer_group:
        attributes["messaging.consumer.group.name"] = consumer_group
    if batch_size is not None:
        attributes["messaging.batch.message_count"] = batch_size
    return attributes


def inject_span_headers(span, headers: dict[str, str] | None = None) -> dict[str, str]:
    """Put ``span``'s context (not the current one) into NATS headers."""
    carrier = headers if headers is not None else {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


class untraced:
    """``with untraced():`` instrumentations (asyncpg, HTTP clients) record nothing inside.

    For periodic housekeeping loops (outbox retries, expiry passes, partition maintenance): their
    queries would otherwise become a stream of one-span root traces every few seconds. Spans the
    code starts itself are still recorded (e.g. a publish the loop makes)."""

    __slots__ = ("_token",)

    def __enter__(self):
        self._token = context.attach(context.set_value(context._SUPPRESS_INSTRUMENTATION_KEY, True))
        return self

    def __exit__(self, *exc) -> None:
        context.detach(self._token)
