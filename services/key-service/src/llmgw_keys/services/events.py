"""Key-change events: written to an outbox table inside the mutation's transaction, published to
JetStream (``SUBJECT_KEY_CHANGED``, stream ``LLMGW_KEY_EVENTS``) right after the commit, and
retried from the outbox by a background loop if that publish failed (NATS down, timeout, crash
between commit and publish). A change can therefore never be lost, only announced late; the
proxies' own cache TTL bounds how late that can matter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta

from llmgw_common import contract
from llmgw_common.messaging import ensure_streams
from llmgw_common.telemetry import inject_headers, messaging_attributes, untraced
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from opentelemetry import trace
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from llmgw_keys.metrics import CHANGE_EVENTS
from llmgw_keys.models import Outbox
from llmgw_keys.util import new_id, utcnow

log = logging.getLogger(__name__)
tracer = trace.get_tracer("llmgw_keys.events")

PUBLISH_TIMEOUT = 1.0


def stage_event(session: AsyncSession, event: contract.KeyChanged) -> tuple[str, bytes]:
    """Add the event to the outbox of the session's transaction."""
    event_id = new_id()
    payload = contract.encode(event)
    session.add(Outbox(id=event_id, payload=payload.decode()))
    return event_id, payload


class EventPublisher:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        on_local_change: Callable[[contract.KeyChanged], None],
    ) -> None:
        self.session_factory = session_factory
        self.on_local_change = on_local_change
        self.js: JetStreamContext | None = None
        self.nc: NATS | None = None
        self.published = 0
        self.failed = 0

    def attach(self, nc: NATS, js: JetStreamContext) -> None:
        self.nc, self.js = nc, js

    async def _publish_one(self, event_id: str, payload: bytes) -> bool:
        if self.js is None or self.nc is None or not self.nc.is_connected:
            return False
        with tracer.start_as_current_span(
            f"publish {contract.SUBJECT_KEY_CHANGED}",
            kind=trace.SpanKind.PRODUCER,
            attributes=messaging_attributes(contract.SUBJECT_KEY_CHANGED, "publish", message_id=event_id),
        ):
            headers = inject_headers({contract.HEADER_MSG_ID: f"keychg-{event_id}"})
            try:
                await self.js.publish(contract.SUBJECT_KEY_CHANGED, payload, headers=headers, timeout=PUBLISH_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - any failure leaves the row for the retry loop
                log.warning("key-change event %s not published yet (%s); will retry", event_id, type(exc).__name__)
                self.failed += 1
                CHANGE_EVENTS.labels("failed").inc()
                return False
        self.published += 1
        CHANGE_EVENTS.labels("published").inc()
        return True

    async def committed(self, events: list[tuple[str, bytes, contract.KeyChanged]]) -> None:
        """Called after the transaction that staged ``events`` committed."""
        for _, _, event in events:
            self.on_local_change(event)
        done = [event_id for event_id, payload, _ in events if await self._publish_one(event_id, payload)]
        if done:
            try:
                async with self.session_factory() as session, session.begin():
                    await session.execute(delete(Outbox).where(Outbox.id.in_(done)))
            except Exception as exc:  # noqa: BLE001 - the retry loop re-publishes; duplicates are harmless
                log.warning("outbox cleanup failed (%s)", type(exc).__name__)

    async def retry_pending(self, min_age_seconds: float = 1.0, batch: int = 100) -> int:
        """Publish what is still in the outbox (older than ``min_age_seconds``). Returns how many.

        When some still fail while connected, the stream is (re)declared: NATS may have come back
        without its storage."""
        if self.js is None or self.nc is None or not self.nc.is_connected:
            return 0
        sent = 0
        failed: list[str] = []
        async with self.session_factory() as session, session.begin():
            rows = (
                (
                    await session.execute(
                        select(Outbox)
                        .where(Outbox.created_at < utcnow() - timedelta(seconds=min_age_seconds))
                        .order_by(Outbox.created_at)
                        .limit(batch)
                        .with_for_update(skip_locked=True)
                    )
                )
                .scalars()
                .all()
            )
            done = []
            for row in rows:
                if await self._publish_one(row.id, row.payload.encode()):
                    done.append(row.id)
                else:
                    failed.append(row.id)
            if done:
                await session.execute(delete(Outbox).where(Outbox.id.in_(done)))
            if failed:
                await session.execute(update(Outbox).where(Outbox.id.in_(failed)).values(attempts=Outbox.attempts + 1))
            sent = len(done)
        if failed and self.nc.is_connected:
            try:
                await ensure_streams(self.js, contract.STREAM_KEY_EVENTS)
            except Exception as exc:  # noqa: BLE001
                log.warning("could not declare stream %s (%s)", contract.STREAM_KEY_EVENTS, type(exc).__name__)
        if sent:
            log.info("published %d key-change event(s) from the outbox", sent)
        return sent

    async def retry_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                with untraced():  # a query every few seconds is not worth a trace each
                    await self.retry_pending()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep the loop alive through DB/NATS outages
                log.warning("outbox retry failed (%s)", type(exc).__name__)
