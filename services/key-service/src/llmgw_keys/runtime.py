"""Everything a key-service process holds while it runs (kept on ``app.state.runtime``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from cryptography.fernet import MultiFernet
from llmgw_common import contract
from llmgw_common.messaging import connect, ensure_streams
from llmgw_common.telemetry import instrument_asyncpg, setup_tracing
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from llmgw_keys.crypto import build_cipher
from llmgw_keys.db import create_engine, create_read_engine, create_session_factory
from llmgw_keys.services.cache import LookupCache
from llmgw_keys.services.events import EventPublisher, stage_event
from llmgw_keys.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Principal:
    """Who is calling the admin API."""

    id: str  #: admin token id, or ``bootstrap``
    role: str  #: ``admin`` | ``analyst``


@dataclass
class Tx:
    """One database transaction plus the key-change events it will announce after commit."""

    session: AsyncSession
    events: list[tuple[str, bytes, contract.KeyChanged]] = field(default_factory=list)

    def emit(self, event: contract.KeyChanged) -> None:
        event_id, payload = stage_event(self.session, event)
        self.events.append((event_id, payload, event))


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: AsyncEngine | None = None
        self.session_factory: async_sessionmaker[AsyncSession] | None = None
        #: autocommit sessions without pre-ping for the key-lookup responder's reads
        self.read_engine: AsyncEngine | None = None
        self.read_session_factory: async_sessionmaker[AsyncSession] | None = None
        self.cipher: MultiFernet | None = None
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.bootstrap_token: str = ""
        self.cache = LookupCache(settings.keys_cache_ttl_seconds, settings.keys_cache_max_entries)
        self.publisher: EventPublisher | None = None
        self.responder = None
        self._tasks: list[asyncio.Task] = []
        self._background: set[asyncio.Task] = set()

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        from llmgw_keys.services import expiry, lookup, routes

        settings = self.settings
        setup_tracing(settings.service_name)
        instrument_asyncpg()  # before the engine opens connections; a no-op unless tracing is on
        self.cipher = build_cipher(settings)
        self.bootstrap_token = settings.resolved_admin_token()
        self.engine = create_engine(settings)
        self.session_factory = create_session_factory(self.engine)
        self.read_engine = create_read_engine(settings)
        self.read_session_factory = create_session_factory(self.read_engine)
        self.publisher = EventPublisher(self.session_factory, self.apply_change)

        self.nc = await connect(
            settings.nats_url,
            name=settings.service_name,
            on_reconnect=self._on_reconnect,
        )
        self.js = self.nc.jetstream()
        await ensure_streams(self.js, contract.STREAM_KEY_EVENTS)
        self.publisher.attach(self.nc, self.js)

        # Seed before answering lookups: a bad routes file stops the start before we serve anything.
        await routes.seed_from_file(self)

        self.responder = lookup.Responder(self)
        await self.responder.subscribe()

        self._tasks = [
            asyncio.create_task(self.publisher.retry_loop(settings.keys_outbox_retry_seconds), name="outbox-retry"),
            asyncio.create_task(expiry.expiry_loop(self, settings.keys_expiry_interval_seconds), name="key-expiry"),
        ]
        log.info("key-service ready (nats %s)", "connected" if self.nc.is_connected else "disconnected")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self.responder is not None:
            await self.responder.close()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()
            with contextlib.suppress(Exception):
                await self.nc.close()
        if self.engine is not None:
            await self.engine.dispose()
        if self.read_engine is not None:
            await self.read_engine.dispose()

    async def _on_reconnect(self) -> None:
        # Events published while we were away were not delivered to our core subscription.
        self.cache.clear()
        # NATS may have come back without its storage: declare the stream again (in a task, not
        # inside nats-py's reconnect callback).
        task = asyncio.create_task(self._redeclare_streams())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _redeclare_streams(self) -> None:
        try:
            await ensure_streams(self.js, contract.STREAM_KEY_EVENTS)
        except Exception as exc:  # noqa: BLE001 - the outbox retry loop tries again later
            log.warning(
                "could not declare stream %s after reconnect (%s)", contract.STREAM_KEY_EVENTS, type(exc).__name__
            )

    # --- changes -----------------------------------------------------------------------------
    def apply_change(self, event: contract.KeyChanged) -> None:
        """Drop what a change makes stale (local mutations, and every replica's events)."""
        if event.action in ("providers", "routes") or (event.key_id is None and not event.key_hashes):
            self.cache.clear()
        else:
            self.cache.invalidate(event.key_hashes)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A transaction whose staged events are published once it committed."""
        assert self.session_factory is not None and self.publisher is not None
        async with self.session_factory() as session:
            async with session.begin():
                tx = Tx(session)
                yield tx
        if tx.events:
            await self.publisher.committed(tx.events)

    # --- health ------------------------------------------------------------------------------
    async def database_ok(self) -> bool:
        if self.engine is None:
            return False
        try:
            async with asyncio.timeout(2):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001
            return False

    def nats_ok(self) -> bool:
        return self.nc is not None and self.nc.is_connected
