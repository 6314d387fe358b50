"""Edge-proxy settings (``LLMGW_*`` environment variables, see docs/edge-proxy.md)."""

from __future__ import annotations

from pydantic import Field, field_validator

from llmgw_common.settings import MIB, GatewaySettings


class Settings(GatewaySettings):
    service_name: str = "edge-proxy"

    proxy_port: int = 8080
    proxy_workers: int = 1
    #: separate listener for ``/metrics``; unset = served on the proxy port
    proxy_metrics_port: int | None = None
    #: names this replica's spool folder (``<state_dir>/spool/proxy-<instance>``); default host + pid
    proxy_instance: str | None = None

    #: request bodies above this get 413 (Content-Length checked first, streamed bytes counted too)
    max_body_bytes: int = Field(default=10 * MIB, ge=1)

    # --- upstream -------------------------------------------------------------------------------
    upstream_connect_timeout: float = 5.0
    #: longest wait for the next byte from the upstream (headers or body chunk)
    upstream_read_timeout: float = 600.0
    #: attempts per deployment (connect error, timeout, 429, 5xx) before falling back to the next one
    upstream_max_attempts: int = Field(default=3, ge=1)
    upstream_retry_base: float = 0.1
    #: longest backoff (or upstream Retry-After) waited before a retry; longer → next deployment
    upstream_retry_max_wait: float = 5.0
    #: open connections per upstream origin
    upstream_connection_limit: int = 1000
    #: an idle kept-alive upstream connection older than this is not reused (providers close theirs)
    upstream_keepalive_seconds: float = 15.0
    #: consecutive failures that open a deployment's circuit breaker, and how long it stays open
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cooldown: float = 30.0

    # --- key cache ----------------------------------------------------------------------------
    key_cache_size: int = 10_000
    key_cache_ttl: float = 60.0
    key_negative_ttl: float = 5.0
    #: how long a known key keeps working from the cache while key-service does not answer
    key_max_stale: float = 900.0
    key_lookup_timeout: float = 1.0
    #: failed key checks per client address per minute before that address gets 429s (0 = off)
    auth_failures_per_minute: int = Field(default=30, ge=0)
    #: reverse proxies (comma-separated IPs/CIDRs) whose X-Forwarded-For / X-Real-IP name the client
    #: for the brute-force limit; empty = trust nobody (the TCP peer is the client)
    trusted_proxies: str = ""

    # --- pass-through of other /v1/* paths ------------------------------------------------------
    #: all (contract default) | none | comma-separated path prefixes ("/v1/moderations,/v1/audio/");
    #: a key's metadata {"passthrough": ...} overrides it for that key
    passthrough: str = "all"

    # --- budgets / token estimates ------------------------------------------------------------
    #: completion tokens assumed for a request that sets no max_tokens (budget + TPM estimates)
    estimate_completion_tokens: int = 1024

    # --- response cache (opt-in per key or per request; docs/edge-proxy.md) -----------------------
    #: kill switch: False = never look up or store, whatever keys and headers ask
    response_cache_enabled: bool = True
    #: TTL of an entry when neither the key's metadata nor the request names one (seconds)
    response_cache_ttl: float = Field(default=300.0, gt=0)
    #: upper bound of any entry's TTL; the bucket's max_age (entries are gone from NATS after it)
    response_cache_max_ttl: float = Field(default=3600.0, gt=0)
    #: size of the shared KV bucket; past it the oldest entries are dropped
    response_cache_max_bytes: int = Field(default=256 * MIB, ge=1024)
    #: answers larger than this (or than NATS's max payload) are not cached
    response_cache_max_entry_bytes: int = Field(default=1 * MIB, ge=1)
    #: a lookup slower than this counts as a miss (NATS trouble never stalls requests for long)
    response_cache_lookup_timeout: float = Field(default=0.5, gt=0)

    # --- usage events -------------------------------------------------------------------------
    usage_queue_size: int = 100_000
    usage_batch_size: int = 512
    usage_ack_timeout: float = 5.0
    #: how often a non-empty spool is retried when NATS is back
    usage_replay_interval: float = 1.0
    spool_segment_bytes: int = 64 * MIB
    #: on shutdown: how long to try JetStream before leaving the rest in the spool
    shutdown_flush_timeout: float = 10.0

    #: a streaming client that disconnects after the upstream finished generating (OpenAI
    #: ``finish_reason``, a responses output's ``*.done``): how long the upstream is still read,
    #: sending nothing, to capture its usage report (0 = cancel at once, usage then unknown)
    stream_usage_drain_seconds: float = Field(default=5.0, ge=0)

    #: one JSON log line per request (request/trace/key ids, model, status, timings, tokens)
    proxy_access_log: bool = True

    #: on SIGTERM uvicorn stops accepting and waits this long for in-flight requests (streams
    #: included) before cancelling them; the usage queue is then flushed (JetStream or spool)
    shutdown_grace_seconds: float = 90.0

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str) -> str:
        from llmgw_proxy.domain.auth.failed_attempts import parse_networks

        parse_networks(value)  # ValueError names the bad entry
        return value

    @field_validator("passthrough")
    @classmethod
    def _check_passthrough(cls, value: str) -> str:
        from llmgw_proxy.domain.passthrough import PassthroughPolicy

        PassthroughPolicy.parse(value)
        return value
