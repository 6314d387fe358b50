"""Per-key budget spend in the ``llmgw_budget`` JetStream KV bucket, kept in step with the ledger.

Entry ``<key_id>.<period_key>`` holds ``BudgetState(spend_usd, reserved_usd)``. Proxies add their
reservation (compare-and-set on the revision) before dispatching a request; metering, after each
committed batch, takes the newly stored events' ``reserved_usd`` back out and sets ``spend_usd``.

``spend_usd`` is *set*, not incremented: it is read from ``metering.budget_spend`` (maintained in
the ingest transaction, so it is exactly the sum of the stored events' costs for that key and
period). Every writer reads the KV entry first, then the DB truth, then writes with
compare-and-set on the revision it read; if anyone wrote in between, the CAS fails and the cycle
repeats. Whoever wins therefore read a DB truth at least as new as any earlier writer's, so spend
never goes backwards and never double counts (a redelivered event adds nothing to the DB truth).

``reserved_usd`` is the one incremental part, and its release is made idempotent by a watermark:
``released_usd`` in the entry is the ledger's ``budget_spend.reserved_usd`` (the sum of the stored
events' reservations) that has already been taken out. Every write takes out ``ledger − watermark``
and moves the watermark to the ledger, so a release missed when metering died between COMMIT and
the KV write is applied by the next write for that entry (the next batch of the key, or the
reconcile pass that re-syncs every entry whose period saw events recently). An entry metering creates
starts with the watermark at the ledger (nothing of it is in flight). An entry written by a writer
that dropped the watermark (an older build) reads as 0 and releases the period's earlier reservations
once — the budget errs on the open side by at most what was in flight at that moment.
"""

from __future__ import annotations

import asyncio
import logging
import re

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BadRequestError, KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from llmgw_common.contract import KV_BUCKET_BUDGET, BudgetState, budget_kv_key, budget_state_decoder, encode
from llmgw_common.telemetry import untraced
from llmgw_metering.metrics import BUDGET_KV_WRITES

log = logging.getLogger(__name__)

_VALID_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]+$")
MAX_CAS_ATTEMPTS = 20


async def budget_bucket(js: JetStreamContext) -> KeyValue:
    """The budget KV bucket, created if missing (history 1, file storage)."""
    try:
        return await js.key_value(KV_BUCKET_BUDGET)
    except NotFoundError:
        pass
    try:
        return await js.create_key_value(KeyValueConfig(bucket=KV_BUCKET_BUDGET, history=1, storage=StorageType.FILE))
    except BadRequestError:
        # created concurrently (by a proxy or another replica) with a slightly different config
        return await js.key_value(KV_BUCKET_BUDGET)


async def read_state(kv: KeyValue, key: str) -> tuple[BudgetState | None, int]:
    """(state, revision); (None, 0) when the entry does not exist."""
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:  # incl. KeyDeletedError
        return None, 0
    if not entry.value:
        return None, entry.revision or 0
    try:
        return budget_state_decoder.decode(entry.value), entry.revision or 0
    except Exception:  # noqa: BLE001 - an unreadable value is overwritten with the truth
        log.warning("budget entry %s unreadable; resetting it from the ledger", key)
        return None, entry.revision or 0


async def _bounded_gather(coros, limit: int = 32) -> list:
    semaphore = asyncio.Semaphore(limit)

    async def run(coro):
        async with semaphore:
            return await coro

    return await asyncio.gather(*(run(c) for c in coros))


def next_state(state: BudgetState | None, spend: float, stored_reserved: float) -> BudgetState:
    """The entry after a sync with the ledger (``spend``, ``stored_reserved`` = its sums for the period)."""
    if state is None:  # nothing of what the ledger holds is in flight
        return BudgetState(spend_usd=spend, reserved_usd=0.0, released_usd=stored_reserved)
    # A ledger below the watermark (restored from a backup) releases nothing and moves the watermark back.
    release = max(0.0, stored_reserved - state.released_usd)
    return BudgetState(
        spend_usd=spend,
        reserved_usd=max(0.0, round(state.reserved_usd - release, 9)),
        released_usd=stored_reserved,
    )


class BudgetSync:
    def __init__(
        self,
        js: JetStreamContext,
        engine: AsyncEngine,
        *,
        reconcile_seconds: float,
        window_seconds: float,
        min_interval: float = 0.25,
    ):
        self._js = js
        self._min_interval = min_interval
        self._engine = engine
        self._reconcile_seconds = reconcile_seconds
        self._window_seconds = window_seconds
        self._kv: KeyValue | None = None
        #: (key_id, period_key) entries to re-sync from the ledger
        self._pending: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task] = []
        self._stopping = False

    async def start(self) -> None:
        self._kv = await budget_bucket(self._js)
        self._tasks = [
            asyncio.create_task(self._apply_loop(), name="metering-budget-apply"),
            asyncio.create_task(self._reconcile_loop(), name="metering-budget-reconcile"),
        ]

    async def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._pending:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except TimeoutError:
                log.warning("budget: %d reservation releases not applied at shutdown", len(self._pending))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def note(self, entries) -> None:
        """(key_id, period_key) entries whose period got newly committed events (a dict's keys do)."""
        if not entries:
            return
        self._pending.update(entries)
        self._idle.clear()
        self._wake.set()

    async def flush(self) -> None:
        """Wait until every noted release has been applied (tests, shutdown)."""
        while self._pending or not self._idle.is_set():
            await self._idle.wait()
            if self._pending:
                await asyncio.sleep(0.01)

    async def _apply_loop(self) -> None:
        delay = 0.1
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Coalesce: one KV round per (key, period) per interval, however many batches committed.
            if not self._stopping:
                await asyncio.sleep(self._min_interval)
            while self._pending:
                batch, self._pending = self._pending, set()
                try:
                    with untraced():  # follow-up of committed batches, part of no request's trace
                        await self.apply(batch)
                    delay = 0.1
                except asyncio.CancelledError:
                    self._merge_back(batch)
                    raise
                except Exception as exc:  # noqa: BLE001 - NATS or DB away: keep the releases, retry
                    self._merge_back(batch)
                    BUDGET_KV_WRITES.labels("error").inc()
                    log.warning("budget KV update failed (%s); retrying in %.1fs", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            self._idle.set()

    def _merge_back(self, batch: set[tuple[str, str]]) -> None:
        self._pending |= batch
        self._idle.clear()

    async def _truth(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[float, float]]:
        """(key_id, period_key) -> (spend, reservations of the stored events), from the ledger."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                text(
                    """
                    SELECT b.key_id, b.period_key, b.spend_usd, b.reserved_usd
                    FROM metering.budget_spend b
                    JOIN unnest(CAST(:keys AS text[]), CAST(:periods AS text[])) AS k(key_id, period_key)
                      ON b.key_id = k.key_id AND b.period_key = k.period_key
                    """
                ),
                {"keys": [k for k, _ in keys], "periods": [p for _, p in keys]},
            )
            return {(r.key_id, r.period_key): (float(r.spend_usd), float(r.reserved_usd)) for r in rows}

    async def apply(self, entries) -> None:
        """Set spend from the ledger and release what the ledger stored since the watermark, by
        compare-and-set (see the module docstring)."""
        kv = self._kv
        assert kv is not None
        todo = {}
        for key_id, period in entries:
            kv_key = budget_kv_key(key_id, period)
            if not _VALID_KEY.match(kv_key):
                BUDGET_KV_WRITES.labels("invalid_key").inc()
                log.warning("budget: %r is not a valid KV key; skipped", kv_key)
                continue
            todo[(key_id, period)] = kv_key
        for _ in range(MAX_CAS_ATTEMPTS):
            if not todo:
                return
            # 1) read the entries, 2) then the DB truth, 3) CAS on the revisions read in 1)
            items = list(todo.items())
            states = await _bounded_gather(read_state(kv, kv_key) for _, kv_key in items)
            truth = await self._truth([k for k, _ in items])

            async def write(k, kv_key: str, state: BudgetState | None, revision: int, truth=truth):
                spend, stored_reserved = truth.get(k, (0.0, 0.0))
                new = next_state(state, spend, stored_reserved)
                if state is not None and new == state:
                    return None
                try:
                    if revision:
                        await kv.update(kv_key, encode(new), last=revision)
                    else:
                        await kv.create(kv_key, encode(new))
                except KeyWrongLastSequenceError:
                    BUDGET_KV_WRITES.labels("conflict").inc()
                    return k
                BUDGET_KV_WRITES.labels("ok").inc()
                return None

            lost = await _bounded_gather(
                write(k, kv_key, *state) for (k, kv_key), state in zip(items, states, strict=True)
            )
            todo = {k: todo[k] for k in lost if k is not None}
        raise RuntimeError(f"budget: {len(todo)} entries still conflicting after {MAX_CAS_ATTEMPTS} attempts")

    async def reconcile_once(self) -> int:
        """Re-set spend from the ledger for every (key, period) with events in the recent window."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT key_id, period_key FROM metering.budget_spend "
                    "WHERE updated_at > now() - make_interval(secs => :window) ORDER BY key_id, period_key LIMIT 50000"
                ),
                {"window": self._window_seconds},
            )
            keys = [(r.key_id, r.period_key) for r in rows]
        for start in range(0, len(keys), 500):
            await self.apply(keys[start : start + 500])
        return len(keys)

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(self._reconcile_seconds)
            try:
                with untraced():  # a periodic query is not worth a trace each time
                    count = await self.reconcile_once()
                log.debug("budget reconcile: %d entries", count)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("budget reconcile failed: %s", exc)
