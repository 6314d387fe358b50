"""Tracing and the per-request log line of the proxy (see docs/observability.md).

Tracing (only when an exporter is configured, ``ProxyService.tracer`` set): ``ProxyService`` opens
the SERVER span of every ``/v1/*`` request itself (a generic ASGI middleware took ~25 % of the
proxy's CPU, mostly on requests head sampling then dropped); its HTTP attributes are written only
when the span is recorded. Under it the proxy opens:

- ``send llmgw.v1.keys.lookup`` (CLIENT) around a key lookup that misses the cache, its context in
  the request's NATS headers (key-service's responder span is its child);
- ``POST`` (CLIENT) per upstream attempt, its context in the upstream request's ``traceparent``;
  attributes: method, server address/port, URL path (never the query), provider, deployment,
  attempt, status. The proxy's upstream client is its own HTTP/1.1 client (http1.py, chosen over
  aiohttp for CPU cost), so this is the instrumentation aiohttp's would have given;
- ``publish llmgw.v1.usage.<provider>`` (PRODUCER) when the usage event is handed to the publisher,
  its context in the JetStream message headers (metering's consume span is its child).

No span carries a prompt, completion, key or header value. With tracing off, a request without an
incoming ``traceparent`` still gets a generated, unsampled one, so the log lines of the three
services share a ``trace_id`` anyway.
"""

from __future__ import annotations

import logging
import random

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from llmgw_common.logging import direct_handler, redact, write_fields
from llmgw_common.telemetry import inject_span_headers, messaging_attributes

ACCESS = logging.getLogger("llmgw_proxy.access")
_getrandbits = random.getrandbits
_HEX = frozenset("0123456789abcdef")


# --- server span (started by ProxyService for every /v1/* request) -------------------------------
def server_span_attributes(span, inc, route: str) -> None:
    """HTTP semantic-convention attributes of a recorded server span (current and older names).
    The query string may carry a credential (``?api-key=…``): URL values are masked."""
    path = redact(inc.path)
    query = redact(inc.query.decode("latin-1")) if inc.query else ""
    target = f"{path}?{query}" if query else path
    span.set_attributes({
        "http.request.method": inc.method,
        "http.method": inc.method,
        "http.route": route,
        "url.path": path,
        "http.target": target,
        "http.url": target,
        "llmgw.request_id": redact(inc.request_id) if inc.client_request_id else inc.request_id,
        "client.address": inc.client_address,
    })
    if query:
        span.set_attribute("url.query", query)


def new_traceparent() -> str:
    """A fresh, unsampled W3C traceparent (tracing off: log correlation only, nothing recorded)."""
    return f"00-{_getrandbits(128):032x}-{_getrandbits(64) or 1:016x}-00"


def trace_id_of(span, traceparent: str | None) -> str | None:
    if span is not None:
        context = span.get_span_context()
        if context.is_valid:
            return format(context.trace_id, "032x")
    if traceparent and len(traceparent) >= 36:
        trace_id = traceparent[3:35]
        if _HEX.issuperset(trace_id):  # the client's header: only a well-formed id goes to the log
            return trace_id
    return None


def parent_context(span):
    """The context child spans of the request hang under (None: the current one)."""
    return trace.set_span_in_context(span) if span is not None else None


# --- key lookups ----------------------------------------------------------------------------------
def lookup_span(tracer, subject: str, size: int):
    """CLIENT span of a NATS request; returns (span, headers carrying its context)."""
    span = tracer.start_span(
        f"send {subject}",
        kind=SpanKind.CLIENT,
        attributes=messaging_attributes(subject, "send", body_size=size),
    )
    return span, inject_span_headers(span, {})


def unsampled_headers() -> dict[str, str]:
    """Headers that tell the receiver "not sampled" (readiness probes are never traced)."""
    context = SpanContext(_getrandbits(128), _getrandbits(64) or 1, is_remote=False, trace_flags=TraceFlags(0))
    return inject_span_headers(NonRecordingSpan(context), {})


def end_with_error(span, error: str) -> None:
    span.set_attribute("error.type", error)
    span.set_status(Status(StatusCode.ERROR, error))
    span.end()


# --- upstream attempts ----------------------------------------------------------------------------
def upstream_span(tracer, parent, method: str, provider, deployment: str, path: str, attempt: int):
    from llmgw_proxy.domain.upstream.client import _target

    attributes = {
        "http.request.method": method,
        "url.path": path,
        "llmgw.provider": provider.name,
        "llmgw.deployment": deployment,
        "http.request.resend_count": attempt,
    }
    try:
        origin, _ = _target(provider)
        attributes["server.address"] = origin.host
        attributes["server.port"] = origin.port
        attributes["url.scheme"] = origin.scheme
    except ValueError:
        pass
    return tracer.start_span(method, context=parent, kind=SpanKind.CLIENT, attributes=attributes)


def traceparent_line(span) -> bytes:
    return b"traceparent: " + inject_span_headers(span, {})["traceparent"].encode("latin-1") + b"\r\n"


def end_upstream_span(span, status: int | None = None, error: str | None = None) -> None:
    if status is not None:
        span.set_attribute("http.response.status_code", status)
        if status >= 500 or status == 429:
            error = error or str(status)
    if error is not None:
        end_with_error(span, error)
    else:
        span.end()


# --- usage publish --------------------------------------------------------------------------------
def publish_headers(tracer, parent, subject: str, event_id: str) -> dict[str, str]:
    """PRODUCER span for a usage event handed to the publisher; its context for the headers."""
    span = tracer.start_span(
        f"publish {subject}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes=messaging_attributes(subject, "publish", message_id=event_id),
    )
    headers = inject_span_headers(span, {})
    span.end()
    return headers


# --- the request log line -------------------------------------------------------------------------
def access_log(ctx, tokens, now: float) -> None:
    """One JSON line per proxied request: ids, key, model, outcome, timings, tokens. Never the
    body, a header value or the key itself."""
    level = logging.INFO if ctx.status_code < 500 else logging.WARNING
    if not ACCESS.isEnabledFor(level):
        return
    entry = ctx.entry
    record = entry.record if entry is not None else None
    candidate = ctx.candidate
    plan = getattr(ctx, "cache", None)
    hit = plan.hit if plan is not None else None
    t0 = ctx.t0
    up_start, up_end = ctx.up_start, ctx.up_end
    model = ctx.model
    fields = {
        # the two values a client chooses (x-request-id, model) are masked here; the rest are
        # gateway-made ids and numbers, so the line skips the formatter's whole-line pass
        "request_id": redact(ctx.inc.request_id) if ctx.inc.client_request_id else ctx.inc.request_id,
        "trace_id": trace_id_of(ctx.span, ctx.traceparent),
        "key_id": record.id if record is not None else None,
        "project": record.project if record is not None else None,
        "method": ctx.inc.method,
        "route": ctx.route,
        "model": redact(model) if model else None,
        "provider": hit.provider if hit is not None else (candidate.provider.name if candidate is not None else None),
        "deployment": hit.deployment if hit is not None else (candidate.name if candidate is not None else None),
        "status": ctx.status_code,
        "outcome": ctx.status,
        "error_type": ctx.error_type,
        "attempts": ctx.attempts,
        "streamed": ctx.streamed,
        "cache_hit": hit is not None,
        "latency_ms": round((now - t0) * 1000, 3),
        "ttfb_ms": round((ctx.first_byte - t0) * 1000, 3) if ctx.first_byte is not None else None,
        "upstream_ms": round((up_end - up_start) * 1000, 3) if up_start is not None and up_end is not None else None,
        "overhead_ms": round(ctx.overhead * 1000, 3) if ctx.overhead is not None else None,
        "prompt_tokens": tokens.prompt,
        "cached_tokens": tokens.cached,
        "completion_tokens": tokens.completion,
        "reasoning_tokens": tokens.reasoning,
        "total_tokens": tokens.total,
    }
    handler = direct_handler(ACCESS, level)
    if handler is not None:
        write_fields(handler, logging.getLevelName(level), ACCESS.name, "request", fields)
    else:
        ACCESS.log(level, "request", extra={"llmgw_fields": fields, "llmgw_sanitized": True})
