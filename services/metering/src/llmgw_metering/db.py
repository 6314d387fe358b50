"""SQLAlchemy async engines (asyncpg). Every session runs in UTC so time buckets are UTC."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from llmgw_metering.settings import Settings


def create_engine(settings: Settings, *, pool_size: int = 5, application_name: str = "llmgw-metering") -> AsyncEngine:
    if not settings.database_url:
        raise RuntimeError("LLMGW_DATABASE_URL is not set")
    return create_async_engine(
        settings.async_database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={
            "server_settings": {"timezone": "UTC", "application_name": application_name},
            "timeout": 5,
            # statements are prepared per connection; asyncpg's cache is fine for our fixed SQL
        },
    )
