"""Prometheus metrics of a key-service process (served on ``GET /metrics``).

HTTP request metrics come from :class:`llmgw_common.metrics.HttpMetrics` (``llmgw_keys_http_*``).
With ``LLMGW_KEYS_WORKERS`` > 1, ``serve`` switches prometheus-client to multiprocess mode (see
docs/observability.md), so any worker's ``/metrics`` shows the sum of all of them.
"""

from __future__ import annotations

from llmgw_common.metrics import http_metrics
from prometheus_client import Counter, Histogram

HTTP = http_metrics("keys")

LOOKUPS = Counter(
    "llmgw_keys_lookups",
    "Key lookups answered over NATS, by result (found, not_found, invalid, error) and cache (hit, miss).",
    ["result", "cache"],
)
LOOKUP_SECONDS = Histogram(
    "llmgw_keys_lookup_duration_seconds",
    "Time to answer a key lookup that missed the responder's cache (database + decryption).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
AUTH_VERIFY = Counter(
    "llmgw_keys_auth_verify",
    "Admin/analyst token verifications answered over NATS, by result (valid, invalid, error).",
    ["result"],
)
CHANGE_EVENTS = Counter(
    "llmgw_keys_change_events",
    "Key-change events published to JetStream, by outcome (published, failed = left in the outbox for a retry).",
    ["outcome"],
)
