#!/usr/bin/env python
"""Metering ingest benchmark: N usage events through JetStream into PostgreSQL.

    python services/metering/bench/ingest_bench.py --events 200000

1. starts its own NATS (JetStream) and PostgreSQL (embedded, from the devstack wheels) unless
   --nats-url / --database-url are given (those must be throw-away servers: the usage stream is purged);
2. publishes N realistic events into LLMGW_USAGE (JetStream publish with batched acks);
3. starts the metering consumer (the production code path: fetch -> decode -> price -> COPY + one
   statement -> commit -> ack, budget KV sync on) and times until every event is committed;
4. checks the stored count and token total, prints a final JSON line with ``events_per_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=None, help="default: LLMGW_METERING_BATCH_SIZE")
    parser.add_argument("--writers", type=int, default=None, help="default: LLMGW_METERING_WRITERS or 2")
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--nats-url", default=None)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--timeout", type=float, default=600)
    return parser.parse_args(argv)


MODELS = [
    ("openai", "gpt-4o", "gpt-4o-2024-08-06"),
    ("openai", "gpt-4o-mini", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5"),
    ("anthropic", "claude-3-5-haiku-latest", "claude-3-5-haiku-latest"),
    ("mock", "llama-3-70b-local", "llama-3-70b-local"),
]


def make_events(n: int, keys: int):
    from llmgw_common.contract import UsageEvent, encode, usage_subject

    rnd = random.Random(42)
    now = datetime.now(UTC)
    out = []
    total_tokens = 0
    for i in range(n):
        provider, model, upstream = MODELS[rnd.randrange(len(MODELS))]
        key = rnd.randrange(keys)
        prompt = rnd.randint(10, 20_000)
        cached = rnd.choice((0, 0, 0, prompt // 2))
        completion = rnd.randint(1, 2000)
        error = rnd.random() < 0.02
        event = UsageEvent(
            event_id=uuid.uuid4().hex,
            request_id=f"req-{i}",
            ts=now - timedelta(seconds=rnd.uniform(0, 3600)),
            key_id=f"key_{key:05d}",
            project=f"project-{key % 13}",
            provider=provider,
            model=model,
            upstream_model=upstream,
            deployment=f"{provider}/{upstream}",
            endpoint="/v1/chat/completions",
            streamed=rnd.random() < 0.3,
            status="error" if error else "ok",
            status_code=502 if error else 200,
            error_type="upstream_error" if error else None,
            prompt_tokens=0 if error else prompt,
            cached_tokens=0 if error else cached,
            completion_tokens=0 if error else completion,
            total_tokens=0 if error else prompt + completion,
            latency_ms=rnd.uniform(50, 5000),
            ttfb_ms=rnd.uniform(20, 800),
            upstream_latency_ms=rnd.uniform(40, 4900),
            reserved_usd=0.05 if key % 2 == 0 else 0.0,
            budget_period_key=now.strftime("m%Y%m") if key % 2 == 0 else None,
        )
        total_tokens += event.total_tokens
        headers = {
            "Nats-Msg-Id": event.event_id,
            "traceparent": f"00-{uuid.uuid4().hex}{uuid.uuid4().hex[:0]}-{uuid.uuid4().hex[:16]}-01",
        }
        out.append((usage_subject(provider), encode(event), headers))
    return out, total_tokens


async def publish(nc, js, events, chunk: int = 5000) -> float:
    """Core-NATS publishes captured by the stream, acknowledged in batches: after each chunk the
    stream's message count is polled until the chunk is stored (cheap flow control)."""
    from llmgw_common.contract import STREAM_USAGE

    started = time.perf_counter()
    base = (await js.stream_info(STREAM_USAGE)).state.messages
    sent = 0
    for start in range(0, len(events), chunk):
        for subject, body, headers in events[start : start + chunk]:
            await nc.publish(subject, body, headers=headers)
        sent += len(events[start : start + chunk])
        await nc.flush()
        while (await js.stream_info(STREAM_USAGE)).state.messages < base + sent:
            await asyncio.sleep(0.005)
    return time.perf_counter() - started


def _cpu_seconds(pids: list[int]) -> float:
    """User+system CPU of these processes and their children (PostgreSQL backends)."""
    try:
        import psutil
    except ImportError:
        return float("nan")
    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                times = p.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            pass
    return total


async def run(args) -> dict:
    from sqlalchemy import text

    from llmgw_common.contract import CONSUMER_METERING, KV_BUCKET_BUDGET, STREAM_DEAD_LETTER, STREAM_USAGE
    from llmgw_common.messaging import connect, ensure_streams
    from llmgw_metering import metrics
    from llmgw_metering.db import create_engine
    from llmgw_metering.ingest.budget import BudgetSync
    from llmgw_metering.ingest.consumer import UsageConsumer
    from llmgw_metering.migrate import run_migrations
    from llmgw_metering.services.overrides import OverrideCache
    from llmgw_metering.settings import Settings

    overrides_env = {}
    if args.batch_size:
        overrides_env["metering_batch_size"] = args.batch_size
    if args.writers:
        overrides_env["metering_writers"] = args.writers
    settings = Settings(
        nats_url=args.nats_url,
        database_url=args.database_url,
        admin_token="bench",
        metering_reconcile_seconds=3600,
        **overrides_env,
    )
    await run_migrations(settings)
    nc = await connect(settings.nats_url, name="metering-bench")
    js = nc.jetstream()
    await ensure_streams(js, STREAM_USAGE, STREAM_DEAD_LETTER)
    for stream in (STREAM_USAGE, STREAM_DEAD_LETTER):
        await js.purge_stream(stream)
    try:
        await js.delete_consumer(STREAM_USAGE, CONSUMER_METERING)
    except Exception:  # noqa: BLE001
        pass
    try:
        await js.delete_key_value(KV_BUCKET_BUDGET)
    except Exception:  # noqa: BLE001
        pass

    events, expected_tokens = make_events(args.events, args.keys)
    publish_seconds = await publish(nc, js, events)
    del events
    info = await js.stream_info(STREAM_USAGE)
    assert info.state.messages == args.events, info.state.messages

    engine = create_engine(settings, pool_size=settings.metering_writers + 4)
    async with engine.begin() as conn:
        await conn.execute(
            text("TRUNCATE metering.usage_events, metering.usage_hourly, metering.usage_daily, metering.budget_spend")
        )
    overrides = OverrideCache(engine, settings.metering_overrides_refresh_seconds)
    budget = BudgetSync(
        js, engine, reconcile_seconds=3600, window_seconds=600, min_interval=settings.metering_budget_flush_seconds
    )
    await budget.start()
    consumer = UsageConsumer(nc=nc, js=js, engine=engine, settings=settings, overrides=overrides, budget=budget)

    base = metrics.EVENTS_INSERTED._value.get()
    pg_cpu0, nats_cpu0 = _cpu_seconds(args.pg_pids), _cpu_seconds(args.nats_pids)
    cpu0 = time.process_time()
    started = time.perf_counter()
    await consumer.start()
    deadline = started + args.timeout
    while metrics.EVENTS_INSERTED._value.get() - base < args.events:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"only {metrics.EVENTS_INSERTED._value.get() - base} of {args.events} stored")
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    pg_cpu = _cpu_seconds(args.pg_pids) - pg_cpu0
    nats_cpu = _cpu_seconds(args.nats_pids) - nats_cpu0
    await consumer.stop()
    await budget.flush()
    await budget.stop()

    async with engine.connect() as conn:
        stored, tokens = (
            await conn.execute(text("SELECT count(*), coalesce(sum(total_tokens), 0) FROM metering.usage_events"))
        ).one()
        rolled = (await conn.execute(text("SELECT coalesce(sum(requests), 0) FROM metering.usage_hourly"))).scalar()
    await engine.dispose()
    await nc.drain()
    ok = stored == args.events and tokens == expected_tokens and rolled == args.events
    return {
        "events": args.events,
        "seconds": round(elapsed, 3),
        "events_per_s": round(args.events / elapsed),
        "publish_events_per_s": round(args.events / publish_seconds),
        # CPU spent per stored event (µs), by process: what bounds throughput on a machine of N cores
        "cpu_us_per_event": {
            "metering": round(cpu / args.events * 1e6, 1),
            "postgres": round(pg_cpu / args.events * 1e6, 1) if args.pg_pids else None,
            "nats": round(nats_cpu / args.events * 1e6, 1) if args.nats_pids else None,
        },
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "batch_size": settings.metering_batch_size,
        "writers": settings.metering_writers,
        "stored": stored,
        "exact": ok,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    args.pg_pids, args.nats_pids = [], []
    servers = []
    tmp = None
    try:
        if not args.nats_url or not args.database_url:
            from llmgw_devstack.nats_server import EmbeddedNats
            from llmgw_devstack.postgres import EmbeddedPostgres

            tmp = tempfile.TemporaryDirectory(prefix="llmgw-bench-")
            root = Path(tmp.name)
            if not args.nats_url:
                nats_server = EmbeddedNats(root / "nats", log_file=root / "nats.log")
                nats_server.start()
                servers.append(nats_server)
                args.nats_url = nats_server.url
                args.nats_pids = [nats_server.process.pid]
            if not args.database_url:
                pg = EmbeddedPostgres(root / "pg", log_file=root / "pg.log")
                pg.start()
                servers.append(pg)
                args.database_url = pg.create_database("metering_bench")
                args.pg_pids = [pg.process.pid]
        try:
            import uvloop

            result = uvloop.run(run(args))
        except ImportError:
            result = asyncio.run(run(args))
        print(json.dumps(result), flush=True)
        return 0 if result["exact"] else 1
    finally:
        for server in reversed(servers):
            server.stop()
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    os.environ.setdefault("LLMGW_LOG_LEVEL", "WARNING")
    sys.exit(main())
