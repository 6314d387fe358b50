"""Admin price overrides: the ``metering.price_overrides`` table and the in-memory Pricer built from it."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from llmgw_common.pricing import PriceOverride, Pricer

log = logging.getLogger(__name__)

_COLUMNS = (
    "model, provider, input_usd_per_mtok, cached_input_usd_per_mtok, cache_write_usd_per_mtok, "
    "output_usd_per_mtok, note, created_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class OverrideRecord:
    model: str
    provider: str | None
    input_usd_per_mtok: Decimal
    cached_input_usd_per_mtok: Decimal | None
    cache_write_usd_per_mtok: Decimal | None
    output_usd_per_mtok: Decimal
    note: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row) -> OverrideRecord:
        return cls(
            model=row.model,
            provider=row.provider or None,
            input_usd_per_mtok=row.input_usd_per_mtok,
            cached_input_usd_per_mtok=row.cached_input_usd_per_mtok,
            cache_write_usd_per_mtok=row.cache_write_usd_per_mtok,
            output_usd_per_mtok=row.output_usd_per_mtok,
            note=row.note,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def to_override(self) -> PriceOverride:
        return PriceOverride(
            model=self.model,
            provider=self.provider,
            input_usd_per_mtok=self.input_usd_per_mtok,
            output_usd_per_mtok=self.output_usd_per_mtok,
            cached_input_usd_per_mtok=self.cached_input_usd_per_mtok,
            cache_write_usd_per_mtok=self.cache_write_usd_per_mtok,
            version=self.updated_at.strftime("%Y%m%dT%H%M%S.%fZ"),
        )

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "provider": self.provider,
            "input_usd_per_mtok": self.input_usd_per_mtok,
            "cached_input_usd_per_mtok": self.cached_input_usd_per_mtok,
            "cache_write_usd_per_mtok": self.cache_write_usd_per_mtok,
            "output_usd_per_mtok": self.output_usd_per_mtok,
            "note": self.note,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


async def list_overrides(engine: AsyncEngine) -> list[OverrideRecord]:
    async with engine.connect() as conn:
        rows = await conn.execute(text(f"SELECT {_COLUMNS} FROM metering.price_overrides ORDER BY model, provider"))
        return [OverrideRecord.from_row(r) for r in rows]


async def get_override(engine: AsyncEngine, model: str, provider: str | None) -> OverrideRecord | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(f"SELECT {_COLUMNS} FROM metering.price_overrides WHERE model = :m AND provider = :p"),
                {"m": model, "p": provider or ""},
            )
        ).first()
        return OverrideRecord.from_row(row) if row else None


async def upsert_override(
    engine: AsyncEngine,
    *,
    model: str,
    provider: str | None,
    input_usd_per_mtok: Decimal,
    output_usd_per_mtok: Decimal,
    cached_input_usd_per_mtok: Decimal | None,
    cache_write_usd_per_mtok: Decimal | None,
    note: str,
) -> tuple[OverrideRecord, bool]:
    """Insert or replace; returns (record, created)."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                text(
                    f"""
                    INSERT INTO metering.price_overrides AS o
                        (model, provider, input_usd_per_mtok, cached_input_usd_per_mtok, cache_write_usd_per_mtok,
                         output_usd_per_mtok, note)
                    VALUES (:model, :provider, :inp, :cin, :cw, :out, :note)
                    ON CONFLICT (model, provider) DO UPDATE SET
                        input_usd_per_mtok = EXCLUDED.input_usd_per_mtok,
                        cached_input_usd_per_mtok = EXCLUDED.cached_input_usd_per_mtok,
                        cache_write_usd_per_mtok = EXCLUDED.cache_write_usd_per_mtok,
                        output_usd_per_mtok = EXCLUDED.output_usd_per_mtok,
                        note = EXCLUDED.note,
                        updated_at = clock_timestamp()
                    RETURNING {_COLUMNS}, (xmax = 0) AS created
                    """
                ),
                {
                    "model": model,
                    "provider": provider or "",
                    "inp": input_usd_per_mtok,
                    "cin": cached_input_usd_per_mtok,
                    "cw": cache_write_usd_per_mtok,
                    "out": output_usd_per_mtok,
                    "note": note,
                },
            )
        ).first()
    return OverrideRecord.from_row(row), bool(row.created)


async def delete_override(engine: AsyncEngine, model: str, provider: str | None) -> bool:
    async with engine.begin() as conn:
        result = await conn.execute(
            text("DELETE FROM metering.price_overrides WHERE model = :m AND provider = :p"),
            {"m": model, "p": provider or ""},
        )
        return bool(result.rowcount)


class OverrideCache:
    """The Pricer the ingest path uses, rebuilt from the table every ``refresh_seconds``.

    Ingest waits for the first successful load (pricing without the overrides would store wrong
    costs); after that a failed refresh keeps the previous set.
    """

    def __init__(self, engine: AsyncEngine, refresh_seconds: float) -> None:
        self._engine = engine
        self._refresh = refresh_seconds
        self._loaded_at: float | None = None
        self.pricer = Pricer()

    @property
    def loaded(self) -> bool:
        return self._loaded_at is not None

    async def load(self) -> None:
        records = await list_overrides(self._engine)
        self.pricer = Pricer([r.to_override() for r in records])
        self._loaded_at = time.monotonic()

    def invalidate(self) -> None:
        """Reload on the next ``refresh_if_due`` (after a change made through this process)."""
        if self._loaded_at is not None:
            self._loaded_at = -1e9

    async def refresh_if_due(self) -> None:
        if self._loaded_at is not None and time.monotonic() - self._loaded_at < self._refresh:
            return
        try:
            await self.load()
        except Exception as exc:  # noqa: BLE001 - DB trouble: the writer's back-off deals with it
            if self._loaded_at is None:
                raise
            log.warning("price overrides refresh failed, keeping the previous set: %s", exc)
            self._loaded_at = time.monotonic()

    async def wait_loaded(self, stopping: asyncio.Event, backoff_max: float) -> bool:
        delay = 0.1
        while not stopping.is_set():
            try:
                await self.refresh_if_due()
                return True
            except Exception as exc:  # noqa: BLE001
                log.warning("price overrides not loadable yet (%s); retrying in %.1fs", exc, delay)
                try:
                    await asyncio.wait_for(stopping.wait(), delay)
                except TimeoutError:
                    pass
                delay = min(delay * 2, backoff_max)
        return False
