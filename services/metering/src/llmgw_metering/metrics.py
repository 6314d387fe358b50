"""Prometheus metrics of the metering process (served on ``GET /metrics``).

With ``LLMGW_METERING_WORKERS`` > 1 each worker process exposes its own counters (scrape
per pod; the ingest counters are per consumer process by design).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
CONSUMER_UP = Gauge("llmgw_metering_consumer_running", "1 while the JetStream consumer loop runs")
AUTH_REQUESTS = Counter("llmgw_metering_auth_verify", "Token verifications asked of key-service, by result", ["result"])
