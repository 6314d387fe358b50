"""metering ledger: partitioned raw events, hourly/daily rollups, budget spend, price overrides

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ROLLUP_COLUMNS = """
    bucket timestamptz NOT NULL,
    key_id text COLLATE "C" NOT NULL,
    project text COLLATE "C" NOT NULL,
    model text COLLATE "C" NOT NULL,
    provider text COLLATE "C" NOT NULL,
    status text COLLATE "C" NOT NULL,
    requests bigint NOT NULL,
    errors bigint NOT NULL,
    prompt_tokens bigint NOT NULL,
    cached_tokens bigint NOT NULL,
    cache_write_tokens bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    reasoning_tokens bigint NOT NULL,
    total_tokens bigint NOT NULL,
    cost_usd numeric NOT NULL
"""


def upgrade() -> None:
    # Raw events, one row per usage event, range-partitioned by month on ts (partitions are
    # created ahead by llmgw_metering.partitions; retention detaches and drops whole months).
    # PostgreSQL requires the partition key in every unique constraint: the primary key is
    # (ts, event_id). An event is immutable (its ts is fixed when the proxy creates it), so a
    # redelivered or re-published event conflicts on it exactly like on event_id alone.
    op.execute(
        """
        CREATE TABLE metering.usage_events (
            event_id text COLLATE "C" NOT NULL,
            request_id text NOT NULL,
            ts timestamptz NOT NULL,
            key_id text COLLATE "C" NOT NULL,
            project text COLLATE "C" NOT NULL,
            provider text COLLATE "C" NOT NULL,
            model text COLLATE "C" NOT NULL,
            upstream_model text NOT NULL,
            deployment text NOT NULL,
            endpoint text NOT NULL,
            streamed boolean NOT NULL,
            status text COLLATE "C" NOT NULL,
            status_code integer NOT NULL,
            error_type text,
            attempts integer NOT NULL,
            cached boolean NOT NULL,
            prompt_tokens integer NOT NULL,
            cached_tokens integer NOT NULL,
            cache_write_tokens integer NOT NULL,
            completion_tokens integer NOT NULL,
            reasoning_tokens integer NOT NULL,
            total_tokens integer NOT NULL,
            latency_ms double precision NOT NULL,
            ttfb_ms double precision,
            upstream_latency_ms double precision,
            reserved_usd double precision NOT NULL,
            budget_period_key text,
            v smallint NOT NULL,
            cost_usd numeric NOT NULL,
            price_known boolean NOT NULL,
            price_version text NOT NULL,
            ingested_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT usage_events_pkey PRIMARY KEY (ts, event_id)
        ) PARTITION BY RANGE (ts)
        """
    )
    # Identifier columns use the "C" collation: byte-wise comparisons (and abbreviated sort keys)
    # in every index probe of the ingest path, instead of the database locale's strcoll.
    # Rollups and budget_spend are updated in place on every batch: fillfactor 70 leaves room
    # for HOT updates (no index churn, the counters are not indexed).
    # per-key event listing / per-key percentiles: (key_id, ts) range scans, keyset pagination
    op.execute("CREATE INDEX usage_events_key_ts_idx ON metering.usage_events (key_id, ts, event_id)")

    for table in ("usage_hourly", "usage_daily"):
        op.execute(
            f"""
            CREATE TABLE metering.{table} (
                {ROLLUP_COLUMNS},
                CONSTRAINT {table}_pkey PRIMARY KEY (bucket, key_id, project, model, provider, status)
            ) WITH (fillfactor = 70)
            """
        )
        op.execute(f"CREATE INDEX {table}_key_bucket_idx ON metering.{table} (key_id, bucket)")

    # Per (key, budget period) spend: the DB truth the budget KV entries are set from.
    op.execute(
        """
        CREATE TABLE metering.budget_spend (
            key_id text COLLATE "C" NOT NULL,
            period_key text COLLATE "C" NOT NULL,
            spend_usd numeric NOT NULL,
            reserved_usd numeric NOT NULL,
            requests bigint NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT budget_spend_pkey PRIMARY KEY (key_id, period_key)
        ) WITH (fillfactor = 70)
        """
    )

    op.execute(
        """
        CREATE TABLE metering.price_overrides (
            model text NOT NULL,
            provider text NOT NULL DEFAULT '',
            input_usd_per_mtok numeric NOT NULL CHECK (input_usd_per_mtok >= 0),
            cached_input_usd_per_mtok numeric CHECK (cached_input_usd_per_mtok >= 0),
            cache_write_usd_per_mtok numeric CHECK (cache_write_usd_per_mtok >= 0),
            output_usd_per_mtok numeric NOT NULL CHECK (output_usd_per_mtok >= 0),
            note text NOT NULL DEFAULT '',
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT price_overrides_pkey PRIMARY KEY (model, provider)
        )
        """
    )


def downgrade() -> None:
    for table in ("price_overrides", "budget_spend", "usage_daily", "usage_hourly", "usage_events"):
        op.execute(f"DROP TABLE IF EXISTS metering.{table} CASCADE")
