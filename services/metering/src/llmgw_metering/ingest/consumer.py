"""The ingest pipeline: JetStream durable pull consumer -> PostgreSQL, ack after commit.

    fetch loop ──(prepared batches, bounded queue)──> N writer pipelines ──> ack / dead-letter
                                                                          └─> budget KV sync

* Fetch: the shared durable consumer ``metering`` on ``LLMGW_USAGE`` (explicit acks), batches of
  up to ``LLMGW_METERING_BATCH_SIZE`` messages; every replica and every writer shares it.
* Prepare: decode with the contract's decoder, validate, price. A message that can never be stored
  is published to the dead-letter stream (reason header, original subject and body) and then
  terminated — it never blocks the messages behind it.
* Write: one transaction per batch (see writer.py). PostgreSQL away: nothing is acked; the batch is
  retried with exponential back-off (cap ``LLMGW_METERING_BACKOFF_MAX_SECONDS``) and its messages are
  kept from redelivery with in-progress acks meanwhile.
* Shutdown: stop fetching, finish (commit + ack) the batches in hand, nak what was never started.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from sqlalchemy.ext.asyncio import AsyncEngine

from llmgw_common.contract import (
    CONSUMER_METERING,
    HEADER_DEAD_LETTER_REASON,
    STREAM_DEAD_LETTER,
    STREAM_USAGE,
    SUBJECT_USAGE_DEAD_LETTER,
    SUBJECT_USAGE_WILDCARD,
)
from llmgw_common import pricing
from llmgw_common.messaging import ensure_streams
from llmgw_common.telemetry import extract_context, messaging_attributes, untraced
from llmgw_metering import metrics
from llmgw_metering.ingest.budget import BudgetSync
from llmgw_metering.ingest.natsfast import ack_many, install_fast_header_parser, install_fast_parser
from llmgw_metering.ingest.prepare import Prepared, prepare
from llmgw_metering.ingest.puller import ConsumerGone, Puller
from llmgw_metering.ingest.writer import BatchWriter, TransientDbError, WriteResult
from llmgw_metering.services.overrides import OverrideCache
from llmgw_metering.settings import Settings

log = logging.getLogger(__name__)
tracer = trace.get_tracer("llmgw_metering.ingest")

HEADER_ORIGINAL_SUBJECT = "Llmgw-Original-Subject"
#: how often the consumer lag metrics are refreshed (seconds)
LAG_INTERVAL = 5.0
HEADER_ORIGINAL_MSG_ID = "Llmgw-Original-Msg-Id"


def tracing_enabled() -> bool:
    from opentelemetry.sdk.trace import TracerProvider

    return isinstance(trace.get_tracer_provider(), TracerProvider)


def consumer_config(settings: Settings) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=CONSUMER_METERING,
        name=CONSUMER_METERING,
        description="llmgw metering: usage events -> PostgreSQL (ack after commit)",
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.metering_ack_wait_seconds,
        max_deliver=-1,
        max_ack_pending=settings.metering_max_ack_pending,
        max_waiting=512,
        filter_subject=SUBJECT_USAGE_WILDCARD,
    )


def _header_safe(text: str, limit: int = 500) -> str:
    return " ".join(text.split())[:limit]


@dataclass(eq=False)
class _Held:
    prepared: Prepared
    since: float = field(default_factory=time.monotonic)
    last_progress: float = field(default_factory=time.monotonic)


class UsageConsumer:
    def __init__(
        self,
        *,
        nc: NATS,
        js: JetStreamContext,
        engine: AsyncEngine,
        settings: Settings,
        overrides: OverrideCache,
        budget: BudgetSync | None,
    ) -> None:
        self._nc = nc
        self._js = js
        self._engine = engine
        self._settings = settings
        self._overrides = overrides
        self._budget = budget
        self._stopping = asyncio.Event()
        self._queue: asyncio.Queue[_Held | None] = asyncio.Queue(maxsize=settings.metering_writers)
        self._held: set[_Held] = set()
        self._known_months: set[int] = set()
        self._puller: Puller | None = None
        self._fetch_task: asyncio.Task | None = None
        self._writer_tasks: list[asyncio.Task] = []
        self._keepalive_task: asyncio.Task | None = None
        self._lag_task: asyncio.Task | None = None
        self.last_commit: float | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        # the price data loads once here, not inside the first batch (in a thread: the loop keeps serving)
        await asyncio.to_thread(pricing.preload)
        install_fast_header_parser(self._nc)
        await install_fast_parser(self._nc)
        await ensure_streams(self._js, STREAM_USAGE, STREAM_DEAD_LETTER)
        await self._ensure_consumer()
        self._puller = Puller(self._nc, STREAM_USAGE, CONSUMER_METERING)
        await self._puller.start()
        self._fetch_task = asyncio.create_task(self._fetch_loop(), name="metering-fetch")
        self._writer_tasks = [
            asyncio.create_task(self._writer_loop(i), name=f"metering-writer-{i}")
            for i in range(self._settings.metering_writers)
        ]
        self._keepalive_task = asyncio.create_task(self._keepalive_loop(), name="metering-keepalive")
        self._lag_task = asyncio.create_task(self._lag_loop(), name="metering-consumer-lag")
        metrics.CONSUMER_UP.set(1)
        log.info(
            "metering consumer started (durable %s on %s, batch %d, %d writers)",
            CONSUMER_METERING,
            STREAM_USAGE,
            self._settings.metering_batch_size,
            self._settings.metering_writers,
        )

    async def stop(self, grace: float = 20.0) -> None:
        """Stop fetching, commit + ack the batches in hand (up to ``grace`` s), nak the rest."""
        self._stopping.set()
        tasks = [t for t in (self._fetch_task, *self._writer_tasks) if t is not None]
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for task in (self._keepalive_task, self._lag_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        left: list[Msg] = []
        for held in list(self._held):
            left.extend(held.prepared.msgs)
        self._held.clear()
        if self._puller is not None:
            left.extend(await self._puller.close())
        await self._settle(left, "nak")
        metrics.CONSUMER_UP.set(0)
        log.info("metering consumer stopped")

    @property
    def alive(self) -> bool:
        tasks = [self._fetch_task, *self._writer_tasks]
        return all(t is not None and not t.done() for t in tasks)

    async def _ensure_consumer(self) -> None:
        # Create, or converge an existing durable on our config (same call: create-or-update).
        await self._js.add_consumer(STREAM_USAGE, consumer_config(self._settings))

    # --- fetch ------------------------------------------------------------------------------------
    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    async def _fetch_loop(self) -> None:
        settings = self._settings
        batch_size = settings.metering_batch_size
        wait = settings.metering_fetch_wait_seconds
        delay = 0.1
        try:
            while not self._stopping.is_set():
                # the periodic price-override refresh is no one's trace (it would be a one-span root
                # trace every few seconds on an idle service)
                with untraced():
                    loaded = await self._overrides.wait_loaded(self._stopping, settings.metering_backoff_max_seconds)
                if not loaded:
                    break
                try:
                    msgs = await self._puller.fetch(batch_size, wait)
                    delay = 0.1
                except ConsumerGone:
                    log.warning("durable consumer %s was deleted; re-creating it", CONSUMER_METERING)
                    try:
                        await ensure_streams(self._js, STREAM_USAGE, STREAM_DEAD_LETTER)
                        await self._ensure_consumer()
                    except Exception as exc:  # noqa: BLE001
                        log.warning("re-creating the consumer failed: %s", exc)
                        await self._sleep(delay)
                        delay = min(delay * 2, 5.0)
                    continue
                except Exception as exc:  # noqa: BLE001 - NATS reconnecting etc.
                    log.warning("fetch failed (%s); retrying in %.1fs", exc, delay)
                    await self._sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                if not msgs:
                    continue
                metrics.EVENTS_RECEIVED.inc(len(msgs))
                if not self._queue.full() and not self._stopping.is_set():
                    # overlap the next pull with this batch's decoding and writing
                    try:
                        await self._puller.prefetch(batch_size, wait)
                    except Exception:  # noqa: BLE001
                        pass
                prepared = prepare(
                    msgs,
                    self._overrides.pricer,
                    retention_days=settings.metering_retention_days,
                    max_future_seconds=settings.metering_max_future_seconds,
                )
                if tracing_enabled():
                    self._start_spans(prepared)
                held = _Held(prepared)
                self._held.add(held)
                await self._queue.put(held)
        finally:
            for _ in self._writer_tasks:
                await self._queue.put(None)

    def _start_spans(self, prepared: Prepared) -> None:
        """A consume span per message that belongs to a sampled trace (the proxy's request trace).

        Messages without a sampled trace context get none: a root span per usage event would be
        noise, and at ingest rates their cost adds up. The batch's insert span still links them when
        the batch has a sampled event; a batch without one is written with no span at all.
        """
        for msg in prepared.msgs:
            ctx = extract_context(msg.headers)
            producer = trace.get_current_span(ctx).get_span_context()
            if not producer.is_valid:
                prepared.spans.append(None)
                continue
            prepared.links.append(Link(producer))
            if not producer.trace_flags.sampled:
                prepared.spans.append(None)
                continue
            span = tracer.start_span(
                f"process {msg.subject}",
                context=ctx,
                kind=SpanKind.CONSUMER,
                attributes=messaging_attributes(
                    msg.subject,
                    "process",
                    body_size=len(msg.data),
                    consumer_group=CONSUMER_METERING,
                    batch_size=len(prepared.msgs),
                ),
            )
            msg_id = (msg.headers or {}).get("Nats-Msg-Id")
            if msg_id:
                span.set_attribute("messaging.message.id", msg_id)
            prepared.spans.append(span)

    # --- write ------------------------------------------------------------------------------------
    async def _writer_loop(self, number: int) -> None:
        writer = BatchWriter(self._engine, self._known_months)
        try:
            while True:
                held = await self._queue.get()
                if held is None:
                    break
                try:
                    await self._handle(writer, held)
                finally:
                    self._held.discard(held)
        finally:
            await writer.release()

    async def _store(self, writer: BatchWriter, prepared: Prepared) -> WriteResult | None:
        """Commit the batch, retrying through PostgreSQL outages; None if shutdown came first."""
        delay = 0.05
        give_up_at: float | None = None
        warned = 0.0
        while True:
            try:
                first = next((span for span in prepared.spans if span is not None), None)
                if first is not None:
                    # Child of the batch's first sampled event (so that request's trace is complete),
                    # linked to every event of the batch.
                    with tracer.start_as_current_span(
                        "INSERT metering.usage_events",
                        context=trace.set_span_in_context(first),
                        kind=SpanKind.CLIENT,
                        links=prepared.links,
                        attributes={
                            "db.system.name": "postgresql",
                            "db.system": "postgresql",
                            "db.operation.name": "INSERT",
                            "db.collection.name": "metering.usage_events",
                            "db.operation.batch.size": len(prepared.rows),
                        },
                    ):
                        return await writer.write(prepared.rows, prepared.months)
                if tracing_enabled():
                    # No sampled event in the batch (the requests' sampler said no, or they carried no
                    # trace context): no span, not even the asyncpg ones, rather than a detached root.
                    with untraced():
                        return await writer.write(prepared.rows, prepared.months)
                return await writer.write(prepared.rows, prepared.months)
            except TransientDbError as exc:
                metrics.DB_ERRORS.labels(exc.kind).inc()
                now = time.monotonic()
                if self._stopping.is_set():
                    give_up_at = give_up_at or now + 10.0
                    if now >= give_up_at:
                        log.error("shutting down with an uncommitted batch of %d events (nak'ed)", len(prepared.msgs))
                        return None
                if exc.kind == "conflict":
                    await asyncio.sleep(0.01)
                    continue
                if now - warned > 5:
                    log.warning("storing a batch failed (%s); retrying with back-off (%.2fs)", exc, delay)
                    warned = now
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._settings.metering_backoff_max_seconds)

    async def _handle(self, writer: BatchWriter, held: _Held) -> None:
        prepared = held.prepared
        started = time.perf_counter()
        result = await self._store(writer, prepared)
        if result is None:
            await self._settle(prepared.msgs, "nak")
            self._end_spans(prepared, {}, error="not stored: shutdown")
            return
        self.last_commit = time.monotonic()
        metrics.BATCHES.inc()
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.observe(len(prepared.msgs))
        for (model, provider), cost in result.cost.items():
            metrics.COST_USD.labels(model, provider).inc(cost)
        metrics.EVENTS_INSERTED.inc(result.inserted)
        metrics.EVENTS_DUPLICATE.inc(len(prepared.rows) - len(result.rejected) - result.inserted)
        if prepared.unpriced:
            metrics.EVENTS_UNPRICED.inc(prepared.unpriced)

        dead = {index: (reason, detail) for index, reason, detail in prepared.dead}
        for row_index, error in result.rejected:
            dead[prepared.row_msg[row_index]] = ("db_rejected", error)
        dead_ok = await self._dead_letter(prepared.msgs, dead) if dead else set()

        msgs = prepared.msgs
        if dead:
            msgs = [msg for index, msg in enumerate(msgs) if index not in dead]
        try:
            rest = await ack_many(self._nc, msgs)  # one write for the whole batch
        except Exception as exc:  # noqa: BLE001
            log.debug("bulk ack failed (%s); acking one by one", exc)
            rest = [msg for msg in msgs if not msg._ackd]
        for msg in rest:
            try:
                await msg.ack()
            except Exception as exc:  # noqa: BLE001 - redelivered later, deduplicated by the ledger
                log.debug("ack failed: %s", exc)
        if self._budget is not None and result.budget:
            self._budget.note(result.budget)
        self._end_spans(prepared, {i: dead[i] for i in dead}, dead_ok=dead_ok)

    async def _dead_letter(self, msgs: list[Msg], dead: dict[int, tuple[str, str]]) -> set[int]:
        """Publish each poisoned message to the dead-letter stream, then terminate it."""
        done: set[int] = set()
        for index, (reason, detail) in dead.items():
            msg = msgs[index]
            headers = {
                HEADER_DEAD_LETTER_REASON: _header_safe(f"{reason}: {detail}"),
                HEADER_ORIGINAL_SUBJECT: msg.subject,
            }
            original = msg.headers or {}
            for name in ("traceparent", "tracestate"):
                if name in original:
                    headers[name] = original[name]
            if "Nats-Msg-Id" in original:
                headers[HEADER_ORIGINAL_MSG_ID] = _header_safe(original["Nats-Msg-Id"], 256)
            try:
                headers["Nats-Msg-Id"] = f"usage-{msg.metadata.sequence.stream}"
            except Exception:  # noqa: BLE001 - not a JetStream message (cannot happen on this consumer)
                pass
            try:
                await self._js.publish(SUBJECT_USAGE_DEAD_LETTER, msg.data, headers=headers, stream=STREAM_DEAD_LETTER)
                await msg.term()
            except Exception as exc:  # noqa: BLE001 - not acked: it comes back and is dead-lettered then
                log.warning("dead-lettering a usage message failed (%s); it will be redelivered", exc)
                continue
            metrics.DEAD_LETTERS.labels(reason).inc()
            log.warning("usage message dead-lettered: %s: %s", reason, _header_safe(detail, 200))
            done.add(index)
        return done

    def _end_spans(self, prepared: Prepared, dead: dict, dead_ok: set[int] | None = None, error: str | None = None):
        if not prepared.spans:
            return
        for index, span in enumerate(prepared.spans):
            if span is None:
                continue
            if error:
                span.set_status(Status(StatusCode.ERROR, error))
            elif index in dead:
                reason, _ = dead[index]
                span.set_attribute("llmgw.dead_letter.reason", reason)
                span.set_status(Status(StatusCode.ERROR, f"dead-lettered: {reason}"))
            span.end()

    async def _settle(self, msgs: list[Msg], how: str) -> None:
        for msg in msgs:
            try:
                if how == "nak":
                    await msg.nak()
                else:
                    await msg.in_progress()
            except Exception:  # noqa: BLE001 - already acked, or the connection is gone
                pass

    # --- consumer lag (metrics) -------------------------------------------------------------------
    async def _lag_loop(self, every: float = LAG_INTERVAL) -> None:
        """``num_pending`` / ``num_ack_pending`` of the durable consumer, every few seconds."""
        while True:
            try:
                info = await self._js.consumer_info(STREAM_USAGE, CONSUMER_METERING, timeout=2)
                metrics.CONSUMER_LAG.set(info.num_pending or 0)
                metrics.ACK_PENDING.set(info.num_ack_pending or 0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - NATS away: keep the last values
                log.debug("consumer info unavailable: %s", exc)
            await asyncio.sleep(every)

    # --- keep batches held through an outage from being redelivered ------------------------------
    async def _keepalive_loop(self) -> None:
        every = max(1.0, self._settings.metering_ack_wait_seconds / 3)
        while True:
            await asyncio.sleep(every / 2)
            now = time.monotonic()
            for held in list(self._held):
                if now - held.last_progress >= every:
                    held.last_progress = now
                    await self._settle(held.prepared.msgs, "progress")
