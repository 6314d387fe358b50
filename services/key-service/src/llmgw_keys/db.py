"""Async engine and session factory."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from llmgw_keys.settings import Settings


def create_engine(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    if not settings.database_url:
        raise RuntimeError("LLMGW_DATABASE_URL is not set")
    return create_async_engine(
        settings.async_database_url,
        pool_size=pool_size or settings.keys_db_pool_size,
        max_overflow=5,
        pool_pre_ping=True,
        # SQL parameters never reach logs or exception texts.
        hide_parameters=True,
        pool_recycle=1800,
        connect_args={"server_settings": {"application_name": settings.service_name}},
    )


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
