"""llmgw metering: the exactly-once usage ledger.

JetStream (``LLMGW_USAGE``) -> durable pull consumer -> one PostgreSQL transaction per batch
(raw events + hourly/daily rollups + per-budget-period spend) -> ack. Priced at ingest with
``llmgw_common.pricing``; per-key budget spend mirrored into the ``llmgw_budget`` KV bucket.
See docs/metering.md.
"""

SCHEMA = "metering"
