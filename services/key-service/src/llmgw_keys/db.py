"""Async engine and session factory."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from llmgw_keys.settings import Settings


def create_engine(settings: Settings, *, pool_size: int | None = None, role: str = "", **options) -> AsyncEngine:
    """The service's engine; ``role`` names its connections in ``pg_stat_activity``
    (``<service>-<role>``), ``options`` override the pool defaults below."""
    if not settings.database_url:
        raise RuntimeError("LLMGW_DATABASE_URL is not set")
    application_name = f"{settings.service_name}-{role}" if role else settings.service_name
    defaults = dict(
        pool_size=pool_size or settings.keys_db_pool_size,
        max_overflow=5,
        pool_pre_ping=True,
        # SQL parameters never reach logs or exception texts.
        hide_parameters=True,
        pool_recycle=1800,
        connect_args={"server_settings": {"application_name": application_name}},
    )
    return create_async_engine(settings.async_database_url, **{**defaults, **options})


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def create_read_engine(settings: Settings) -> AsyncEngine:
    """The engine of the NATS lookup responder's reads (one statement each, on the proxies' cold path):
    autocommit (no BEGIN/ROLLBACK round trips) and no pre-ping round trip per checkout — a connection
    the server dropped fails its statement instead, is invalidated by SQLAlchemy and the caller
    retries once on a fresh one (:func:`read_once_more`)."""
    return create_engine(
        settings,
        pool_size=max(2, settings.keys_db_pool_size // 2),
        role="lookup",
        pool_pre_ping=False,
        isolation_level="AUTOCOMMIT",
    )


async def read_once_more(session_factory: async_sessionmaker[AsyncSession], read):
    """``await read(session)``; once more on a new connection if the first one turned out dead."""
    from sqlalchemy.exc import DBAPIError

    try:
        async with session_factory() as session:
            return await read(session)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    async with session_factory() as session:
        return await read(session)
