"""NATS responders: key lookups (``SUBJECT_KEY_LOOKUP``) and admin-token verification
(``SUBJECT_AUTH_VERIFY``), both in the ``key-service`` queue group so replicas share the load;
plus every replica's own subscription to ``SUBJECT_KEY_CHANGED`` that keeps its cache honest.

A cached lookup is answered inline from the subscription callback (a dict probe, no I/O); a miss
is resolved in its own task (nats-py runs one subscription's callbacks one after another, so a
database round trip must not hold up the cached answers queued behind it).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from dataclasses import dataclass
from datetime import datetime

import msgspec
from llmgw_common import contract
from llmgw_common.telemetry import extract_context, messaging_attributes
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from llmgw_keys.db import read_once_more
from llmgw_keys.metrics import AUTH_VERIFY, LOOKUP_SECONDS, LOOKUPS
from llmgw_keys.models import RouteTable
from llmgw_keys.runtime import Runtime
from llmgw_keys.services import admin_tokens, keys, providers, routes
from llmgw_keys.util import utcnow

log = logging.getLogger(__name__)
tracer = trace.get_tracer("llmgw_keys.lookup")

NOT_FOUND = contract.encode(contract.KeyLookupReply(found=False))
_HEX = frozenset("0123456789abcdef")


def _is_hash(value: str) -> bool:
    """``hash_secret`` output: 64 lowercase hex characters. Anything else cannot match."""
    return len(value) == 64 and _HEX.issuperset(value)


@dataclass(frozen=True)
class Shared:
    providers: list[contract.ProviderCredential]
    routes: list[contract.Route]


def _span_attributes(subject: str, size: int) -> dict:
    return messaging_attributes(
        subject, "process", body_size=size, consumer_group=contract.QUEUE_GROUP_KEY_SERVICE
    )


class Responder:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.cache = runtime.cache
        self._subs: list = []
        self._tasks: set[asyncio.Task] = set()
        self._inflight: dict[str, asyncio.Future] = {}
        self._shared_lock = asyncio.Lock()
        self._bootstrap_hash = contract.hash_secret(runtime.bootstrap_token) if runtime.bootstrap_token else ""

    async def subscribe(self) -> None:
        nc = self.runtime.nc
        self._subs = [
            await nc.subscribe(contract.SUBJECT_KEY_LOOKUP, queue=contract.QUEUE_GROUP_KEY_SERVICE, cb=self._on_lookup),
            await nc.subscribe(
                contract.SUBJECT_AUTH_VERIFY, queue=contract.QUEUE_GROUP_KEY_SERVICE, cb=self._on_verify
            ),
            # No queue group: every replica must see every change.
            await nc.subscribe(contract.SUBJECT_KEY_CHANGED, cb=self._on_changed),
        ]
        await nc.flush()

    async def close(self) -> None:
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: BLE001 - connection may already be gone
                pass
        self._subs = []
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- key lookup ------------------------------------------------------------------------------
    async def _on_lookup(self, msg) -> None:
        parent = extract_context(msg.headers)
        try:
            request = contract.key_lookup_request_decoder.decode(msg.data)
        except msgspec.MsgspecError:
            LOOKUPS.labels("invalid", "miss").inc()
            await msg.respond(NOT_FOUND)
            return
        if not _is_hash(request.key_hash):
            LOOKUPS.labels("invalid", "miss").inc()
            await msg.respond(NOT_FOUND)
            return
        cached = self.cache.get(request.key_hash)
        if cached is not None:
            LOOKUPS.labels("not_found" if cached == NOT_FOUND else "found", "hit").inc()
            with tracer.start_as_current_span(
                f"process {contract.SUBJECT_KEY_LOOKUP}",
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes={**_span_attributes(msg.subject, len(msg.data)), "llmgw.cache_hit": True},
            ):
                await msg.respond(cached)
            return
        self._spawn(self._resolve_and_respond(msg, request.key_hash, parent))

    async def _resolve_and_respond(self, msg, key_hash: str, parent) -> None:
        with tracer.start_as_current_span(
            f"process {contract.SUBJECT_KEY_LOOKUP}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={**_span_attributes(msg.subject, len(msg.data)), "llmgw.cache_hit": False},
        ) as span:
            started = time.perf_counter()
            try:
                data = await self.lookup(key_hash)
            except Exception as exc:  # noqa: BLE001
                # No answer rather than a wrong "not found": the proxy treats a timeout as
                # "key-service unavailable" (503) instead of rejecting a valid key.
                LOOKUPS.labels("error", "miss").inc()
                log.warning("key lookup failed (%s); not answering", type(exc).__name__)
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
                return
            LOOKUP_SECONDS.observe(time.perf_counter() - started)
            found = data != NOT_FOUND
            LOOKUPS.labels("found" if found else "not_found", "miss").inc()
            span.set_attribute("llmgw.key_found", found)
            await msg.respond(data)

    async def lookup(self, key_hash: str) -> bytes:
        """The encoded reply for a key hash, from the cache or the database."""
        cached = self.cache.get(key_hash)
        if cached is not None:
            return cached
        future = self._inflight.get(key_hash)
        if future is None:
            future = asyncio.ensure_future(self._resolve(key_hash))
            self._inflight[key_hash] = future

            def done(f, key_hash=key_hash):
                if self._inflight.get(key_hash) is f:
                    del self._inflight[key_hash]
                if not f.cancelled():
                    f.exception()  # mark retrieved

            future.add_done_callback(done)
        return await asyncio.shield(future)

    async def _resolve(self, key_hash: str) -> bytes:
        generation = self.cache.generation
        found = await read_once_more(self.runtime.read_session_factory, lambda s: keys.find_by_hash(s, key_hash))
        if found is None:
            self.cache.put(key_hash, NOT_FOUND, generation)
            return NOT_FOUND
        row, grace_until = found
        now = utcnow()
        record = keys.to_record(row, grace_until, now)
        if record.status == "active":
            shared = await self.shared()
            reply = contract.KeyLookupReply(found=True, key=record, providers=shared.providers, routes=shared.routes)
        else:
            # Revoked/expired: the status is all the proxy needs (a precise 401); no credentials.
            reply = contract.KeyLookupReply(found=True, key=record)
        data = contract.encode(reply)
        # Never cache past a moment at which the answer changes by itself.
        deadlines: list[datetime] = []
        if record.status == "active" and record.expires_at is not None:
            deadlines.append(record.expires_at)
        if grace_until is not None:
            deadlines.append(grace_until)
        max_age = min((d - now).total_seconds() for d in deadlines) if deadlines else None
        self.cache.put(key_hash, data, generation, max_age)
        return data

    async def shared(self) -> Shared:
        """Providers referenced by the routes (API keys decrypted) and the effective routes."""
        cached = self.cache.get_shared()
        if cached is not None:
            return cached
        async with self._shared_lock:
            cached = self.cache.get_shared()
            if cached is not None:
                return cached
            generation = self.cache.generation
            async with self.runtime.session_factory() as session:
                table = await session.get(RouteTable, 1)
                creds = await providers.decrypted_credentials(session, self.runtime.settings, self.runtime.cipher)
            table_routes, _ = routes.effective(table)
            contract_routes = routes.as_contract(table_routes)
            referenced = {d.provider for r in contract_routes for d in r.deployments}
            shared = Shared(
                providers=[creds[name] for name in sorted(referenced) if name in creds],
                routes=contract_routes,
            )
            self.cache.put_shared(shared, generation)
            return shared

    # --- admin-token verification ------------------------------------------------------------------
    async def _on_verify(self, msg) -> None:
        self._spawn(self._verify_and_respond(msg, extract_context(msg.headers)))

    async def _verify_and_respond(self, msg, parent) -> None:
        with tracer.start_as_current_span(
            f"process {contract.SUBJECT_AUTH_VERIFY}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=_span_attributes(msg.subject, len(msg.data)),
        ) as span:
            try:
                request = contract.auth_verify_request_decoder.decode(msg.data)
            except msgspec.MsgspecError:
                AUTH_VERIFY.labels("invalid").inc()
                await msg.respond(contract.encode(contract.AuthVerifyReply(valid=False)))
                return
            try:
                reply = await self.verify(request.token_hash)
            except Exception as exc:  # noqa: BLE001
                AUTH_VERIFY.labels("error").inc()
                log.warning("token verification failed (%s); not answering", type(exc).__name__)
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
                return
            AUTH_VERIFY.labels("valid" if reply.valid else "invalid").inc()
            span.set_attribute("llmgw.token_valid", reply.valid)
            await msg.respond(contract.encode(reply))

    async def verify(self, token_hash: str) -> contract.AuthVerifyReply:
        if not _is_hash(token_hash):
            return contract.AuthVerifyReply(valid=False)
        if self._bootstrap_hash and hmac.compare_digest(token_hash.encode(), self._bootstrap_hash.encode()):
            return contract.AuthVerifyReply(valid=True, role="admin", token_id="bootstrap")
        row = await read_once_more(self.runtime.read_session_factory, lambda s: admin_tokens.find_active(s, token_hash))
        if row is None:
            return contract.AuthVerifyReply(valid=False)
        return contract.AuthVerifyReply(valid=True, role=row.role, token_id=row.id)

    # --- change events ------------------------------------------------------------------------------
    async def _on_changed(self, msg) -> None:
        try:
            event = contract.key_changed_decoder.decode(msg.data)
        except msgspec.MsgspecError:
            self.cache.clear()  # unknown shape (newer producer?): the safe answer is to forget everything
            return
        self.runtime.apply_change(event)
