"""key-service settings (``LLMGW_*`` environment variables)."""

from __future__ import annotations

from pathlib import Path

from llmgw_common.settings import GatewaySettings
from pydantic import Field

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_ANTHROPIC_BASE_URL = "https://api.anthropic.com"


class Settings(GatewaySettings):
    #: OpenTelemetry service.name (unless OTEL_SERVICE_NAME), log "service" field; as in compose and k8s
    service_name: str = "key-service"

    keys_port: int = 8081
    keys_workers: int = 1
    #: ``serve`` applies the migrations first (``LLMGW_AUTO_MIGRATE=0`` when a migrations Job does it)
    auto_migrate: bool = True

    # Providers configured through the environment (implicit, never persisted; a database row of
    # the same name overrides them).
    openai_api_key: str | None = Field(default=None, repr=False)
    #: with ``/v1``, as the openai SDK takes it
    openai_base_url: str | None = None
    anthropic_api_key: str | None = Field(default=None, repr=False)
    #: without ``/v1``, as the anthropic SDK takes it
    anthropic_base_url: str | None = None

    #: YAML file the routes table is seeded from when it was never configured
    routes_file: Path | None = None

    #: lookup answers kept in memory at most this long (events invalidate them sooner)
    keys_cache_ttl_seconds: float = 30.0
    keys_cache_max_entries: int = 100_000
    #: how often expired keys are marked and announced
    keys_expiry_interval_seconds: float = 5.0
    #: how often key-change events that could not be published are retried
    keys_outbox_retry_seconds: float = 2.0
    keys_db_pool_size: int = 10

    @property
    def effective_openai_base_url(self) -> str:
        return (self.openai_base_url or DEFAULT_OPENAI_BASE_URL).rstrip("/")

    @property
    def effective_anthropic_base_url(self) -> str:
        return (self.anthropic_base_url or DEFAULT_ANTHROPIC_BASE_URL).rstrip("/")
