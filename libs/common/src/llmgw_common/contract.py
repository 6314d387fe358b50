"""The NATS contract between the services, written once.

Subjects carry the major version (``v1``); every message struct carries ``v`` too so a
consumer can refuse (dead-letter) a message from a newer, incompatible producer.
Additive, optional fields do not bump the version; renames and removals do.
See docs/architecture.md for the table and the data-flow diagram.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

import msgspec

CONTRACT_VERSION = 1

# --- subjects -------------------------------------------------------------------------------
#: request/reply: edge-proxy asks key-service for a key by its hash (queue group below).
SUBJECT_KEY_LOOKUP = "llmgw.v1.keys.lookup"
#: published (through JetStream, so it is durable) on every key/provider/route mutation.
SUBJECT_KEY_CHANGED = "llmgw.v1.keys.changed"
#: request/reply: metering (or any service) asks key-service whether an admin/analyst token is valid.
SUBJECT_AUTH_VERIFY = "llmgw.v1.auth.verify"
#: published (core NATS) by key-service when an admin/analyst token is revoked: services that cache
#: verifications drop it at once (and drop every cached verification after a reconnect).
SUBJECT_AUTH_CHANGED = "llmgw.v1.auth.changed"
#: JetStream: one usage event per forwarded client request. The suffix is the provider name.
SUBJECT_USAGE_PREFIX = "llmgw.v1.usage"
SUBJECT_USAGE_WILDCARD = "llmgw.v1.usage.>"
#: JetStream: usage messages metering could never store, with the reason in a header.
SUBJECT_USAGE_DEAD_LETTER = "llmgw.v1.deadletter.usage"

QUEUE_GROUP_KEY_SERVICE = "key-service"

STREAM_USAGE = "LLMGW_USAGE"
STREAM_KEY_EVENTS = "LLMGW_KEY_EVENTS"
STREAM_DEAD_LETTER = "LLMGW_DEAD_LETTER"
CONSUMER_METERING = "metering"

#: JetStream de-duplicates on this header within the stream's duplicate window.
HEADER_MSG_ID = "Nats-Msg-Id"
HEADER_DEAD_LETTER_REASON = "Llmgw-Dead-Letter-Reason"


def usage_subject(provider: str) -> str:
    return f"{SUBJECT_USAGE_PREFIX}.{provider or 'unknown'}"


def hash_secret(secret: str) -> str:
    """Virtual keys and admin tokens are stored and looked up only by this hash.

    They are 256-bit random strings, so an unsalted SHA-256 is not brute-forceable and keeps
    the lookup an O(1) index probe.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


# --- key lookup -------------------------------------------------------------------------------
ProviderKind = Literal["openai", "anthropic", "openai-compatible"]
KeyStatus = Literal["active", "revoked", "expired"]
BudgetPeriod = Literal["daily", "weekly", "monthly"]


class ProviderCredential(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    kind: ProviderKind
    base_url: str
    api_key: str = ""


class Deployment(msgspec.Struct, frozen=True, kw_only=True):
    provider: str  #: a ProviderCredential.name
    model: str  #: the model name sent upstream
    weight: int = 1
    priority: int = 0  #: lower is tried first; weights balance within one priority


class Route(msgspec.Struct, frozen=True, kw_only=True):
    model: str  #: the public model name, or a glob (``claude-*``); ``*`` in the upstream model keeps the asked name
    deployments: list[Deployment]


class KeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    project: str
    status: KeyStatus
    models: list[str] = []
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel_requests: int | None = None
    budget_usd: float | None = None
    budget_period: BudgetPeriod | None = None
    expires_at: datetime | None = None
    metadata: dict = {}
    tags: list[str] = []
    #: an old secret still accepted after a rotation with grace_seconds, until this time
    grace_until: datetime | None = None


class KeyLookupRequest(msgspec.Struct, frozen=True, kw_only=True):
    key_hash: str
    v: int = CONTRACT_VERSION


class KeyLookupReply(msgspec.Struct, frozen=True, kw_only=True):
    found: bool
    key: KeyRecord | None = None
    providers: list[ProviderCredential] = []
    routes: list[Route] = []
    v: int = CONTRACT_VERSION


ChangeAction = Literal["created", "updated", "rotated", "revoked", "expired", "providers", "routes"]


class KeyChanged(msgspec.Struct, frozen=True, kw_only=True):
    """Tells every proxy to drop what it cached.

    ``key_hashes`` empty together with ``key_id`` None means: drop everything (provider or
    route change affects every key).
    """

    action: ChangeAction
    key_id: str | None = None
    key_hashes: list[str] = []
    v: int = CONTRACT_VERSION


# --- admin token verification ---------------------------------------------------------------
Role = Literal["admin", "analyst"]


class AuthVerifyRequest(msgspec.Struct, frozen=True, kw_only=True):
    token_hash: str
    v: int = CONTRACT_VERSION


class AuthVerifyReply(msgspec.Struct, frozen=True, kw_only=True):
    valid: bool
    role: Role | None = None
    token_id: str | None = None
    v: int = CONTRACT_VERSION


class AuthTokenRevoked(msgspec.Struct, frozen=True, kw_only=True):
    token_hash: str
    v: int = CONTRACT_VERSION


# --- usage events -----------------------------------------------------------------------------
UsageStatus = Literal["ok", "error", "incomplete"]


class UsageEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One per client request that passed authentication and was forwarded (or served from cache).

    Token fields are normalised across providers (see CONTRACT.md): ``prompt_tokens`` counts
    every input token, cache reads and writes included.
    """

    event_id: str  #: unique; the JetStream message id and the metering primary key
    request_id: str
    ts: datetime  #: when the gateway received the request (UTC)
    key_id: str
    project: str
    provider: str  #: provider that answered last ("" when none was reached)
    model: str  #: what the client asked for
    upstream_model: str = ""  #: what the deployment was sent
    deployment: str = ""  #: "<provider>/<upstream_model>" that answered last
    endpoint: str  #: e.g. "/v1/chat/completions"
    streamed: bool = False
    status: UsageStatus = "ok"
    status_code: int = 200
    error_type: str | None = None
    attempts: int = 1
    cached: bool = False  #: served from the response cache (priced at zero)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0
    latency_ms: float = 0.0
    ttfb_ms: float | None = None
    upstream_latency_ms: float | None = None
    #: the budget reservation the proxy took for this request (released by metering, see BudgetState)
    reserved_usd: float = 0.0
    #: the budget period the reservation was taken in (``budget_period_key``), None without a budget
    budget_period_key: str | None = None
    v: int = CONTRACT_VERSION


# --- budgets (JetStream KV) ---------------------------------------------------------------------
#: One entry per (key, budget period): ``<key_id>.<period_key>`` -> BudgetState (JSON).
#: Proxies add their reservation with compare-and-set on the entry's revision before dispatch;
#: metering, after committing events, adds their real cost to ``spend_usd`` and takes their
#: ``reserved_usd`` back out (also by compare-and-set), so spend + reserved never under-counts.
KV_BUCKET_BUDGET = "llmgw_budget"


class BudgetState(msgspec.Struct, kw_only=True):
    #: the ledger's cost of the period's stored events (set by metering from PostgreSQL)
    spend_usd: float = 0.0
    #: estimates of requests in flight (proxies add theirs; metering takes stored events' back out)
    reserved_usd: float = 0.0
    #: watermark: the ledger's sum of stored events' ``reserved_usd`` already taken out of
    #: ``reserved_usd`` (set by metering). Releasing "ledger total − watermark" makes the release
    #: idempotent: one missed after a crash is applied by the next write. Writers other than
    #: metering must carry it over unchanged.
    released_usd: float = 0.0
    v: int = CONTRACT_VERSION


def budget_period_key(period: str | None, now: datetime) -> str:
    """The UTC period an instant falls in: ``d20261123``, ``w20261123`` (its Monday), ``m202611``, ``all``."""
    from datetime import timedelta

    if period == "daily":
        return now.strftime("d%Y%m%d")
    if period == "weekly":
        return (now - timedelta(days=now.weekday())).strftime("w%Y%m%d")
    if period == "monthly":
        return now.strftime("m%Y%m")
    return "all"


def budget_kv_key(key_id: str, period_key: str) -> str:
    return f"{key_id}.{period_key}"


# --- response cache (JetStream KV) ---------------------------------------------------------------
#: Exact-match response cache shared by every edge-proxy replica (docs/edge-proxy.md, "Response
#: cache"). Entry key: ``<response_cache_project_token(project)>.<sha256 hex of the request>``, so one
#: project's entries are the subjects ``$KV.llmgw_response_cache.<token>.>`` (key-service's
#: ``DELETE /v1/cache?project=`` purges exactly those). The proxy creates the bucket.
KV_BUCKET_RESPONSE_CACHE = "llmgw_response_cache"


def response_cache_project_token(project: str) -> str:
    """The KV-key-safe prefix of a project's response-cache entries."""
    return "p" + hashlib.sha256(project.encode()).hexdigest()[:32]


def kv_stream_name(bucket: str) -> str:
    """The JetStream stream behind a KV bucket (NATS convention ``KV_<bucket>``)."""
    return f"KV_{bucket}"


# Encoders/decoders are created once: they are on hot paths.
json_encoder = msgspec.json.Encoder()
key_lookup_request_decoder = msgspec.json.Decoder(KeyLookupRequest)
key_lookup_reply_decoder = msgspec.json.Decoder(KeyLookupReply)
key_changed_decoder = msgspec.json.Decoder(KeyChanged)
auth_verify_request_decoder = msgspec.json.Decoder(AuthVerifyRequest)
auth_verify_reply_decoder = msgspec.json.Decoder(AuthVerifyReply)
auth_token_revoked_decoder = msgspec.json.Decoder(AuthTokenRevoked)
usage_event_decoder = msgspec.json.Decoder(UsageEvent)
budget_state_decoder = msgspec.json.Decoder(BudgetState)


def encode(message: msgspec.Struct) -> bytes:
    return json_encoder.encode(message)
