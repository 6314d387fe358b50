"""Metering settings: the shared ``LLMGW_*`` base plus the service's own knobs."""

from __future__ import annotations

from pydantic import Field

from llmgw_common.settings import GatewaySettings


class Settings(GatewaySettings):
    #: OpenTelemetry service.name (unless OTEL_SERVICE_NAME), log "service" field; as in compose and k8s
    service_name: str = "metering"

    #: LLMGW_METERING_PORT / LLMGW_METERING_WORKERS (contract)
    metering_port: int = 8082
    metering_workers: int = 1
    #: LLMGW_AUTO_MIGRATE=0: `serve` does not run the migrations first (production runs the migrations Job)
    auto_migrate: bool = True

    #: raw events older than this are dropped, a whole monthly partition at a time (rollups stay)
    metering_retention_days: int = Field(default=400, ge=1)
    #: hourly/daily rollups older than this are deleted; 0 keeps them forever
    metering_rollup_retention_days: int = Field(default=0, ge=0)
    #: monthly partitions created ahead of time
    metering_partitions_ahead: int = Field(default=3, ge=1)
    #: how often partition creation / retention runs (one replica at a time, advisory lock)
    metering_maintenance_seconds: float = Field(default=3600, gt=0)

    #: run the JetStream consumer in this process (0: API-only replica)
    metering_consume: bool = True
    #: messages per fetch / per database transaction (a batch fills only under load: a fetch
    #: returns what arrived within LLMGW_METERING_FETCH_WAIT_SECONDS)
    metering_batch_size: int = Field(default=5000, ge=1, le=20_000)
    #: how long a fetch waits for a batch to fill before the partial batch is written
    metering_fetch_wait_seconds: float = Field(default=0.2, gt=0)
    #: concurrent batch transactions per process (ingest pipelines)
    metering_writers: int = Field(default=2, ge=1, le=16)
    #: consumer settings (applied when metering creates or updates the durable consumer)
    metering_ack_wait_seconds: float = Field(default=30, gt=0)
    metering_max_ack_pending: int = Field(default=50_000, ge=1)
    #: upper bound of the exponential back-off while PostgreSQL is unreachable
    metering_backoff_max_seconds: float = Field(default=5.0, gt=0)
    #: how far in the future an event's ts may be before it is dead-lettered (clock skew guard)
    metering_max_future_seconds: float = Field(default=7 * 86400, gt=0)

    #: budget KV: releases/spend of committed batches are written at most this often (coalesced per key)
    metering_budget_flush_seconds: float = Field(default=0.25, ge=0)
    #: budget KV: how often spend of recently touched (key, period) entries is re-set from the DB
    metering_reconcile_seconds: float = Field(default=30, gt=0)
    #: "recently touched" for the reconcile
    metering_reconcile_window_seconds: float = Field(default=600, gt=0)
    #: price overrides are re-read from the DB this often by the ingest path
    metering_overrides_refresh_seconds: float = Field(default=5, gt=0)

    #: admin/analyst token verification over NATS (key-service)
    metering_auth_timeout_seconds: float = Field(default=1.0, gt=0)
    metering_auth_cache_seconds: float = Field(default=30, ge=0)
    metering_auth_negative_cache_seconds: float = Field(default=5, ge=0)
    #: GET /v1/usage computes latency/ttfb percentiles from raw events; a query may turn them off
    metering_query_timeout_seconds: float = Field(default=60, gt=0)
