"""Settings shared by every service, read from ``LLMGW_*`` environment variables once.

Service packages subclass :class:`GatewaySettings` and add their own fields (ports, workers…).
"""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


def normalize_database_url(url: str) -> str:
    """Accept a plain ``postgresql://`` URL and add the async driver inside."""
    for plain in ("postgresql://", "postgres://", "postgresql+psycopg://", "postgresql+psycopg2://"):
        if url.startswith(plain):
            return "postgresql+asyncpg://" + url[len(plain) :]
    return url


def read_or_create_secret(state_dir: Path, name: str, factory=lambda: secrets.token_urlsafe(32)) -> str:
    """A secret generated once and kept in the state dir (dev convenience; production sets env)."""
    path = state_dir / name
    if path.exists():
        return path.read_text().strip()
    state_dir.mkdir(parents=True, exist_ok=True)
    value = factory()
    # Created 0600 from the start: the file must never be world-readable, not even briefly.
    fd_int = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd_int, "w") as handle:
        handle.write(value + "\n")
    return value


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LLMGW_", extra="ignore", env_file=None)

    nats_url: str = "nats://127.0.0.1:4222"
    database_url: str = ""
    state_dir: Path = Path(".llmgw")
    bind_host: str = "127.0.0.1"
    admin_token: str | None = Field(default=None, repr=False)
    encryption_key: str | None = Field(default=None, repr=False)
    log_level: str = "INFO"
    #: name reported in traces, logs and metrics
    service_name: str = "llmgw"

    @cached_property
    def async_database_url(self) -> str:
        return normalize_database_url(self.database_url)

    def resolved_admin_token(self) -> str:
        """The bootstrap admin token: from env, else the one kept in the state dir."""
        if self.admin_token:
            return self.admin_token
        return read_or_create_secret(self.state_dir, "admin_token", lambda: "llmgw-admin-" + secrets.token_urlsafe(32))
