"""NATS connection and JetStream stream definitions, shared so every service declares them alike."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from llmgw_common import contract

log = logging.getLogger(__name__)

DAY = 24 * 3600

STREAM_CONFIGS: dict[str, StreamConfig] = {
    contract.STREAM_USAGE: StreamConfig(
        name=contract.STREAM_USAGE,
        subjects=[contract.SUBJECT_USAGE_WILDCARD],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        # Kept a week after metering stored them, so an operator can replay into a rebuilt ledger.
        max_age=7 * DAY,
        discard=DiscardPolicy.OLD,
        # JetStream drops a re-published event id inside this window; metering's
        # ON CONFLICT (event_id) DO NOTHING covers anything older (e.g. a spool replay).
        duplicate_window=120,
    ),
    contract.STREAM_KEY_EVENTS: StreamConfig(
        name=contract.STREAM_KEY_EVENTS,
        subjects=[contract.SUBJECT_KEY_CHANGED],
        storage=StorageType.FILE,
        max_age=DAY,
    ),
    contract.STREAM_DEAD_LETTER: StreamConfig(
        name=contract.STREAM_DEAD_LETTER,
        subjects=["llmgw.v1.deadletter.>"],
        storage=StorageType.FILE,
        max_age=30 * DAY,
    ),
}


async def connect(
    url: str,
    name: str,
    *,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    on_disconnect: Callable[[], Awaitable[None]] | None = None,
) -> NATS:
    """Connect with endless reconnects: a service outlives a NATS restart."""

    async def error_cb(exc: Exception) -> None:
        log.warning("nats error: %s", exc)

    async def reconnected_cb() -> None:
        log.info("nats reconnected")
        if on_reconnect:
            await on_reconnect()

    async def disconnected_cb() -> None:
        log.warning("nats disconnected")
        if on_disconnect:
            await on_disconnect()

    return await nats.connect(
        servers=[s.strip() for s in url.split(",") if s.strip()],
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
        allow_reconnect=True,
        error_cb=error_cb,
        reconnected_cb=reconnected_cb,
        disconnected_cb=disconnected_cb,
    )


def jetstream_replicas() -> int:
    """``LLMGW_JETSTREAM_REPLICAS``: copies of each stream/bucket in a NATS cluster (1 for one server, 3 in production)."""
    return max(1, int(os.environ.get("LLMGW_JETSTREAM_REPLICAS", "1")))


async def ensure_streams(js: JetStreamContext, *names: str) -> None:
    """Create (or bring up to date) the named streams; idempotent, safe from many replicas at once."""
    for name in names:
        config = dataclasses.replace(STREAM_CONFIGS[name], num_replicas=jetstream_replicas())
        try:
            await js.add_stream(config)
        except BadRequestError:
            # Exists with another config (an older release): converge on ours.
            await js.update_stream(config)
