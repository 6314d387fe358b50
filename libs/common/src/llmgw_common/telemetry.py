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
