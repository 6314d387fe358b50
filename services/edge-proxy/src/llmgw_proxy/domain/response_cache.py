"""Exact-match response cache for non-streaming requests, shared by every proxy replica through the
JetStream KV bucket ``llmgw_response_cache`` (no new infrastructure; see docs/edge-proxy.md).

- **Opt-in**: per key (metadata ``{"cache": true}`` or ``{"cache_ttl_seconds": N}``) or per request
  (``x-llmgw-cache: true``, ``x-llmgw-cache-ttl: N``); ``x-llmgw-cache: false`` turns it off for one
  request even when the key has it on. Streams are never cached.
- **Key**: ``sha256`` of the project, the endpoint, the model, the ``anthropic-version`` /
  ``anthropic-beta`` headers and the request body normalised (JSON parsed, object keys sorted,
  re-encoded, so key order and whitespace do not matter). KV key = ``<project token>.<digest>``
  (:func:`llmgw_common.contract.response_cache_project_token`) so one project can be purged alone.
- **TTL**: stored in the entry (``expires``) and checked on every read; the bucket's ``max_age``
  (``LLMGW_RESPONSE_CACHE_MAX_TTL``) removes entries from NATS at the latest then, and its
  ``max_bytes`` drops the oldest entries when full (discard-old).
- Only 200 answers are stored (the body the client got, translated or not) with their normalised
  token counts; a hit is answered from the entry without any upstream call.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

import msgspec
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, KeyNotFoundError
from nats.js.kv import KeyValue

from llmgw_common import contract
from llmgw_common.messaging import jetstream_replicas
from llmgw_proxy.domain import errors
from llmgw_proxy.domain.usage.tokens import Tokens

log = logging.getLogger(__name__)

BUCKET = contract.KV_BUCKET_RESPONSE_CACHE
ENTRY_VERSION = 1
#: room for the KV message's own headers/subject under NATS's max payload
_PAYLOAD_MARGIN = 4096

_TRUE = frozenset({b"true", b"1", b"yes", b"on"})
_FALSE = frozenset({b"false", b"0", b"no", b"off"})

_any_decoder = msgspec.json.Decoder()
_sorted_encode = msgspec.json.Encoder(order="sorted").encode


class CacheEntry(msgspec.Struct, kw_only=True):
    """One cached answer (msgpack in the KV value)."""

    v: int = ENTRY_VERSION
    created: float
    expires: float
    status: int = 200
    content_type: str = "application/json"
    body: bytes
    provider: str = ""
    deployment: str = ""
    upstream_model: str = ""
    prompt_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0

    def tokens(self) -> Tokens:
        tokens = Tokens()
        tokens.prompt = self.prompt_tokens
        tokens.cached = self.cached_tokens
        tokens.cache_write = self.cache_write_tokens
        tokens.completion = self.completion_tokens
        tokens.reasoning = self.reasoning_tokens
        tokens.total = self.total_tokens
        tokens.seen = True
        return tokens


_entry_encode = msgspec.msgpack.Encoder().encode
_entry_decoder = msgspec.msgpack.Decoder(CacheEntry)


class CachePlan:
    """The cache's part in one request: its KV key, TTL, and the entry when it was a hit."""

    __slots__ = ("key", "ttl", "hit")

    def __init__(self, key: str, ttl: float) -> None:
        self.key = key
        self.ttl = ttl
        self.hit: CacheEntry | None = None


class ResponseCache:
    def __init__(self, settings, metrics) -> None:
        self.enabled = settings.response_cache_enabled
        self.default_ttl = settings.response_cache_ttl
        self.max_ttl = settings.response_cache_max_ttl
        self.max_bytes = settings.response_cache_max_bytes
        self.max_entry_bytes = settings.response_cache_max_entry_bytes
        self.lookup_timeout = settings.response_cache_lookup_timeout
        self.metrics = metrics
        self.kv: KeyValue | None = None
        self.max_payload: int | None = None

    # --- set-up ---------------------------------------------------------------------------------
    def stream_config(self) -> StreamConfig:
        """The KV bucket as a stream, like ``create_key_value`` makes it but discarding the *oldest*
        entries when full (a cache must keep accepting new answers)."""
        return StreamConfig(
            name=contract.kv_stream_name(BUCKET),
            description="llmgw response cache (edge-proxy)",
            subjects=[f"$KV.{BUCKET}.>"],
            storage=StorageType.FILE,
            num_replicas=jetstream_replicas(),
            max_age=self.max_ttl,
            max_bytes=self.max_bytes,
            max_msgs=-1,
            max_msgs_per_subject=1,
            max_consumers=-1,
            discard=DiscardPolicy.OLD,
            duplicate_window=min(120.0, self.max_ttl),
            allow_rollup_hdrs=True,
            deny_delete=True,
            allow_direct=True,
        )

    async def bind(self, js: JetStreamContext, max_payload: int | None = None) -> None:
        """Create the bucket (or converge an existing one on these limits) and bind it."""
        if not self.enabled:
            return
        config = self.stream_config()
        try:
            await js.add_stream(config)
        except BadRequestError:
            try:
                await js.update_stream(config)  # another release/replica made it with other limits
            except Exception as exc:  # noqa: BLE001 - keep the bucket as it is
                log.warning("response cache bucket kept with its own limits (%s)", exc)
        self.max_payload = max_payload
        self.kv = await js.key_value(BUCKET)

    # --- per request ------------------------------------------------------------------------------
    def plan(self, headers: list[tuple[bytes, bytes]], metadata: dict, project: str, path: str, model: str, body: bytes):
        """A :class:`CachePlan` when this (non-streaming) request uses the cache, else None.
        Raises 400 for an invalid ``x-llmgw-cache`` / ``x-llmgw-cache-ttl`` header."""
        if not self.enabled:
            return None
        wanted: bool | None = None
        header_ttl = None
        version = beta = b""
        for name, value in headers:
            first = name[:1]
            if first == b"x":
                if name == b"x-llmgw-cache":
                    flag = value.strip().lower()
                    if flag in _TRUE:
                        wanted = True
                    elif flag in _FALSE:
                        wanted = False
                    else:
                        raise errors.bad_request("'x-llmgw-cache' must be 'true' or 'false'.", "invalid_cache_header")
                elif name == b"x-llmgw-cache-ttl":
                    header_ttl = value
            elif first == b"a":
                if name == b"anthropic-version":
                    version = value
                elif name == b"anthropic-beta":
                    beta = beta + b"," + value if beta else value
        key_ttl = _positive(metadata.get("cache_ttl_seconds")) if metadata else None
        if wanted is None:
            flag = metadata.get("cache") if metadata else None
            wanted = flag is True or (flag is not False and key_ttl is not None)
        if not wanted:
            return None
        if header_ttl is not None:
            try:
                ttl = float(int(header_ttl.strip()))
            except ValueError:
                ttl = 0.0
            if ttl <= 0:
                raise errors.bad_request("'x-llmgw-cache-ttl' must be a positive whole number of seconds.", "invalid_cache_ttl")
        else:
            ttl = key_ttl or self.default_ttl
        try:
            normalised = _sorted_encode(_any_decoder.decode(body))
        except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
            return None  # validated already; cannot happen, but never fail a request over the cache
        digest = hashlib.sha256()
        for part in (b"llmgw-response-cache-v1", project.encode(), path.encode(), model.encode(), version, beta):
            digest.update(part)
            digest.update(b"\0")
        digest.update(normalised)
        key = f"{contract.response_cache_project_token(project)}.{digest.hexdigest()}"
        return CachePlan(key, min(ttl, self.max_ttl))

    async def lookup(self, plan: CachePlan) -> CacheEntry | None:
        kv = self.kv
        if kv is None:
            self.metrics.response_cache("error")
            return None
        try:
            found = await asyncio.wait_for(kv.get(plan.key), self.lookup_timeout)
        except KeyNotFoundError:
            found = None
        except Exception as exc:  # noqa: BLE001 - NATS trouble: a miss, never a failed request
            log.debug("response cache lookup failed: %s", type(exc).__name__)
            self.metrics.response_cache("error")
            return None
        entry = None
        if found is not None and found.value:
            try:
                entry = _entry_decoder.decode(found.value)
            except msgspec.MsgspecError:
                entry = None
            if entry is not None and (entry.v != ENTRY_VERSION or entry.expires <= time.time()):
                entry = None
        self.metrics.response_cache("hit" if entry is not None else "miss")
        plan.hit = entry
        return entry

    async def store(self, plan: CachePlan, body: bytes, content_type: str, candidate, tokens: Tokens) -> None:
        """Runs in the background after the answer went out."""
        kv = self.kv
        if kv is None:
            return
        now = time.time()
        entry = CacheEntry(
            created=now,
            expires=now + plan.ttl,
            content_type=content_type or "application/json",
            body=body,
            provider=candidate.provider.name if candidate is not None else "",
            deployment=candidate.name if candidate is not None else "",
            upstream_model=candidate.upstream_model if candidate is not None else "",
            prompt_tokens=tokens.prompt,
            cached_tokens=tokens.cached,
            cache_write_tokens=tokens.cache_write,
            completion_tokens=tokens.completion,
            reasoning_tokens=tokens.reasoning,
            total_tokens=tokens.total,
        )
        data = _entry_encode(entry)
        limit = self.max_entry_bytes
        if self.max_payload:
            limit = min(limit, self.max_payload - _PAYLOAD_MARGIN)
        if len(data) > limit:
            self.metrics.response_cache("skip")
            return
        try:
            await kv.put(plan.key, data)
        except Exception as exc:  # noqa: BLE001
            log.debug("response cache store failed: %s", type(exc).__name__)
            self.metrics.response_cache("error")
            return
        self.metrics.response_cache("store")


def _positive(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return float(value)
