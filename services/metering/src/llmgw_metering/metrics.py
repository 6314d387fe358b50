"""Prometheus metrics of the metering process (served on ``GET /metrics``).

With ``LLMGW_METERING_WORKERS`` > 1, ``serve`` switches prometheus-client to multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, see docs/observability.md): any worker's ``/metrics`` shows the sum
of all workers (gauges: the live workers'). HTTP request metrics: ``llmgw_metering_http_*``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from llmgw_common.metrics import http_metrics

HTTP = http_metrics("metering")

EVENTS_RECEIVED = Counter("llmgw_metering_events_received", "Usage messages fetched from JetStream")
EVENTS_INSERTED = Counter("llmgw_metering_events_inserted", "Usage events newly stored in PostgreSQL")
EVENTS_DUPLICATE = Counter(
    "llmgw_metering_events_duplicate", "Usage events already stored (redelivery / duplicate publish), not counted again"
)
EVENTS_UNPRICED = Counter("llmgw_metering_events_unpriced", "Stored events whose model had no known price (cost 0)")
DEAD_LETTERS = Counter(
    "llmgw_metering_dead_letter", "Usage messages sent to the dead-letter stream, by reason", ["reason"]
)
BATCHES = Counter("llmgw_metering_batches", "Batch transactions committed")
BATCH_SECONDS = Histogram(
    "llmgw_metering_batch_seconds",
    "Time to store one batch (transaction incl. retries)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DB_ERRORS = Counter("llmgw_metering_db_errors", "Failed batch transactions, by kind", ["kind"])
BUDGET_KV_WRITES = Counter("llmgw_metering_budget_kv_writes", "Budget KV writes, by result", ["result"])
CONSUMER_UP = Gauge(
    "llmgw_metering_consumer_running", "1 while the JetStream consumer loop runs", multiprocess_mode="livesum"
)
CONSUMER_LAG = Gauge(
    "llmgw_metering_consumer_lag",
    "Usage messages in the stream not yet delivered to the durable consumer (num_pending)",
    multiprocess_mode="livemax",
)
ACK_PENDING = Gauge(
    "llmgw_metering_consumer_ack_pending",
    "Usage messages delivered but not acknowledged yet (num_ack_pending)",
    multiprocess_mode="livemax",
)
BATCH_SIZE = Histogram(
    "llmgw_metering_batch_size",
    "Usage events per ingest batch (messages fetched together and stored in one transaction)",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
DB_SECONDS = Histogram(
    "llmgw_metering_db_duration_seconds",
    "PostgreSQL round trips by operation (ingest = one batch transaction attempt: COPY + insert + rollups)",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
COST_USD = Counter(
    "llmgw_metering_cost_usd",
    "Cost of the newly stored usage events as the ledger priced them (overrides applied), by model and provider",
    ["model", "provider"],
)
AUTH_REQUESTS = Counter("llmgw_metering_auth_verify", "Token verifications asked of key-service, by result", ["result"])
