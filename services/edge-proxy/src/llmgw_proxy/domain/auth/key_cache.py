"""Virtual-key lookups: in-process LRU + TTL cache in front of key-service's NATS request/reply.

- Hit within ``key_cache_ttl``: served from memory (no I/O).
- Past the TTL: refreshed synchronously while key-service answers; while it does not (timeout,
  no responders, NATS down) the cached answer keeps working up to ``key_max_stale`` after it was
  fetched, refreshed in the background meanwhile.
- Unknown keys are negatively cached for ``key_negative_ttl`` so a flood of bad keys costs
  key-service one lookup per key per few seconds. Concurrent lookups of one key share one request.
- ``KeyChanged`` drops the listed hashes (every entry when none listed); a NATS reconnect drops
  everything, so a revocation published while this proxy was disconnected is never honoured stale.
  A lookup that raced with an invalidation is used for its own request but not cached.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from datetime import datetime

import msgspec
from nats.errors import Error as NatsError

from llmgw_common import contract
from llmgw_proxy import observability
from llmgw_proxy.domain import errors

log = logging.getLogger(__name__)

#: after a failed lookup, stale entries are served without waiting for key-service this long
DOWN_BACKOFF = 2.0
_PROBE_HASH = "0" * 64


class KeyServiceUnavailable(Exception):
    pass


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


class KeyEntry:
    """One key's lookup answer with what the hot path derives from it (computed once)."""

    __slots__ = (
        "key_hash", "record", "providers", "routes", "fetched", "expires_ts", "grace_ts",
        "allow_all", "allow_exact", "allow_globs", "allowed_cache", "resolutions",
    )

    def __init__(self, key_hash: str, reply: contract.KeyLookupReply, fetched: float) -> None:
        record = reply.key
        assert record is not None
        self.key_hash = key_hash
        self.record = record
        self.providers = {p.name: p for p in reply.providers}
        self.routes = reply.routes
        self.fetched = fetched
        self.expires_ts = _ts(record.expires_at)
        self.grace_ts = _ts(record.grace_until)
        models = [m for m in record.models if m]
        self.allow_all = not models or "*" in models
        self.allow_exact = frozenset(m for m in models if not _is_glob(m))
        self.allow_globs = tuple(m for m in models if _is_glob(m))
        #: model -> allowed? (bounded: model names come from clients)
        self.allowed_cache: dict[str, bool] = {}
        #: (model, dialect) -> routing.Resolution, filled by routing.resolve
        self.resolutions: dict = {}

    def check_usable(self, now: float) -> None:
        """401 unless the key may be used at wall-clock time ``now`` (epoch seconds)."""
        status = self.record.status
        if status == "revoked":
            raise errors.invalid_key("This API key has been revoked.")
        if status == "expired" or (self.expires_ts is not None and now >= self.expires_ts):
            raise errors.invalid_key("This API key has expired.")
        if self.grace_ts is not None and now >= self.grace_ts:
            raise errors.invalid_key("This API key was rotated and its grace period is over.")
        if status != "active":
            raise errors.invalid_key()

    def model_allowed(self, model: str) -> bool:
        if self.allow_all or model in self.allow_exact:
            return True
        hit = self.allowed_cache.get(model)
        if hit is None:
            from fnmatch import fnmatchcase

            hit = any(fnmatchcase(model, pattern) for pattern in self.allow_globs)
            if len(self.allowed_cache) > 1000:
                self.allowed_cache.clear()
            self.allowed_cache[model] = hit
        return hit


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


class KeyCache:
    def __init__(self, settings, metrics=None) -> None:
        self.size = settings.key_cache_size
        self.ttl = settings.key_cache_ttl
        self.negative_ttl = settings.key_negative_ttl
        self.max_stale = settings.key_max_stale
        self.timeout = settings.key_lookup_timeout
        self.metrics = metrics
        self.nc = None
        #: set by the runtime when tracing is on: a CLIENT span per lookup request
        self.tracer = None
        self._entries: OrderedDict[str, KeyEntry] = OrderedDict()
        self._negative: OrderedDict[str, float] = OrderedDict()
        self._inflight: dict[str, asyncio.Future] = {}
        self._background: set[asyncio.Task] = set()
        self._generation = 0
        self._down_until = 0.0
        #: monotonic times of the last lookup key-service answered / failed to answer (readiness)
        self.last_answer = 0.0
        self.last_failure = 0.0
        self._encode = msgspec.json.Encoder().encode

    def __len__(self) -> int:
        return len(self._entries)

    def knows(self, key_hash: str) -> bool:
        """A key this proxy has already seen exist (cached, whatever its status)."""
        return key_hash in self._entries

    # --- lookups ------------------------------------------------------------------------------
    async def get(self, key_hash: str) -> KeyEntry:
        """The key's entry; raises 401 ProxyError for unknown keys, 503 when nobody can tell."""
        now = time.monotonic()
        entry = self._entries.get(key_hash)
        if entry is not None:
            age = now - entry.fetched
            if age < self.ttl:
                self._entries.move_to_end(key_hash)
                self._count("hit")
                return entry
            if age < self.max_stale and (now < self._down_until or not self._connected()):
                self._count("stale")
                self._refresh_in_background(key_hash)
                return entry
            try:
                fresh = await self._lookup(key_hash)
            except KeyServiceUnavailable:
                if time.monotonic() - entry.fetched < self.max_stale and key_hash in self._entries:
                    self._count("stale")
                    return entry
                raise errors.key_service_unavailable() from None
            if fresh is None:
                raise errors.invalid_key()
            self._count("refresh")
            return fresh
        expiry = self._negative.get(key_hash)
        if expiry is not None:
            if expiry > now:
                self._count("negative_hit")
                raise errors.invalid_key()
            del self._negative[key_hash]
        self._count("miss")
        try:
            fresh = await self._lookup(key_hash)
        except KeyServiceUnavailable:
            raise errors.key_service_unavailable() from None
        if fresh is None:
            raise errors.invalid_key()
        return fresh

    def _connected(self) -> bool:
        nc = self.nc
        return nc is not None and nc.is_connected

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.key_cache(result)

    def _lookup(self, key_hash: str) -> asyncio.Future:
        future = self._inflight.get(key_hash)
        if future is None:
            future = asyncio.ensure_future(self._fetch(key_hash))
            self._inflight[key_hash] = future
            future.add_done_callback(lambda _f, h=key_hash: self._inflight.pop(h, None))
        return asyncio.shield(future)

    def _refresh_in_background(self, key_hash: str) -> None:
        if key_hash in self._inflight or time.monotonic() < self._down_until - DOWN_BACKOFF / 2:
            return

        async def refresh() -> None:
            try:
                await self._lookup(key_hash)
            except Exception:  # noqa: BLE001 - the stale entry keeps serving
                pass

        task = asyncio.ensure_future(refresh())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _request(self, key_hash: str, probe: bool = False) -> contract.KeyLookupReply:
        if not self._connected():
            self.last_failure = time.monotonic()
            self._down_until = self.last_failure + DOWN_BACKOFF
            raise KeyServiceUnavailable("nats not connected")
        payload = self._encode(contract.KeyLookupRequest(key_hash=key_hash))
        span = headers = None
        if probe:
            headers = observability.unsampled_headers()  # readiness probes are never traced
        elif self.tracer is not None:
            span, headers = observability.lookup_span(self.tracer, contract.SUBJECT_KEY_LOOKUP, len(payload))
        try:
            msg = await self.nc.request(contract.SUBJECT_KEY_LOOKUP, payload, timeout=self.timeout, headers=headers)
        except (NatsError, asyncio.TimeoutError, OSError) as exc:
            self.last_failure = time.monotonic()
            self._down_until = self.last_failure + DOWN_BACKOFF
            log.warning("key lookup failed: %s", type(exc).__name__)
            if span is not None:
                observability.end_with_error(span, type(exc).__name__)
            raise KeyServiceUnavailable(type(exc).__name__) from None
        try:
            reply = contract.key_lookup_reply_decoder.decode(msg.data)
        except msgspec.MsgspecError:
            log.error("undecodable key lookup reply")
            if span is not None:
                observability.end_with_error(span, "bad_reply")
            raise KeyServiceUnavailable("bad reply") from None
        self.last_answer = time.monotonic()
        self._down_until = 0.0
        if span is not None:
            span.set_attribute("llmgw.key_found", reply.found)
            span.end()
        return reply

    async def _fetch(self, key_hash: str) -> KeyEntry | None:
        generation = self._generation
        reply = await self._request(key_hash)
        now = time.monotonic()
        current = generation == self._generation
        if not reply.found or reply.key is None:
            self._entries.pop(key_hash, None)
            if current:
                self._negative[key_hash] = now + self.negative_ttl
                if len(self._negative) > self.size:
                    self._negative.popitem(last=False)
            return None
        entry = KeyEntry(key_hash, reply, now)
        if current:
            self._entries[key_hash] = entry
            self._entries.move_to_end(key_hash)
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return entry

    def answering(self, window: float) -> bool | None:
        """True/False from recent lookups, None when a probe is needed to tell."""
        if self.last_failure > self.last_answer:
            return None
        return True if time.monotonic() - self.last_answer < window else None

    async def probe(self) -> bool:
        """One lookup round trip (readiness); True when key-service answered."""
        try:
            await self._request(_PROBE_HASH, probe=True)
        except KeyServiceUnavailable:
            return False
        return True

    # --- invalidation ---------------------------------------------------------------------------
    def on_changed(self, change: contract.KeyChanged) -> None:
        self._generation += 1
        if change.key_hashes:
            for key_hash in change.key_hashes:
                self._entries.pop(key_hash, None)
                self._negative.pop(key_hash, None)
        elif change.key_id:
            for key_hash in [h for h, e in self._entries.items() if e.record.id == change.key_id]:
                del self._entries[key_hash]
            self._negative.clear()
        else:
            self.clear()

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._negative.clear()

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
